//! The rollout engine's state machine under paused tokio time, driving an
//! in-memory fleet: every strategy's happy path, failure path and manual
//! controls, insufficient data, and a restart mid-rollout. (Real nodes
//! are in `rollout_e2e`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Value, json};

use wasmswap_control::agent::AgentError;
use wasmswap_control::clock::Clock;
use wasmswap_control::model::{Actor, Module, ModuleLimits, NewModule, Node, NodeCapacity};
use wasmswap_control::rollout::driver::{Driver, RouteSpec};
use wasmswap_control::rollout::model::{Deployment, DeploymentSpec, DeploymentStatus, HealthCheck};
use wasmswap_control::rollout::{Engine, EngineSettings, ops};
use wasmswap_control::store::{NodeUpdate, Store, StoreConfig};
use wasmswap_core::{CounterSnapshot, ErrorKind};

use super::common::T0;

/// How a version behaves in the simulation.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    error_rate: f64,
    unhealthy: bool,
    /// Latency bucket its calls land in.
    bucket: usize,
}

#[derive(Default)]
struct NodeSim {
    loaded: HashMap<String, CounterSnapshot>,
    route: Option<RouteSpec>,
}

/// An in-memory fleet: versions, routes, and counters that grow as
/// simulated traffic follows the routes.
#[derive(Default)]
struct Fleet {
    /// No calls at all (the simulation's clock keeps ticking).
    silent: std::sync::atomic::AtomicBool,
    /// By (node, service).
    nodes: Mutex<HashMap<(String, String), NodeSim>>,
    behaviour: Mutex<HashMap<String, Behaviour>>,
    calls: Mutex<Vec<String>>,
}

impl Fleet {
    fn behave(&self, version: &str, b: Behaviour) {
        self.behaviour.lock().insert(version.into(), b);
    }

    fn route(&self, node: &str) -> Option<RouteSpec> {
        self.route_of(node, "svc")
    }

    fn route_of(&self, node: &str, service: &str) -> Option<RouteSpec> {
        self.nodes
            .lock()
            .get(&(node.to_string(), service.to_string()))
            .and_then(|n| n.route.clone())
    }

    /// 100 calls per node, split by the route; errors by behaviour.
    fn traffic(&self) {
        if self.silent.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let behaviour = self.behaviour.lock().clone();
        let mut nodes = self.nodes.lock();
        for sim in nodes.values_mut() {
            let Some(route) = sim.route.clone() else {
                continue;
            };
            let to_candidate = (route.weight_percent.round() as u64).min(100);
            let mut serve = |version: &str, calls: u64| {
                let b = behaviour.get(version).copied().unwrap_or_default();
                let c = sim.loaded.entry(version.to_string()).or_default();
                let errors = (calls as f64 * b.error_rate).round() as u64;
                c.calls += calls;
                c.errors += errors;
                if errors > 0 {
                    let trap = c
                        .errors_by_kind
                        .iter_mut()
                        .find(|(k, _)| *k == ErrorKind::Trap);
                    match trap {
                        Some((_, n)) => *n += errors,
                        None => c.errors_by_kind.push((ErrorKind::Trap, errors)),
                    }
                }
                if c.latency_buckets.len() < 17 {
                    c.latency_buckets.resize(17, 0);
                }
                c.latency_buckets[b.bucket.max(3)] += calls;
            };
            match &route.candidate {
                Some(cand) => {
                    serve(cand, to_candidate);
                    serve(&route.stable, 100 - to_candidate);
                }
                None => serve(&route.stable, 100),
            }
        }
    }
}

#[async_trait]
impl Driver for Fleet {
    async fn load(&self, node: &Node, module: &Module, _url: &str) -> Result<(), AgentError> {
        self.calls
            .lock()
            .push(format!("load {} {}", node.node_id, module.version));
        self.nodes
            .lock()
            .entry((node.node_id.clone(), module.name.clone()))
            .or_default()
            .loaded
            .entry(module.version.clone())
            .or_default();
        Ok(())
    }
    async fn set_route(
        &self,
        node: &Node,
        service: &str,
        route: &RouteSpec,
    ) -> Result<(), AgentError> {
        let mut nodes = self.nodes.lock();
        let sim = nodes
            .entry((node.node_id.clone(), service.to_string()))
            .or_default();
        for v in std::iter::once(&route.stable).chain(route.candidate.iter()) {
            if !sim.loaded.contains_key(v) {
                return Err(AgentError::Refused {
                    node: node.node_id.clone(),
                    status: 404,
                    code: "not_found".into(),
                    message: format!("{v} not loaded"),
                });
            }
        }
        sim.route = Some(route.clone());
        drop(nodes);
        // What the node now serves: one version, or a split.
        let serves = match &route.candidate {
            Some(c) if route.weight_percent >= 100.0 => c.clone(),
            Some(_) if route.weight_percent > 0.0 => "split".into(),
            _ => route.stable.clone(),
        };
        self.calls
            .lock()
            .push(format!("route {} {serves}", node.node_id));
        Ok(())
    }
    async fn health(
        &self,
        node: &Node,
        _service: &str,
        version: &str,
        _check: &HealthCheck,
    ) -> Result<bool, AgentError> {
        self.calls
            .lock()
            .push(format!("health {} {version}", node.node_id));
        Ok(!self
            .behaviour
            .lock()
            .get(version)
            .is_some_and(|b| b.unhealthy))
    }
    async fn counters(
        &self,
        node: &Node,
        service: &str,
    ) -> Result<HashMap<String, CounterSnapshot>, AgentError> {
        Ok(self
            .nodes
            .lock()
            .get(&(node.node_id.clone(), service.to_string()))
            .map(|n| n.loaded.clone())
            .unwrap_or_default())
    }
    async fn unload(&self, node: &Node, service: &str, version: &str) -> Result<(), AgentError> {
        self.calls
            .lock()
            .push(format!("unload {} {version}", node.node_id));
        if let Some(n) = self
            .nodes
            .lock()
            .get_mut(&(node.node_id.clone(), service.to_string()))
        {
            n.loaded.remove(version);
        }
        Ok(())
    }
}

fn actor() -> Actor {
    Actor {
        name: "admin".into(),
        role: "admin".into(),
        request_id: "t".into(),
        client: "t".into(),
    }
}

struct World {
    store: Store,
    fleet: Arc<Fleet>,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The first engine's task, which ends once it has stopped.
    engine_task: Option<tokio::task::JoinHandle<()>>,
    traffic: tokio::task::JoinHandle<()>,
}

const REGIONS: [(&str, &str); 6] = [
    ("eu-1", "eu"),
    ("eu-2", "eu"),
    ("us-1", "us"),
    ("us-2", "us"),
    ("ap-1", "ap"),
    ("ap-2", "ap"),
];

async fn world() -> World {
    world_with(Duration::from_secs(365 * 86_400)).await
}

/// A world whose nodes count as unhealthy after `heartbeat_timeout`
/// without a heartbeat (`heartbeats` sends them).
async fn world_with(heartbeat_timeout: Duration) -> World {
    tokio::time::pause();
    // Paused time jumps to the next timer whenever every task waits; a
    // task waiting on SQLite's worker thread is not waiting on a timer, so
    // without a short one pending, tokio would jump straight to the pool's
    // acquire timeout. This pacer keeps time moving in 10 ms steps.
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        acquire_timeout: Duration::from_secs(100 * 86_400),
        ..StoreConfig::embedded(dir.path())
    };
    let store = Store::open(&config, Clock::tokio(T0)).await.unwrap();
    for (id, region) in REGIONS {
        store
            .register_node(
                &NodeUpdate {
                    node_id: id.into(),
                    region: region.into(),
                    zone: "z".into(),
                    capacity: NodeCapacity {
                        max_modules: 10,
                        max_instances: 10,
                    },
                    runtime_version: "sim".into(),
                    wasi_support: vec![],
                    agent_url: "http://sim".into(),
                    data_url: "http://sim".into(),
                },
                &actor(),
            )
            .await
            .unwrap();
    }
    for (i, v) in ["1.0.0", "2.0.0"].iter().enumerate() {
        store
            .register_module(
                NewModule {
                    name: "svc".into(),
                    version: v.parse().unwrap(),
                    description: String::new(),
                    required_interfaces: vec![],
                    limits: ModuleLimits::default(),
                    metadata: Default::default(),
                    kind: "module".into(),
                    wasi_version: "none".into(),
                    exported_functions: vec![],
                    imports: vec![],
                    wit: None,
                },
                bytes::Bytes::from(super::common::module_returning(i as i64)),
                &actor(),
            )
            .await
            .unwrap();
    }
    let fleet = Arc::new(Fleet::default());
    let engine = start_engine_with(&store, &fleet, heartbeat_timeout);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let engine_task = tokio::spawn(engine.clone().run(async {
        let _ = stopped.await;
    }));
    let sim = fleet.clone();
    let traffic = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sim.traffic();
        }
    });
    let w = World {
        store,
        fleet,
        engine,
        _dir: dir,
        stop: Some(stop),
        engine_task: Some(engine_task),
        traffic,
    };
    // v1 is live everywhere: its (first) deployment completes.
    let d = w.deploy("svc-v1.0.0", "rolling", json!({})).await;
    w.run_to_end(&d).await;
    w
}

fn start_engine(store: &Store, fleet: &Arc<Fleet>) -> Arc<Engine> {
    // The simulated nodes send no heartbeats.
    start_engine_with(store, fleet, Duration::from_secs(365 * 86_400))
}

fn start_engine_with(
    store: &Store,
    fleet: &Arc<Fleet>,
    heartbeat_timeout: Duration,
) -> Arc<Engine> {
    Engine::new(
        store.clone(),
        fleet.clone(),
        EngineSettings {
            heartbeat_timeout,
            ..Default::default()
        },
    )
}

impl World {
    async fn deploy(&self, module: &str, strategy: &str, config: Value) -> Deployment {
        self.deploy_spec(json!({ "moduleId": module, "strategy": strategy, "strategyConfig": config, "environment": "staging",
            "analysis": { "minSampleSize": 50 } }))
            .await
    }

    async fn deploy_spec(&self, spec: Value) -> Deployment {
        let spec: DeploymentSpec = serde_json::from_value(spec).unwrap();
        let d = ops::create(&self.store, spec, &actor()).await.unwrap();
        let d = ops::execute(&self.store, &d.deployment_id, &actor(), true)
            .await
            .unwrap();
        self.engine.wake();
        d
    }

    async fn get(&self, d: &Deployment) -> Deployment {
        self.store.get_deployment(&d.deployment_id).await.unwrap()
    }

    /// Lets (paused) time run until the deployment settles.
    async fn run_to_end(&self, d: &Deployment) -> Deployment {
        self.run_until(d, |d| {
            d.status.is_final()
                || d.status == DeploymentStatus::Paused
                || d.state.awaiting_promotion
        })
        .await
    }

    async fn run_until(&self, d: &Deployment, done: impl Fn(&Deployment) -> bool) -> Deployment {
        for _ in 0..20_000 {
            let now = self.get(d).await;
            if done(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("deployment did not settle: {:?}", self.get(d).await);
    }

    /// Lets paused time pass in small steps. (One long sleep would let
    /// tokio jump straight to its end while the engine waits on SQLite's
    /// worker thread, which is not a timer.)
    async fn pass(&self, total: Duration) {
        let step = Duration::from_millis(100);
        for _ in 0..(total.as_millis() / step.as_millis()) {
            tokio::time::sleep(step).await;
        }
    }

    fn routes(&self) -> Vec<RouteSpec> {
        REGIONS
            .iter()
            .map(|(n, _)| self.fleet.route(n).unwrap())
            .collect()
    }

    fn all_on(&self, version: &str) -> bool {
        self.routes()
            .iter()
            .all(|r| r.stable == version && r.candidate.is_none())
    }

    fn gates(d: &Deployment) -> Vec<(String, String)> {
        d.state
            .gates
            .iter()
            .map(|g| (g.gate.clone(), g.outcome.clone()))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.traffic.abort();
    }
}

#[tokio::test]
async fn canary_happy_path_holds_each_stage_and_checks_metrics() {
    let w = world().await;
    assert!(w.all_on("1.0.0"));
    let started = tokio::time::Instant::now();
    let d = w
        .deploy(
            "svc-v2.0.0",
            "canary",
            json!({"stages": [10, 50, 100], "evaluationPeriod": "PT1M"}),
        )
        .await;
    // Stage 1 holds 10 % on every node.
    let mid = w
        .run_until(&d, |d| d.state.applied && d.state.phase == 0)
        .await;
    assert_eq!(mid.current_stage.as_deref(), Some("stage 1: 10 %"));
    assert!(
        w.routes()
            .iter()
            .all(|r| r.candidate.as_deref() == Some("2.0.0") && r.weight_percent == 10.0)
    );
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed, "{:?}", d.state.gates);
    assert_eq!(d.progress, 100.0);
    assert!(w.all_on("2.0.0"));
    // Two stages held a minute each.
    assert!(
        started.elapsed() >= Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let gates = World::gates(&d);
    assert_eq!(
        gates
            .iter()
            .filter(|g| g.0 == "metrics" && g.1 == "pass")
            .count(),
        2,
        "{gates:?}"
    );
    assert!(gates.iter().all(|g| g.1 != "fail"), "{gates:?}");
    let m = &d
        .state
        .gates
        .iter()
        .find(|g| g.gate == "metrics")
        .unwrap()
        .numbers;
    assert!(m["candidate"]["calls"].as_u64().unwrap() >= 50, "{m}");
    assert_eq!(
        w.store.get_module("svc-v2.0.0").await.unwrap().status,
        wasmswap_control::model::ModuleStatus::Deployed
    );
    assert_eq!(
        w.store.get_module("svc-v1.0.0").await.unwrap().status,
        wasmswap_control::model::ModuleStatus::Registered
    );
    let events: Vec<String> = w
        .store
        .deployment_events(&d.deployment_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        events.iter().filter(|k| *k == "phase").count(),
        3,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("completed"));
}

#[tokio::test]
async fn canary_erroring_candidate_rolls_back_automatically() {
    let w = world().await;
    w.fleet.behave(
        "2.0.0",
        Behaviour {
            error_rate: 0.3,
            ..Default::default()
        },
    );
    let d = w
        .deploy(
            "svc-v2.0.0",
            "canary",
            json!({"stages": [20, 100], "evaluationPeriod": "PT5M"}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert!(w.all_on("1.0.0"), "{:?}", w.routes());
    let g = d
        .state
        .gates
        .iter()
        .find(|g| g.gate == "auto-rollback")
        .unwrap();
    assert!(
        g.reason.contains("crash rate") || g.reason.contains("error rate"),
        "{}",
        g.reason
    );
    assert!(g.numbers["candidate"]["calls"].as_u64().unwrap() >= 50);
    // It did not wait for the end of the evaluation period.
    assert!(d.state.nodes.iter().all(|n| n.state == "rolled-back"));
    assert_eq!(
        w.store.get_module("svc-v1.0.0").await.unwrap().status,
        wasmswap_control::model::ModuleStatus::Deployed
    );
}

#[tokio::test]
async fn canary_manual_controls() {
    let w = world().await;
    let d = w
        .deploy(
            "svc-v2.0.0",
            "canary",
            json!({"stages": [10, 50, 100], "evaluationPeriod": "PT30S", "autoPromote": false}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert!(d.state.awaiting_promotion, "{:?}", d.status);
    assert_eq!(d.state.phase, 0);
    // Pause while waiting, resume, then promote one stage.
    ops::pause(&w.store, &d.deployment_id, &actor())
        .await
        .unwrap();
    assert!(
        ops::pause(&w.store, &d.deployment_id, &actor())
            .await
            .is_err(),
        "already paused"
    );
    ops::resume(&w.store, &d.deployment_id, &actor())
        .await
        .unwrap();
    ops::promote(&w.store, &d.deployment_id, &actor(), false)
        .await
        .unwrap();
    w.engine.wake();
    let d = w
        .run_until(&d, |d| d.state.phase == 1 && d.state.applied)
        .await;
    assert!(w.routes().iter().all(|r| r.weight_percent == 50.0));
    // Straight to 100 %.
    ops::promote(&w.store, &d.deployment_id, &actor(), true)
        .await
        .unwrap();
    w.engine.wake();
    let d = w.run_until(&d, |d| d.status.is_final()).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    assert!(w.all_on("2.0.0"));
    // And back: a completed deployment can be rolled back.
    ops::rollback(&w.store, &d.deployment_id, &actor(), false)
        .await
        .unwrap();
    w.engine.wake();
    let d = w
        .run_until(&d, |d| d.status == DeploymentStatus::RolledBack)
        .await;
    assert!(w.all_on("1.0.0"));
    assert!(
        ops::resume(&w.store, &d.deployment_id, &actor())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn insufficient_data_never_passes_a_stage() {
    let w = world().await;
    w.fleet
        .silent
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let d = w
        .deploy(
            "svc-v2.0.0",
            "canary",
            json!({"stages": [10, 100], "evaluationPeriod": "PT10S"}),
        )
        .await;
    // The stage is judged (and found short of calls)...
    w.run_until(&d, |d| {
        d.state
            .gates
            .iter()
            .any(|g| g.outcome == "insufficient-data")
    })
    .await;
    // ...and ten minutes later it is still waiting.
    w.pass(Duration::from_secs(600)).await;
    let d = w.get(&d).await;
    assert_eq!(d.status, DeploymentStatus::InProgress);
    assert_eq!(d.state.phase, 0, "ten minutes without calls: still stage 1");
    let g = d.state.gates.last().unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(
        (g.gate.as_str(), g.outcome.as_str()),
        ("metrics", "insufficient-data"),
        "{g:?}"
    );
    assert!(g.reason.contains("0 calls"), "{}", g.reason);
}

#[tokio::test]
async fn blue_green_checks_green_warm_then_switches_at_once() {
    let w = world().await;
    let d = w
        .deploy(
            "svc-v2.0.0",
            "blue-green",
            json!({"keepBlueEnvironment": false, "blueRetentionPeriod": "PT10M"}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    assert!(w.all_on("2.0.0"));
    assert_eq!(d.state.plan[0].name, "green warm beside blue");
    // From the fleet's history (not a transient state a busy machine can
    // step over): green was loaded and checked on every node before any
    // node sent it traffic, and each node went from blue to green in one
    // switch, never a split.
    let calls = w.fleet.calls.lock().clone();
    let first_green_route = calls
        .iter()
        .position(|c| c.starts_with("route ") && c.ends_with(" 2.0.0"))
        .expect("green got traffic");
    for node in ["ap-1", "ap-2", "eu-1", "eu-2", "us-1", "us-2"] {
        for before in [format!("load {node} 2.0.0"), format!("health {node} 2.0.0")] {
            let at = calls.iter().position(|c| *c == before);
            assert!(
                at.is_some_and(|i| i < first_green_route),
                "{before} before any traffic to green: {calls:#?}"
            );
        }
        let served: Vec<&str> = calls
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("route {node} ")))
            .collect();
        assert!(!served.contains(&"split"), "{node}: {served:?}");
        let switch = served.iter().position(|v| *v == "2.0.0").unwrap();
        assert!(
            served[..switch].iter().all(|v| *v == "1.0.0")
                && served[switch..].iter().all(|v| *v == "2.0.0"),
            "{node} switched once: {served:?}"
        );
    }
    let checks = w
        .fleet
        .calls
        .lock()
        .iter()
        .filter(|c| c.starts_with("health") && c.ends_with("2.0.0"))
        .count();
    assert!(
        checks >= 12,
        "green checked on every node before and after the switch: {checks}"
    );
    // Blue retires after its retention period.
    assert!(d.state.retire_at.is_some());
    w.run_until(&d, |d| d.state.retire_at.is_none()).await;
    let unloads = w
        .fleet
        .calls
        .lock()
        .iter()
        .filter(|c| c.starts_with("unload") && c.ends_with("1.0.0"))
        .count();
    assert_eq!(unloads, 6);
    // Not before its retention period.
    let events = w.store.deployment_events(&d.deployment_id).await.unwrap();
    let done = events.iter().find(|e| e.kind == "completed").unwrap();
    let retired = events.iter().find(|e| e.kind == "blue-retired").unwrap();
    let gap =
        time::OffsetDateTime::parse(&retired.at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            - time::OffsetDateTime::parse(&done.at, &time::format_description::well_known::Rfc3339)
                .unwrap();
    assert!(gap >= time::Duration::minutes(10), "{gap}");
}

#[tokio::test]
async fn blue_green_unhealthy_green_never_gets_traffic() {
    let w = world().await;
    w.fleet.behave(
        "2.0.0",
        Behaviour {
            unhealthy: true,
            ..Default::default()
        },
    );
    let d = w.deploy("svc-v2.0.0", "blue-green", json!({})).await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert!(w.all_on("1.0.0"));
    assert_eq!(d.state.phase, 0, "stopped at the warm-up");
}

#[tokio::test]
async fn rolling_batches_and_pause_on_failure() {
    let w = world().await;
    let d = w
        .deploy(
            "svc-v2.0.0",
            "rolling",
            json!({"batchSize": 4, "batchDelay": "PT20S"}),
        )
        .await;
    let first = w
        .run_until(&d, |d| d.state.phase == 0 && d.state.applied)
        .await;
    let on_new = w.routes().iter().filter(|r| r.stable == "2.0.0").count();
    assert_eq!(on_new, 4, "{first:?}");
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    assert!(w.all_on("2.0.0"));

    // A failing batch pauses (pauseOnFailure); a rollback then restores.
    w.store
        .register_module(
            NewModule {
                name: "svc".into(),
                version: "3.0.0".parse().unwrap(),
                description: String::new(),
                required_interfaces: vec![],
                limits: ModuleLimits::default(),
                metadata: Default::default(),
                kind: "module".into(),
                wasi_version: "none".into(),
                exported_functions: vec![],
                imports: vec![],
                wit: None,
            },
            bytes::Bytes::from(super::common::module_returning(3)),
            &actor(),
        )
        .await
        .unwrap();
    w.fleet.behave(
        "3.0.0",
        Behaviour {
            unhealthy: true,
            ..Default::default()
        },
    );
    let d = w
        .deploy("svc-v3.0.0", "rolling", json!({"batchSize": 2}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Paused);
    assert_eq!(
        w.routes().iter().filter(|r| r.stable == "3.0.0").count(),
        2,
        "only the first batch moved"
    );
    ops::rollback(&w.store, &d.deployment_id, &actor(), false)
        .await
        .unwrap();
    w.engine.wake();
    let d = w.run_until(&d, |d| d.status.is_final()).await;
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert!(w.all_on("2.0.0"));
}

#[tokio::test]
async fn regional_goes_region_by_region_and_rolls_back_one_region() {
    let w = world().await;
    let d = w
        .deploy("svc-v2.0.0", "regional", json!({"regionOrder": ["us", "eu", "ap"], "interRegionDelay": "PT30S", "abortOnRegionFailure": false}))
        .await;
    let first = w
        .run_until(&d, |d| d.state.phase == 0 && d.state.applied)
        .await;
    assert_eq!(first.current_stage.as_deref(), Some("region us"));
    assert_eq!(w.fleet.route("us-1").unwrap().stable, "2.0.0");
    assert_eq!(w.fleet.route("eu-1").unwrap().stable, "1.0.0");
    // eu's nodes start failing health checks once eu is reached.
    w.run_until(&d, |d| d.state.phase == 1 && d.state.applied)
        .await;
    w.fleet.behave(
        "2.0.0",
        Behaviour {
            unhealthy: true,
            ..Default::default()
        },
    );
    let d = w
        .run_until(&d, |d| !d.state.failed_regions.is_empty())
        .await;
    assert_eq!(d.state.failed_regions, ["eu"]);
    assert_eq!(
        w.fleet.route("eu-1").unwrap().stable,
        "1.0.0",
        "eu rolled back alone"
    );
    assert_eq!(
        w.fleet.route("us-1").unwrap().stable,
        "2.0.0",
        "us keeps the new version"
    );
}

#[tokio::test]
async fn regional_abort_on_region_failure_rolls_back_everything() {
    let w = world().await;
    let d = w
        .deploy(
            "svc-v2.0.0",
            "regional",
            json!({"interRegionDelay": "PT10S"}),
        )
        .await;
    w.run_until(&d, |d| d.state.phase == 1 && d.state.applied)
        .await;
    w.fleet.behave(
        "2.0.0",
        Behaviour {
            unhealthy: true,
            ..Default::default()
        },
    );
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert!(w.all_on("1.0.0"));
}

#[tokio::test]
async fn ab_promotes_the_better_variant_or_keeps_a() {
    let w = world().await;
    // A (stable) errs on 8 % of calls, B on none: B wins.
    w.fleet.behave(
        "1.0.0",
        Behaviour {
            error_rate: 0.08,
            ..Default::default()
        },
    );
    let d = w
        .deploy(
            "svc-v2.0.0",
            "ab",
            json!({"variantBPercentage": 50, "experimentDuration": "PT2M"}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed, "{:?}", d.state.gates);
    assert_eq!(d.state.winner.as_deref(), Some("B"));
    assert!(w.all_on("2.0.0"));
    let g = d.state.gates.iter().find(|g| g.gate == "ab").unwrap();
    assert!(
        g.numbers["errorRateTest"]["p"].as_f64().unwrap() < 0.05,
        "{}",
        g.numbers
    );

    // Now B (3.0.0) is no better than A (2.0.0): A stays.
    w.store
        .register_module(
            NewModule {
                name: "svc".into(),
                version: "3.0.0".parse().unwrap(),
                description: String::new(),
                required_interfaces: vec![],
                limits: ModuleLimits::default(),
                metadata: Default::default(),
                kind: "module".into(),
                wasi_version: "none".into(),
                exported_functions: vec![],
                imports: vec![],
                wit: None,
            },
            bytes::Bytes::from(super::common::module_returning(3)),
            &actor(),
        )
        .await
        .unwrap();
    let d = w
        .deploy(
            "svc-v3.0.0",
            "ab",
            json!({"experimentDuration": "PT1M", "autoPromote": false}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.state.winner.as_deref(), Some("A"));
    assert!(
        d.state.awaiting_promotion,
        "autoPromote false waits for a person"
    );
    ops::promote(&w.store, &d.deployment_id, &actor(), false)
        .await
        .unwrap();
    w.engine.wake();
    let d = w.run_until(&d, |d| d.status.is_final()).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    assert!(w.all_on("2.0.0"), "A kept");
    assert_eq!(
        w.store.live_module("svc").await.unwrap().as_deref(),
        Some("svc-v2.0.0")
    );
}

#[tokio::test]
async fn a_new_engine_resumes_a_rollout_where_the_old_one_stopped() {
    let mut w = world().await;
    let d = w
        .deploy(
            "svc-v2.0.0",
            "canary",
            json!({"stages": [25, 50, 100], "evaluationPeriod": "PT1M"}),
        )
        .await;
    w.run_until(&d, |d| d.state.phase == 1 && d.state.applied)
        .await;
    // The control plane goes away mid-rollout (an engine told to stop
    // finishes the step it is in, which may end the phase)...
    let _ = w.stop.take().unwrap().send(());
    w.engine_task.take().unwrap().await.unwrap();
    let stopped_at = w.get(&d).await.state.phase;
    assert!((1..=2).contains(&stopped_at), "{stopped_at}");
    w.pass(Duration::from_secs(300)).await;
    assert_eq!(
        w.get(&d).await.state.phase,
        stopped_at,
        "nothing moves without an engine"
    );
    // ...and a new one over the same store carries on.
    let engine = start_engine(&w.store, &w.fleet);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(engine.clone().run(async {
        let _ = stopped.await;
    }));
    w.stop = Some(stop);
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    assert!(w.all_on("2.0.0"));
    let phases = w
        .store
        .deployment_events(&d.deployment_id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "phase")
        .count();
    assert_eq!(phases, 3, "each phase applied once");
}

#[tokio::test]
async fn requests_are_checked_before_anything_moves() {
    let w = world().await;
    let bad = |spec: Value| {
        let store = w.store.clone();
        async move {
            ops::create(&store, serde_json::from_value(spec).unwrap(), &actor())
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let err = bad(json!({"moduleId": "svc-v2.0.0", "strategy": "canary", "strategyConfig": {"evaluationPeriod": "5m"}})).await;
    assert!(err.contains("ISO-8601"), "{err}");
    let err = bad(json!({"moduleId": "svc-v2.0.0", "strategy": "teleport"})).await;
    assert!(err.contains("teleport"), "{err}");
    let err = bad(json!({"moduleId": "svc-v2.0.0", "strategy": "canary", "replicas": 7})).await;
    assert!(err.contains("replicas"), "{err}");
    let err = bad(json!({"moduleId": "svc-v1.0.0", "strategy": "canary"})).await;
    assert!(err.contains("already the live version"), "{err}");
    // One deployment per service at a time.
    let d = w
        .deploy("svc-v2.0.0", "canary", json!({"evaluationPeriod": "PT1H"}))
        .await;
    let err = bad(json!({"moduleId": "svc-v2.0.0", "strategy": "rolling"})).await;
    assert!(err.contains(&d.deployment_id), "{err}");
    // Unknown target region: the placement gate fails it before traffic moves.
    ops::rollback(&w.store, &d.deployment_id, &actor(), true)
        .await
        .unwrap();
    w.engine.wake();
    w.run_until(&d, |d| d.status.is_final()).await;
    let d = w
        .deploy_spec(
            json!({"moduleId": "svc-v2.0.0", "strategy": "canary", "targetRegions": ["mars"]}),
        )
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert!(
        d.state
            .gates
            .iter()
            .any(|g| g.gate == "placement" && g.reason.contains("mars")),
        "{:?}",
        d.state.gates
    );
    assert!(w.all_on("1.0.0"));
}

async fn register_component(store: &Store, version: &str, path: &str, required: Vec<String>) {
    let bytes = test_programs::bytes(path);
    store
        .register_module(
            NewModule {
                name: "web".into(),
                version: version.parse().unwrap(),
                description: String::new(),
                required_interfaces: required,
                limits: ModuleLimits::default(),
                metadata: Default::default(),
                kind: "component".into(),
                wasi_version: "preview2".into(),
                exported_functions: vec![],
                imports: vec![],
                wit: None,
            },
            bytes::Bytes::from(bytes),
            &actor(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn wit_gate_blocks_breaking_exports_unless_an_approved_interface_allows_them() {
    let w = world().await;
    register_component(
        &w.store,
        "1.0.0",
        test_programs::HTTP_HELLO_V1_COMPONENT,
        vec![],
    )
    .await;
    register_component(
        &w.store,
        "2.0.0",
        test_programs::HTTP_HELLO_V2_COMPONENT,
        vec![],
    )
    .await;
    register_component(&w.store, "3.0.0", test_programs::TYPES_COMPONENT, vec![]).await;
    let d = w.deploy("web-v1.0.0", "rolling", json!({})).await;
    assert_eq!(w.run_to_end(&d).await.status, DeploymentStatus::Completed);
    // Same world: the gate passes.
    let d = w
        .deploy("web-v2.0.0", "canary", json!({"stages": [100]}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    let g = d.state.gates.iter().find(|g| g.gate == "wit").unwrap();
    assert_eq!(g.outcome, "pass", "{g:?}");
    // The HTTP handler export goes away: callers break, nothing moves.
    let d = w.deploy("web-v3.0.0", "canary", json!({})).await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Failed);
    let g = d.state.gates.iter().find(|g| g.gate == "wit").unwrap();
    assert_eq!(g.outcome, "fail");
    assert!(g.reason.contains("breaking"), "{}", g.reason);
    assert!(!g.numbers["breaking"].as_array().unwrap().is_empty());
    assert!(
        REGIONS
            .iter()
            .all(|(n, _)| w.fleet.route_of(n, "web").unwrap().stable == "2.0.0")
    );
    // An approved interface the module names lets it through only when it
    // covers the changed exports (their package): an unrelated one does not.
    for (ns, name, iface) in [("acme", "web", "api"), ("wasi", "http", "incoming-handler")] {
        let id = format!("{ns}/{name}@9.0.0");
        w.store
            .insert_interface(
                &wasmswap_control::store::NewInterface {
                    namespace: ns.into(),
                    name: name.into(),
                    version: "9.0.0".into(),
                    interface: iface.into(),
                    wit: format!("package {ns}:{name}@9.0.0; interface {iface} {{ f: func(); }}"),
                    compatibility: "callers".into(),
                    review: json!({ "needsApproval": true }),
                    needs_approval: true,
                },
                &actor(),
            )
            .await
            .unwrap();
        w.store
            .set_interface_status(&id, "approved", &actor())
            .await
            .unwrap();
    }
    register_component(
        &w.store,
        "3.1.0",
        test_programs::TYPES_COMPONENT,
        vec!["acme/web@9.0.0".into()],
    )
    .await;
    let d = w
        .deploy("web-v3.1.0", "canary", json!({"stages": [100]}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(
        d.status,
        DeploymentStatus::Failed,
        "an unrelated interface allows nothing"
    );
    register_component(
        &w.store,
        "4.0.0",
        test_programs::TYPES_COMPONENT,
        vec!["wasi/http@9.0.0".into()],
    )
    .await;
    let d = w
        .deploy("web-v4.0.0", "canary", json!({"stages": [100]}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed, "{:?}", d.state.gates);
    let g = d.state.gates.iter().find(|g| g.gate == "wit").unwrap();
    assert!(g.reason.contains("approved"), "{}", g.reason);
}

#[tokio::test]
async fn an_unhealthy_node_is_replaced_in_its_region() {
    // Health here is decided by the last heartbeat's age; the victim's is
    // set to long ago below, so nothing depends on how fast paused time runs.
    let w = world().await;
    // One replica per region: eu-2, us-2, ap-2 are spare.
    let d = w
        .deploy_spec(json!({"moduleId": "svc-v2.0.0", "strategy": "canary", "replicas": 1, "environment": "staging",
            "strategyConfig": {"stages": [100]}}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    let targets: Vec<String> = d.state.nodes.iter().map(|n| n.node_id.clone()).collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    let victim = targets
        .iter()
        .find(|t| t.starts_with("eu"))
        .unwrap()
        .clone();
    let spare = if victim == "eu-1" { "eu-2" } else { "eu-1" };
    sqlx::query("UPDATE nodes SET last_heartbeat_at = 0 WHERE id = $1")
        .bind(&victim)
        .execute(w.store.pool())
        .await
        .unwrap();
    let d = w
        .run_until(&d, |d| d.state.nodes.iter().any(|n| n.node_id == spare))
        .await;
    let replaced = d.state.nodes.iter().find(|n| n.node_id == victim).unwrap();
    assert_eq!(replaced.state, "replaced");
    assert_eq!(
        w.fleet.route(spare).unwrap().stable,
        "2.0.0",
        "the spare serves the live version"
    );
    let events = w.store.deployment_events(&d.deployment_id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "placement" && e.message.contains(spare)),
        "{events:?}"
    );
}

#[tokio::test]
async fn pinned_nodes_and_regions_keep_their_version() {
    let w = world().await;
    w.store
        .set_pin("svc", "node", "eu-1", "svc-v1.0.0", &actor())
        .await
        .unwrap();
    w.store
        .set_pin("svc", "region", "ap", "svc-v1.0.0", &actor())
        .await
        .unwrap();
    let d = w
        .deploy("svc-v2.0.0", "canary", json!({"stages": [100]}))
        .await;
    let d = w.run_to_end(&d).await;
    assert_eq!(d.status, DeploymentStatus::Completed);
    let mut targets: Vec<&str> = d.state.nodes.iter().map(|n| n.node_id.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["eu-2", "us-1", "us-2"]);
    for (node, version) in [
        ("eu-1", "1.0.0"),
        ("ap-1", "1.0.0"),
        ("ap-2", "1.0.0"),
        ("eu-2", "2.0.0"),
        ("us-1", "2.0.0"),
    ] {
        assert_eq!(w.fleet.route(node).unwrap().stable, version, "{node}");
    }
    // Moving a pin routes the node at once.
    w.store
        .set_pin("svc", "node", "eu-1", "svc-v2.0.0", &actor())
        .await
        .unwrap();
    w.engine.wake();
    // Paused time races ahead of the engine's real work under a loaded
    // machine: wait by iterations, not by (paused) seconds.
    for _ in 0..20_000 {
        if w.fleet.route("eu-1").unwrap().stable == "2.0.0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.fleet.route("eu-1").unwrap().stable, "2.0.0");
    for _ in 0..100 {
        if w.store
            .pins(Some("svc"))
            .await
            .unwrap()
            .iter()
            .all(|p| p.applied)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pins not marked applied");
}
