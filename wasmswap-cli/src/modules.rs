//! `wasmswap modules …`: register, list, show, WIT, diff, delete.

use std::path::Path;

use serde_json::Value;

use crate::client::{Api, CliError};
use crate::output::{self, s, say};

/// What `modules register` sends besides the binary (also its flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Registration {
    /// Module name.
    #[arg(long)]
    pub name: String,
    /// Semantic version.
    #[arg(long)]
    pub version: String,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Memory cap per call, MiB.
    #[arg(long)]
    pub max_memory_mb: Option<u32>,
    /// CPU share, percent.
    #[arg(long)]
    pub max_cpu_percent: Option<u32>,
    /// Time limit per call, seconds.
    #[arg(long)]
    pub max_execution_time_seconds: Option<u32>,
    /// Interfaces it needs (`ns:name@version`, repeatable).
    #[arg(long = "requires")]
    pub required_interfaces: Vec<String>,
}

/// Registers the `.wasm` file at `path` (uploaded raw as `application/wasm`).
pub async fn register(api: &Api, path: &Path, reg: &Registration) -> Result<Value, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Input(format!("reading {}: {e}", path.display())))?;
    register_bytes(api, bytes, reg).await
}

/// Registers a binary held in memory.
pub async fn register_bytes(
    api: &Api,
    bytes: Vec<u8>,
    reg: &Registration,
) -> Result<Value, CliError> {
    let mut query = vec![("name", reg.name.clone()), ("version", reg.version.clone())];
    if let Some(d) = &reg.description {
        query.push(("description", d.clone()));
    }
    if let Some(m) = reg.max_memory_mb {
        query.push(("maxMemoryMB", m.to_string()));
    }
    if let Some(c) = reg.max_cpu_percent {
        query.push(("maxCpuPercent", c.to_string()));
    }
    if let Some(t) = reg.max_execution_time_seconds {
        query.push(("maxExecutionTimeSeconds", t.to_string()));
    }
    if !reg.required_interfaces.is_empty() {
        query.push(("requiredInterfaces", reg.required_interfaces.join(",")));
    }
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    api.post_bytes(
        &format!("/wasm/modules?{}", qs.join("&")),
        "application/wasm",
        bytes,
    )
    .await
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Prints a registered (or fetched) module.
pub fn show(m: &Value, json: bool) {
    if json {
        return output::json(m);
    }
    let exports = m["exportedFunctions"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| s(f, "name"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let limits = &m["limits"];
    let rows = [
        ("Module", s(m, "moduleId")),
        ("Name", s(m, "name")),
        ("Version", s(m, "version")),
        (
            "Kind",
            format!("{} (WASI {})", s(m, "kind"), s(m, "wasiVersion")),
        ),
        ("Size", output::bytes(m["sizeBytes"].as_u64().unwrap_or(0))),
        ("SHA-256", s(m, "checksum")),
        ("Status", s(m, "status")),
        (
            "Exports",
            if exports.is_empty() {
                "-".into()
            } else {
                exports
            },
        ),
        (
            "Limits",
            format!(
                "{} MiB, {} % CPU, {} s",
                s(limits, "maxMemoryMB"),
                s(limits, "maxCpuPercent"),
                s(limits, "maxExecutionTimeSeconds")
            ),
        ),
        (
            "Created",
            format!("{} by {}", s(m, "createdAt"), s(m, "createdBy")),
        ),
    ];
    for (k, v) in rows {
        say(format!("{k:<9} {v}"));
    }
}

/// `modules list`.
pub async fn list(api: &Api, name: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut path = "/wasm/modules?limit=100".to_string();
    if let Some(n) = name {
        path.push_str(&format!("&name={}", encode(n)));
    }
    let v = api.get(&path).await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let rows = v["modules"].as_array().cloned().unwrap_or_default();
    say(output::table(
        &[
            "MODULE", "NAME", "VERSION", "KIND", "SIZE", "STATUS", "CREATED",
        ],
        rows.iter().map(|m| {
            vec![
                s(m, "moduleId"),
                s(m, "name"),
                s(m, "version"),
                s(m, "kind"),
                output::bytes(m["sizeBytes"].as_u64().unwrap_or(0)),
                s(m, "status"),
                s(m, "createdAt"),
            ]
        }),
    ));
    Ok(())
}

/// `modules wit`: the component's WIT world.
pub async fn wit(api: &Api, id: &str, json: bool) -> Result<(), CliError> {
    let v = api
        .get(&format!("/wasm/modules/{}/wit", encode(id)))
        .await?;
    match (&v, json) {
        (Value::String(text), false) => say(text.trim_end()),
        (Value::Object(_), false) => say(v["wit"].as_str().unwrap_or_default().trim_end()),
        _ => output::json(&v),
    }
    Ok(())
}

/// `modules diff`: what changed in the WIT from `old` to `new`, and whether
/// it breaks callers.
pub async fn diff(api: &Api, old: &str, new: &str, json: bool) -> Result<(), CliError> {
    let v = api
        .get(&format!(
            "/wasm/modules/{}/diff/{}",
            encode(old),
            encode(new)
        ))
        .await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let verdict = |key: &str| {
        if v[key].as_bool().unwrap_or(false) {
            "BREAKING"
        } else {
            "compatible"
        }
    };
    say(format!(
        "{old} → {new}: callers {}, implementers {}",
        verdict("breaksCallers"),
        verdict("breaksImplementers")
    ));
    let text = v["text"].as_str().unwrap_or_default().trim_end();
    if !text.is_empty() {
        say(text);
    }
    Ok(())
}
