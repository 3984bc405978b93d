//! How answers are shown: tables for people, the API's JSON for scripts.

use comfy_table::{Table, presets};
use serde_json::Value;

/// Prints lines on stdout (the CLI's output; logs go to stderr).
#[allow(clippy::print_stdout)]
pub fn say(text: impl std::fmt::Display) {
    println!("{text}");
}

/// Prints `value` as pretty JSON.
pub fn json(value: &Value) {
    say(serde_json::to_string_pretty(value).unwrap_or_default());
}

/// A borderless table with a header, like `kubectl get`.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t
}

/// A string field, or `-`.
pub fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "-".into(),
    }
}

/// A number with `digits` decimals, or `-`.
pub fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |n| format!("{n:.digits$}"))
}

/// Bytes as KiB/MiB.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The candidate's share of traffic now: the mean of its weight on the
/// deployment's nodes, else the current phase's planned weights.
pub fn candidate_share(d: &Value) -> f64 {
    let state = &d["state"];
    let weights: Vec<f64> = state["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|n| n["weight"].as_f64()).collect())
        .unwrap_or_default();
    if !weights.is_empty() {
        return weights.iter().sum::<f64>() / weights.len() as f64;
    }
    let phase = state["phase"].as_u64().unwrap_or(0) as usize;
    state["plan"][phase]["weights"]
        .as_object()
        .filter(|w| !w.is_empty())
        .map_or(0.0, |w| {
            w.values().filter_map(Value::as_f64).sum::<f64>() / w.len() as f64
        })
}

/// Whether a deployment status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "rolled_back")
}

/// A text bar of `width` cells for `percent`.
pub fn bar(percent: f64, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}
