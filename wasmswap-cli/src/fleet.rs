//! `wasmswap nodes …` and `wasmswap interfaces …`.

use std::path::Path;

use serde_json::json;

use crate::client::{Api, CliError};
use crate::modules::encode;
use crate::output::{self, s, say};

/// `nodes` / `nodes list`.
pub async fn nodes(api: &Api, region: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut path = "/wasm/nodes".to_string();
    if let Some(r) = region {
        path.push_str(&format!("?region={}", encode(r)));
    }
    let v = api.get(&path).await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let rows = v.as_array().cloned().unwrap_or_default();
    say(output::table(
        &[
            "NODE",
            "REGION",
            "ZONE",
            "STATUS",
            "MODULES",
            "DATA URL",
            "LAST HEARTBEAT",
        ],
        rows.iter().map(|n| {
            vec![
                s(n, "nodeId"),
                s(n, "region"),
                s(n, "zone"),
                s(n, "status"),
                format!(
                    "{}/{}",
                    n["loadedModules"].as_u64().unwrap_or(0),
                    s(&n["capacity"], "maxModules")
                ),
                s(n, "dataUrl"),
                s(n, "lastHeartbeatAt"),
            ]
        }),
    ));
    Ok(())
}

/// `nodes show`.
pub async fn node(api: &Api, id: &str, json: bool) -> Result<(), CliError> {
    let v = api.get(&format!("/wasm/nodes/{}", encode(id))).await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    for (k, key) in [
        ("Node", "nodeId"),
        ("Region", "region"),
        ("Zone", "zone"),
        ("Status", "status"),
        ("Agent", "agentUrl"),
        ("Data", "dataUrl"),
        ("Runtime", "runtimeVersion"),
        ("Heartbeat", "lastHeartbeatAt"),
    ] {
        say(format!("{k:<9} {}", s(&v, key)));
    }
    let modules: Vec<String> = v["modules"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    say(format!(
        "{:<9} {}",
        "Modules",
        if modules.is_empty() {
            "-".into()
        } else {
            modules.join(", ")
        }
    ));
    Ok(())
}

/// `interfaces list`.
pub async fn interfaces(api: &Api, json: bool) -> Result<(), CliError> {
    let v = api.get("/wasm/interfaces").await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let rows = v.as_array().cloned().unwrap_or_default();
    say(output::table(
        &[
            "INTERFACE",
            "VERSION",
            "STATUS",
            "CLEARED",
            "COMPATIBILITY",
            "CREATED",
        ],
        rows.iter().map(|i| {
            vec![
                s(i, "interfaceId"),
                s(i, "version"),
                s(i, "status"),
                s(i, "cleared"),
                s(i, "compatibility"),
                s(i, "createdAt"),
            ]
        }),
    ));
    Ok(())
}

/// `interfaces show`.
pub async fn interface(api: &Api, id: &str, json: bool) -> Result<(), CliError> {
    let v = api.get(&format!("/wasm/interfaces/{}", encode(id))).await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    say(format!(
        "{} ({}, {}, cleared: {})",
        s(&v, "interfaceId"),
        s(&v, "status"),
        s(&v, "compatibility"),
        s(&v, "cleared")
    ));
    if let Some(text) = v["review"]["text"].as_str().filter(|t| !t.is_empty()) {
        say(text.trim_end());
    }
    say(v["wit"].as_str().unwrap_or_default().trim_end());
    Ok(())
}

/// `interfaces register`: a WIT file as `namespace:name@version`.
pub async fn register_interface(
    api: &Api,
    file: &Path,
    id: &str,
    interface: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let wit = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("reading {}: {e}", file.display())))?;
    let (package, version) = id
        .split_once('@')
        .ok_or_else(|| CliError::Input(format!("{id:?} is not `namespace:name@version`")))?;
    let (namespace, name) = package
        .split_once(':')
        .ok_or_else(|| CliError::Input(format!("{id:?} is not `namespace:name@version`")))?;
    let mut body = json!({ "namespace": namespace, "name": name, "version": version, "wit": wit });
    if let Some(i) = interface {
        body["interface"] = json!(i);
    }
    let v = api.post("/wasm/interfaces", Some(&body)).await?;
    if json {
        output::json(&v);
    } else {
        say(format!(
            "registered {} ({}, cleared: {})",
            s(&v, "interfaceId"),
            s(&v, "status"),
            s(&v, "cleared")
        ));
    }
    Ok(())
}
