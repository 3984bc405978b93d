//! Prints the latest criterion results as a Markdown table, with each
//! wasmswap figure as a ratio of the raw-wasmtime baseline measured in the
//! same run (same group, same parameter).
//!
//! `cargo run -p wasmswap-benches --bin bench-report [target/criterion]`

// A command-line program: its output is the point.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct Benchmark {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") && p.join("estimates.json").exists() {
                out.push(p);
            } else {
                find(&p, out);
            }
        }
    }
}

/// (function, median ns, mean ns), keyed by (group, parameter).
type Row = (String, f64, f64);

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let mut dirs = Vec::new();
    find(&root, &mut dirs);
    let mut rows: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for d in dirs {
        let b: Benchmark = serde_json::from_slice(&std::fs::read(d.join("benchmark.json"))?)?;
        let e: Estimates = serde_json::from_slice(&std::fs::read(d.join("estimates.json"))?)?;
        rows.entry((b.group_id, b.value_str.unwrap_or_default()))
            .or_default()
            .push((
                b.function_id.unwrap_or_default(),
                e.median.point_estimate,
                e.mean.point_estimate,
            ));
    }
    println!("| group | parameter | function | median | ratio to baseline |");
    println!("|---|---|---|---:|---:|");
    for ((group, param), mut fns) in rows {
        fns.sort_by(|a, b| a.0.cmp(&b.0));
        let base = fns
            .iter()
            .find(|f| f.0.starts_with("raw") || f.0.starts_with("baseline"))
            .map(|f| f.1);
        for (name, median, _) in &fns {
            let ratio = match base {
                Some(b) if !(name.starts_with("raw") || name.starts_with("baseline")) => {
                    format!("{:.2}×", median / b)
                }
                Some(_) => "1.00× (baseline)".to_string(),
                None => "–".to_string(),
            };
            println!(
                "| {group} | {param} | {name} | {} | {ratio} |",
                fmt_ns(*median)
            );
        }
    }
    Ok(())
}
