//! Standalone mode: serve components from files, with no control plane,
//! and hot-reload each one when its file changes (like `wasmtime serve`,
//! plus the swap).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmswap_core::{Capabilities, Limits};

use crate::node::{Node, RouteSpec, VersionSpec, content_sha256};

/// The number after the highest `v{n}` label `service` holds (1 if none):
/// a restarted standalone node with a state directory continues its count.
pub fn next_number(node: &Node, service: &str) -> u64 {
    node.status_of(service)
        .map(|s| {
            s.versions
                .iter()
                .filter_map(|v| v.version.strip_prefix('v')?.parse::<u64>().ok())
                .max()
                .map_or(1, |n| n + 1)
        })
        .unwrap_or(1)
}

/// Serves `path` as `service` at start-up: routes to the version already
/// holding its bytes (restored from the state directory), or loads it as
/// the next `v{n}`. Returns the number the watcher continues from.
pub async fn serve_file(node: &Node, service: &str, path: &Path) -> anyhow::Result<u64> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let sha = content_sha256(&bytes);
    let n = next_number(node, service);
    let stable_sha = node.status_of(service).ok().and_then(|s| {
        let stable = s.route?.stable;
        s.versions
            .into_iter()
            .find(|v| v.version == stable)
            .map(|v| v.sha256)
    });
    if stable_sha.as_deref() == Some(sha.as_str()) {
        return Ok(n);
    }
    load_file(node, service, path, bytes, &format!("v{n}")).await?;
    Ok(n + 1)
}

/// Loads `path` as version `label` of `service` and routes to it.
pub async fn load_file(
    node: &Node,
    service: &str,
    path: &Path,
    bytes: Vec<u8>,
    label: &str,
) -> anyhow::Result<String> {
    let spec = VersionSpec {
        service: service.to_string(),
        version: label.to_string(),
        sha256: content_sha256(&bytes),
        url: None,
        limits: Limits::default(),
        capabilities: Capabilities::none(),
    };
    node.load(spec, Some(bytes))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    node.set_route(
        service,
        RouteSpec {
            stable: label.to_string(),
            candidate: None,
            weight_percent: 0.0,
            mode: Default::default(),
            mirror_side_effects: false,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    Ok(label.to_string())
}

fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Watches `path` and swaps each new build in as `v2`, `v3`, …: compiled
/// beside the serving version, routed atomically, with the version before
/// last unloaded once drained (the last one stays warm for a rollback). A
/// file that fails to load is logged; the serving version stays.
pub async fn watch(
    node: Node,
    service: String,
    path: PathBuf,
    first: u64,
    every: Duration,
    drain: Duration,
) {
    let mut seen = fingerprint(&path);
    let mut current_sha = tokio::fs::read(&path)
        .await
        .ok()
        .map(|b| content_sha256(&b));
    let mut n = first;
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&path);
        if now == seen {
            continue;
        }
        seen = now;
        // Skip rewrites with the same content (an editor touching the file).
        // Read once: the hash and the load use the same bytes.
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let sha = Some(content_sha256(&bytes));
        if sha == current_sha {
            continue;
        }
        let label = format!("v{n}");
        match load_file(&node, &service, &path, bytes, &label).await {
            Ok(_) => {
                tracing::info!(%service, version = %label, "reloaded");
                current_sha = sha;
                if n >= 3 {
                    // The previous version stays warm for a rollback; the
                    // one before it goes once its calls finish.
                    let old = format!("v{}", n - 2);
                    let node = node.clone();
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(e) = node.unload(&service, &old, drain).await {
                            tracing::debug!(%service, version = %old, error = %e.message, "old version kept");
                        }
                    });
                }
                n += 1;
            }
            Err(e) => {
                tracing::warn!(%service, error = %e, "reload failed; still serving the previous version")
            }
        }
    }
}
