//! Rollouts end to end: a control plane on a socket, six real
//! `wasmswap-host` nodes in three regions on 127.0.0.1, continuous client
//! load on every node's data plane. Each strategy runs to completion; each
//! one's failure path rolls back; the stable version never answers non-2xx;
//! a control-plane restart mid-rollout resumes; A/B promotes the faster
//! variant.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use wasmswap_control::api::{ApiSettings, AppState};
use wasmswap_control::auth::Role;
use wasmswap_control::store::StoreConfig;
use wasmswap_host::{Host, HostConfig};

use super::common::{NODE_TOKEN, TestApp, generous};

/// A guest: `add(a, b)`, and `health_check`. `marker` makes each version's
/// bytes distinct; `fail_every` makes `add` trap when `a % n == 0`;
/// `spin` burns that many loop iterations per call; `healthy` is what
/// `health_check` returns.
fn guest(marker: i32, fail_every: i32, spin: i32, healthy: bool) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (global $marker i32 (i32.const {marker}))
            (func (export "add") (param $a i32) (param $b i32) (result i32)
                (local $i i32)
                (if (i32.gt_s (i32.const {fail_every}) (i32.const 0))
                    (then (if (i32.eqz (i32.rem_u (local.get $a) (i32.const {fail_every}))) (then unreachable))))
                (block $done (loop $spin
                    (br_if $done (i32.ge_s (local.get $i) (i32.const {spin})))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $spin)))
                (i32.add (local.get $a) (local.get $b)))
            (func (export "health_check") (result i32) (i32.const {h})))"#,
        h = i32::from(healthy)
    ))
    .unwrap()
}

struct Load {
    stop: Arc<AtomicBool>,
    /// (version, status) → count.
    seen: Arc<Mutex<HashMap<(String, u16), u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(data_urls: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<HashMap<(String, u16), u64>>> = Arc::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let tasks = (0..4)
            .map(|t| {
                let (stop, seen, http, urls) =
                    (stop.clone(), seen.clone(), http.clone(), data_urls.clone());
                tokio::spawn(async move {
                    let mut i: u64 = t;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let url = &urls[(i as usize) % urls.len()];
                        let r = http
                            .post(format!("{url}/_invoke/calc/add"))
                            .json(&json!([i % 1000, 1]))
                            .send()
                            .await;
                        let (version, status) = match r {
                            Ok(r) => (
                                r.headers()
                                    .get("x-wasmswap-version")
                                    .map_or("-".into(), |v| v.to_str().unwrap().to_string()),
                                r.status().as_u16(),
                            ),
                            Err(_) => ("transport".into(), 0),
                        };
                        *seen.lock().entry((version, status)).or_default() += 1;
                    }
                })
            })
            .collect();
        Load { stop, seen, tasks }
    }

    fn snapshot(&self) -> HashMap<(String, u16), u64> {
        self.seen.lock().clone()
    }

    fn reset(&self) {
        self.seen.lock().clear();
    }

    async fn stop(self) -> HashMap<(String, u16), u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.seen.lock().clone()
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    app: TestApp,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn settings(addr: std::net::SocketAddr) -> ApiSettings {
    ApiSettings {
        public_url: format!("http://{addr}"),
        engine_tick: Duration::from_millis(50),
        heartbeat_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

impl Cluster {
    async fn start_control(
        dir: &std::path::Path,
        addr: Option<std::net::SocketAddr>,
    ) -> (
        TestApp,
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // The real clock: nodes heartbeat in real time.
        let app = TestApp::build_clocked(
            StoreConfig::embedded(dir),
            generous(),
            settings(addr),
            wasmswap_control::clock::Clock::system(),
        )
        .await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state: AppState = app.state.clone();
        let server = tokio::spawn(wasmswap_control::serve_state(listener, state, async {
            let _ = stopped.await;
        }));
        (app, addr, stop, server)
    }

    async fn restart_control(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        let (app, addr, stop, server) = Self::start_control(self.dir.path(), Some(self.addr)).await;
        assert_eq!(addr, self.addr);
        self.app = app;
        self.stop = Some(stop);
        self.server = Some(server);
    }

    async fn register(&self, version: &str, bytes: &[u8]) {
        self.app
            .register("calc", version, bytes)
            .await
            .expect(StatusCode::CREATED);
    }

    async fn deploy(&self, module: &str, strategy: &str, config: Value) -> String {
        self.deploy_with(module, strategy, config, json!({"minSampleSize": 20}))
            .await
    }

    async fn deploy_with(
        &self,
        module: &str,
        strategy: &str,
        config: Value,
        analysis: Value,
    ) -> String {
        let r = self
            .app
            .post(
                "/api/v1/wasm/deployments",
                Role::Admin,
                &json!({
                    "moduleId": module, "strategy": strategy, "strategyConfig": config,
                    "healthCheck": {"failureThreshold": 1, "intervalMs": 20},
                    "analysis": analysis,
                }),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = r.json["deploymentId"].as_str().unwrap().to_string();
        self.app
            .post(
                &format!("/api/v1/wasm/deployments/{id}/execute"),
                Role::Admin,
                &json!({}),
            )
            .await
            .expect(StatusCode::OK);
        id
    }

    async fn get(&self, id: &str) -> Value {
        self.app
            .get(&format!("/api/v1/wasm/deployments/{id}"), Role::Viewer)
            .await
            .expect(StatusCode::OK)
            .json
    }

    async fn wait(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.get(id).await;
            if done(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "deployment stuck: {d:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn settle(&self, id: &str) -> Value {
        self.wait(id, |d| {
            let s = d["status"].as_str().unwrap();
            matches!(s, "completed" | "rolled_back" | "failed" | "paused")
        })
        .await
    }
}

async fn routes(hosts: &[Host]) -> Vec<(String, Option<String>, f64)> {
    let mut out = Vec::new();
    for h in hosts {
        let s = h.node().status_of("calc").unwrap();
        let r = s.route.unwrap();
        out.push((r.stable, r.candidate, r.weight_percent));
    }
    out
}

async fn all_on(hosts: &[Host], version: &str) -> bool {
    routes(hosts)
        .await
        .iter()
        .all(|(s, c, _)| s == version && c.is_none())
}

/// Non-2xx answers given by anything but `bad` (the deliberately broken
/// candidate): a node without a route, or a version that is not loaded,
/// would show here under `-` or its own label.
fn unexpected_failures(seen: &HashMap<(String, u16), u64>, bad: Option<&str>) -> u64 {
    seen.iter()
        .filter(|((v, s), _)| !(200..300).contains(s) && Some(v.as_str()) != bad)
        .map(|(_, n)| n)
        .sum()
}

/// Non-2xx answers given by `version`.
fn failures_of(seen: &HashMap<(String, u16), u64>, version: &str) -> u64 {
    seen.iter()
        .filter(|((v, s), _)| v == version && !(200..300).contains(s))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_strategy_under_load_with_failures_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (app, addr, stop, server) = Cluster::start_control(dir.path(), None).await;
    let mut c = Cluster {
        dir,
        addr,
        app,
        stop: Some(stop),
        server: Some(server),
    };
    let cp = format!("http://{addr}");
    let mut hosts = Vec::new();
    for (id, region) in [
        ("eu-a", "eu"),
        ("eu-b", "eu"),
        ("us-a", "us"),
        ("us-b", "us"),
        ("ap-a", "ap"),
        ("ap-b", "ap"),
    ] {
        hosts.push(
            Host::start(HostConfig {
                node_id: id.into(),
                region: region.into(),
                zone: format!("{region}-1"),
                listen: ([127, 0, 0, 1], 0).into(),
                agent: Some((([127, 0, 0, 1], 0).into(), NODE_TOKEN.into())),
                control_plane: Some(cp.clone()),
                heartbeat_interval: Duration::from_millis(200),
                max_modules: 50,
                ..Default::default()
            })
            .await
            .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .app
        .get("/api/v1/wasm/nodes?status=healthy", Role::Viewer)
        .await
        .json
        .as_array()
        .map_or(0, Vec::len)
        < 6
    {
        assert!(Instant::now() < deadline, "nodes did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // v1 everywhere (a first deployment), then load on every node.
    c.register("1.0.0", &guest(1, 0, 0, true)).await;
    let id = c.deploy("calc-v1.0.0", "rolling", json!({})).await;
    assert_eq!(c.settle(&id).await["status"], "completed");
    assert!(all_on(&hosts, "1.0.0").await);
    let load = Load::start(
        hosts
            .iter()
            .map(|h| format!("http://{}", h.data_addr()))
            .collect(),
    );

    let good = [
        (
            "2.0.0",
            "canary",
            json!({"stages": [20, 60, 100], "evaluationPeriod": "PT1S"}),
        ),
        ("3.0.0", "blue-green", json!({"healthCheckTimeout": "PT5S"})),
        (
            "4.0.0",
            "rolling",
            json!({"batchSize": 2, "batchDelay": "PT0.3S"}),
        ),
        (
            "5.0.0",
            "regional",
            json!({"regionOrder": ["us", "eu", "ap"], "interRegionDelay": "PT1S"}),
        ),
    ];
    let mut stable = "1.0.0".to_string();
    for (i, (version, strategy, config)) in good.iter().enumerate() {
        c.register(version, &guest(10 + i as i32, 0, 0, true)).await;
        load.reset();
        let id = c
            .deploy(&format!("calc-v{version}"), strategy, config.clone())
            .await;
        let d = c.settle(&id).await;
        assert_eq!(d["status"], "completed", "{strategy}: {d:#}");
        assert!(
            all_on(&hosts, version).await,
            "{strategy}: {:?}",
            routes(&hosts).await
        );
        let seen = load.snapshot();
        assert_eq!(
            failures_of(&seen, &stable),
            0,
            "{strategy}: the stable version failed calls: {seen:?}"
        );
        assert_eq!(unexpected_failures(&seen, None), 0, "{strategy}: {seen:?}");
        assert!(
            seen.keys().any(|(v, _)| v == *version),
            "{strategy}: the new version served calls: {seen:?}"
        );
        assert_eq!(d["progress"], 100.0);
        stable = version.to_string();
    }

    // Failure paths: each strategy with a bad candidate goes back, and the
    // stable version keeps answering 2xx throughout.
    let bad = [
        (
            "6.0.0",
            "canary",
            json!({"stages": [30, 100], "evaluationPeriod": "PT3S"}),
            guest(60, 5, 0, true),
            "auto-rollback",
        ),
        (
            "6.0.1",
            "blue-green",
            json!({"healthCheckTimeout": "PT3S"}),
            guest(61, 0, 0, false),
            "health",
        ),
        (
            "6.0.2",
            "rolling",
            json!({"batchSize": 2, "pauseOnFailure": false}),
            guest(62, 0, 0, false),
            "health",
        ),
        (
            "6.0.3",
            "regional",
            json!({"interRegionDelay": "PT1S"}),
            guest(63, 0, 0, false),
            "health",
        ),
    ];
    for (version, strategy, config, bytes, gate) in bad {
        c.register(version, &bytes).await;
        load.reset();
        let id = c
            .deploy(&format!("calc-v{version}"), strategy, config)
            .await;
        let d = c.settle(&id).await;
        assert_eq!(d["status"], "rolled_back", "{strategy}: {d:#}");
        assert!(
            d["state"]["gates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["gate"] == gate && g["outcome"] == "fail"),
            "{strategy}: {:#}",
            d["state"]["gates"]
        );
        assert!(
            all_on(&hosts, &stable).await,
            "{strategy}: {:?}",
            routes(&hosts).await
        );
        let seen = load.snapshot();
        assert_eq!(
            failures_of(&seen, &stable),
            0,
            "{strategy}: the stable version failed calls: {seen:?}"
        );
        assert_eq!(
            unexpected_failures(&seen, Some(version)),
            0,
            "{strategy}: {seen:?}"
        );
    }
    // A/B with a worse B: B errs on 1 call in 12 — under the rollback
    // triggers set here, so the experiment decides: A stays.
    c.register("6.0.4", &guest(64, 12, 0, true)).await;
    let id = c
        .deploy_with(
            "calc-v6.0.4",
            "ab",
            json!({"variantBPercentage": 30, "experimentDuration": "PT2S"}),
            json!({"minSampleSize": 20, "maxErrorRate": 0.5, "maxCrashRate": 0.5}),
        )
        .await;
    let d = c.settle(&id).await;
    assert_eq!(d["status"], "completed", "{d:#}");
    assert_eq!(d["state"]["winner"], "A", "{:#}", d["state"]["gates"]);
    assert!(all_on(&hosts, &stable).await);

    // A/B with a faster B: B wins on latency (Mann-Whitney) and is promoted.
    c.register("7.0.0", &guest(70, 0, 0, true)).await;
    c.register("7.1.0", &guest(71, 0, 0, true)).await;
    let slow_stable = {
        // A slow stable first: 7.0.0 burns ~3M iterations per call.
        c.register("6.9.0", &guest(69, 0, 3_000_000, true)).await;
        let id = c
            .deploy("calc-v6.9.0", "rolling", json!({"batchSize": 6}))
            .await;
        assert_eq!(c.settle(&id).await["status"], "completed");
        "6.9.0"
    };
    load.reset();
    let id = c
        .deploy(
            "calc-v7.0.0",
            "ab",
            json!({"variantBPercentage": 50, "experimentDuration": "PT2S"}),
        )
        .await;
    let d = c.settle(&id).await;
    assert_eq!(d["status"], "completed", "{d:#}");
    assert_eq!(d["state"]["winner"], "B", "{:#}", d["state"]["gates"]);
    let ab = d["state"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "ab")
        .unwrap()
        .clone();
    assert!(ab["reason"].as_str().unwrap().contains("faster"), "{ab:#}");
    assert!(all_on(&hosts, "7.0.0").await);
    assert_eq!(failures_of(&load.snapshot(), slow_stable), 0);

    // The control plane restarts mid-rollout; the new one resumes it.
    let id = c
        .deploy(
            "calc-v7.1.0",
            "canary",
            json!({"stages": [50, 100], "evaluationPeriod": "PT2S"}),
        )
        .await;
    c.wait(&id, |d| d["state"]["applied"] == true).await;
    c.restart_control().await;
    let d = c.settle(&id).await;
    assert_eq!(d["status"], "completed", "{d:#}");
    assert!(all_on(&hosts, "7.1.0").await);

    let seen = load.stop().await;
    let transport: u64 = seen
        .iter()
        .filter(|((v, _), _)| v == "transport")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(transport, 0, "{seen:?}");
    for h in hosts {
        h.shutdown().await;
    }
    let _ = c.stop.take().unwrap().send(());
    c.server.take().unwrap().await.unwrap().unwrap();
}
