//! Rollouts across 20 local nodes (real `wasmswap-host`s on 127.0.0.1,
//! driven by the real rollout engine through the agent API), beside their
//! baseline: one agent call to one node.
//!
//! - `baseline-agent-set-route-one-node`: the per-node cost of a route change;
//! - `canary-zero-evaluation-end-to-end`: execute → completed, stages 50 %
//!   and 100 % with no evaluation period (load on 20 nodes, two route
//!   changes per node, health checks, counters);
//! - `rollback-all-nodes`: rollback → every node back on the previous
//!   version.
//!
//! `cargo bench -p wasmswap-benches --bench rollout`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tokio::runtime::Runtime;

use wasmswap_control::api::{ApiSettings, AppState};
use wasmswap_control::auth::{Authenticator, SigningKey};
use wasmswap_control::clock::Clock;
use wasmswap_control::model::{Actor, NewModule};
use wasmswap_control::rollout::driver::{Driver, RouteSpec};
use wasmswap_control::rollout::model::{DeploymentSpec, DeploymentStatus};
use wasmswap_control::rollout::ops;
use wasmswap_control::store::{Store, StoreConfig};
use wasmswap_host::{Host, HostConfig};

const NODES: usize = 20;
const TOKEN: &str = "bench-node-token-0123456789";

fn guest(marker: i64) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (global i64 (i64.const {marker}))
            (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
            (func (export "health_check") (result i32) (i32.const 1)))"#
    ))
    .unwrap()
}

struct Fleet {
    state: AppState,
    store: Store,
    _hosts: Vec<Host>,
    _dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicI64,
}

fn actor() -> Actor {
    Actor {
        name: "bench".into(),
        role: "admin".into(),
        request_id: "-".into(),
        client: "-".into(),
    }
}

impl Fleet {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Store::open(&StoreConfig::embedded(dir.path()), Clock::system())
            .await
            .unwrap();
        let auth = Authenticator::new(
            &SigningKey::Hs256(b"bench-secret-bench-secret-bench-secret".to_vec()),
            "bench",
            3600,
            vec![],
            Some(TOKEN.into()),
        )
        .unwrap();
        let settings = ApiSettings {
            public_url: format!("http://{addr}"),
            engine_tick: Duration::from_millis(5),
            // Hundreds of rollouts a minute: far past any default budget.
            rate_limits: wasmswap_control::rate::RateLimits {
                node: 1_000_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let state = AppState::new(store.clone(), auth, TOKEN.into(), settings).unwrap();
        tokio::spawn(wasmswap_control::serve_state(
            listener,
            state.clone(),
            std::future::pending(),
        ));
        let mut hosts = Vec::new();
        for i in 0..NODES {
            let region = ["eu", "us", "ap", "sa"][i % 4];
            hosts.push(
                Host::start(HostConfig {
                    node_id: format!("n{i:02}"),
                    region: region.into(),
                    zone: "z".into(),
                    listen: ([127, 0, 0, 1], 0).into(),
                    agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
                    control_plane: Some(format!("http://{addr}")),
                    heartbeat_interval: Duration::from_secs(1),
                    max_modules: 10_000,
                    ..Default::default()
                })
                .await
                .unwrap(),
            );
        }
        while store.list_nodes(None, 30_000).await.unwrap().len() < NODES {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fleet = Fleet {
            state,
            store,
            _hosts: hosts,
            _dir: dir,
            next: 1.into(),
        };
        // v1 live everywhere.
        let id = fleet.deploy_new().await;
        fleet.wait(&id, DeploymentStatus::Completed).await;
        fleet
    }

    /// Registers the next version and starts a zero-period canary of it.
    async fn deploy_new(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let module = self
            .store
            .register_module(
                NewModule {
                    name: "calc".into(),
                    version: semver::Version::new(n as u64, 0, 0),
                    description: String::new(),
                    required_interfaces: vec![],
                    limits: Default::default(),
                    metadata: Default::default(),
                    kind: "module".into(),
                    wasi_version: "none".into(),
                    exported_functions: vec![],
                    imports: vec![],
                    wit: None,
                },
                bytes::Bytes::from(guest(n)),
                &actor(),
            )
            .await
            .unwrap();
        let spec: DeploymentSpec = serde_json::from_value(json!({
            "moduleId": module.module_id, "strategy": "canary", "environment": "bench",
            "strategyConfig": {"stages": [50, 100], "evaluationPeriod": "PT0S"},
            "healthCheck": {"intervalMs": 1},
            "analysis": {"minSampleSize": 0},
        }))
        .unwrap();
        let d = ops::create(&self.store, spec, &actor()).await.unwrap();
        ops::execute(&self.store, &d.deployment_id, &actor(), true)
            .await
            .unwrap();
        self.state.engine().wake();
        d.deployment_id
    }

    async fn wait(&self, id: &str, status: DeploymentStatus) {
        loop {
            let d = self.store.get_deployment(id).await.unwrap();
            if d.status == status {
                return;
            }
            assert!(
                !d.status.is_final(),
                "{id} ended {:?}: {:?}",
                d.status,
                d.state.gates
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn rollout(c: &mut Criterion) {
    let rt = Arc::new(Runtime::new().unwrap());
    let fleet = rt.block_on(Fleet::start());
    let node = rt
        .block_on(fleet.store.list_nodes(None, 30_000))
        .unwrap()
        .remove(0);
    let agents = wasmswap_control::agent::AgentClient::new(TOKEN.into(), Duration::from_secs(10));
    let live = rt
        .block_on(fleet.store.live_module("calc"))
        .unwrap()
        .unwrap();
    let live = live.trim_start_matches("calc-v").to_string();

    let mut g = c.benchmark_group(format!("rollout-{NODES}-nodes"));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("baseline-agent-set-route-one-node", |b| {
        b.to_async(rt.as_ref()).iter(|| async {
            agents
                .set_route(&node, "calc", &RouteSpec::only(&live))
                .await
                .unwrap();
        })
    });
    g.bench_function("canary-zero-evaluation-end-to-end", |b| {
        b.to_async(rt.as_ref()).iter_custom(|iters| {
            let fleet = &fleet;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let id = fleet.deploy_new().await;
                    fleet.wait(&id, DeploymentStatus::Completed).await;
                    total += started.elapsed();
                }
                total
            }
        })
    });
    g.bench_function("rollback-all-nodes", |b| {
        b.to_async(rt.as_ref()).iter_custom(|iters| {
            let fleet = &fleet;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let id = fleet.deploy_new().await;
                    fleet.wait(&id, DeploymentStatus::Completed).await;
                    let started = Instant::now();
                    ops::rollback(&fleet.store, &id, &actor(), false)
                        .await
                        .unwrap();
                    fleet.state.engine().wake();
                    fleet.wait(&id, DeploymentStatus::RolledBack).await;
                    total += started.elapsed();
                }
                total
            }
        })
    });
    g.finish();
}

criterion_group!(benches, rollout);
criterion_main!(benches);
