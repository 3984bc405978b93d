//! Shared by the CLI crate's tests: a local cluster serving v1 of the
//! example, and background traffic on its nodes.

use std::time::Duration;

use wasmswap_cli::cluster::{ClusterOptions, LocalCluster, V1};
use wasmswap_control::auth::Role;

/// A cluster (two regions × two nodes, free ports) in `dir`, with the
/// example service's v1 live on every node; a `viewer` and a `developer`
/// user log in with the password `letmein-<role>`.
pub async fn cluster_serving_v1(dir: &std::path::Path) -> LocalCluster {
    let users = [Role::Viewer, Role::Developer]
        .map(|r| (r.as_str().to_string(), format!("letmein-{}", r.as_str()), r))
        .to_vec();
    let cluster = LocalCluster::start(&ClusterOptions {
        data_dir: dir.join("cluster"),
        port: 0,
        users,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(cluster.bootstrap().await.unwrap(), V1);
    cluster
}

/// GETs on every node's `hello` (a fresh sticky key each), so rollouts'
/// metric gates have samples; abort the handle to stop.
pub fn traffic(cluster: &LocalCluster) -> tokio::task::JoinHandle<()> {
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.data_url.clone()).collect();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 0usize.. {
            // The response is dropped unread, as impatient clients do: the
            // guest's body write then fails, which must not count against
            // the version (a client hang-up, not a crash).
            let _ = http
                .get(format!("{}/hello/", urls[i % urls.len()]))
                .header("x-wasmswap-key", i.to_string())
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}
