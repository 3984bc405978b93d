//! `examples/grafana-dashboard.json` queries metrics that exist: every
//! metric name in its PromQL appears in what a real cluster's node agent
//! and control plane expose.

use std::collections::BTreeSet;

use serde_json::Value;
use wasmswap_cli::cluster::{ClusterOptions, LocalCluster};

/// The `wasm_*` / `wasmswap_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("wasm_") || w.starts_with("wasmswap_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_exposed_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana-dashboard.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut wanted = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            wanted.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    assert!(wanted.len() >= 10, "{wanted:?}");

    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(&ClusterOptions {
        data_dir: dir.path().join("cluster"),
        port: 0,
        regions: vec!["local".into()],
        nodes_per_region: 1,
        users: Vec::new(),
    })
    .await
    .unwrap();
    cluster.bootstrap().await.unwrap();
    let http = reqwest::Client::new();
    // Traffic, so per-version series exist (histograms, errors by kind).
    let data = &cluster.nodes[0].data_url;
    for path in ["/hello/", "/hello/fail"] {
        http.get(format!("{data}{path}")).send().await.unwrap();
    }
    let node_token =
        std::fs::read_to_string(dir.path().join("cluster/control/node-token")).unwrap();
    let agent = cluster.hosts()[0].agent_addr().unwrap();
    let node_metrics = http
        .get(format!("http://{agent}/metrics"))
        .bearer_auth(node_token.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let control_metrics = cluster.api().get("/metrics").await.unwrap();
    let exposed = format!(
        "{node_metrics}\n{}",
        control_metrics.as_str().unwrap_or_default()
    );
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| {
            // A family without samples yet still declares its type (a
            // counter's samples add `_total`, a histogram's `_bucket`).
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| m.strip_suffix(s))
                .unwrap_or(m);
            // The sample's name ends at `{` or a space: a prefix of a real
            // name does not count.
            !exposed.lines().any(|l| {
                l.split(['{', ' ']).next() == Some(m.as_str())
                    || l.starts_with(&format!("# TYPE {base} "))
                    || l.starts_with(&format!("# TYPE {m} "))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody exposes: {missing:?}\n{exposed}"
    );
    cluster.shutdown().await.unwrap();
}
