//! The rollout engine: advances each deployment one step at a time,
//! persisting after every step, so a restarted control plane resumes where
//! the last one stopped.
//!
//! Division of labour: API calls (pause, promote, rollback, …) only change
//! a deployment's status and flags in the store; every call to a node is
//! made here. All node calls are idempotent (load, set a route, check,
//! unload), so a step cut short by a crash or a lost race is simply done
//! again. A step holds the deployment's lock (on PostgreSQL an advisory
//! lock, so with several control-plane replicas exactly one works on a
//! deployment) and saves with the revision it read: if an API call changed
//! the deployment meanwhile, the step's result is dropped and the next tick
//! starts from what the API wrote.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::Notify;

use crate::agent::AgentError;
use crate::model::{Actor, Module, ModuleStatus, Node, NodeHealth};
use crate::store::{Store, StoreError};

use super::analysis::{self, Verdict, Window};
use super::driver::{Driver, RouteSpec};
use super::model::{
    Deployment, DeploymentStatus, GateDecision, NodeState, Phase, Replicas, Strategy,
};
use super::plan::{self, Target};

/// Deployments stepped at once. On PostgreSQL each step holds a pooled
/// connection for its lock's transaction for as long as it runs (node calls
/// included), so this stays well below the pool's 16 connections, leaving
/// the rest to the step's queries and to the API.
const DEPLOYMENTS_AT_ONCE: usize = 4;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The URL nodes fetch binaries from (`{public_url}/api/v1/wasm/binaries/…`).
    pub public_url: String,
    /// A node silent this long is unhealthy.
    pub heartbeat_timeout: Duration,
    /// Time between passes over the work. By default 200 ms.
    pub tick: Duration,
    /// Node calls in flight at once per step. By default 16.
    pub concurrency: usize,
    /// Attempts per node call (transport errors and 5xx are retried). By default 3.
    pub attempts: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8000".into(),
            heartbeat_timeout: Duration::from_secs(30),
            tick: Duration::from_millis(200),
            concurrency: 16,
            attempts: 3,
        }
    }
}

/// The engine; share it with `Arc`.
pub struct Engine {
    store: Store,
    driver: Arc<dyn Driver>,
    settings: EngineSettings,
    wake: Notify,
    last_reconcile: parking_lot::Mutex<Option<tokio::time::Instant>>,
    /// Who wants each deployment now: this engine's step, API calls.
    claims: parking_lot::Mutex<HashMap<String, Claims>>,
}

/// Who wants one deployment now.
#[derive(Default)]
struct Claims {
    /// The step under way (or about to take the lock): notified to stop.
    step: Option<Arc<Notify>>,
    /// API calls that wait for the deployment's lock (or hold it); no step
    /// starts meanwhile.
    controls: usize,
}

/// An API call's claim on a deployment; see [`Engine::hold`].
#[derive(Debug)]
#[must_use = "the claim ends when this is dropped"]
pub struct ControlHold<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for ControlHold<'_> {
    fn drop(&mut self) {
        let mut claims = self.engine.claims.lock();
        if let Some(c) = claims.get_mut(&self.id) {
            c.controls -= 1;
            if c.controls == 0 && c.step.is_none() {
                claims.remove(&self.id);
            }
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a step stopped early.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed, or another writer won a race (retried next tick).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn engine_actor() -> Actor {
    Actor {
        name: "rollout-engine".into(),
        role: "system".into(),
        request_id: "-".into(),
        client: "-".into(),
    }
}

/// The two versions a deployment moves between, resolved.
struct Versions {
    candidate: Module,
    stable: Option<Module>,
}

impl Versions {
    fn stable_label(&self) -> Option<&str> {
        self.stable.as_ref().map(|m| m.version.as_str())
    }
}

/// The live node records of a deployment's nodes that pass `keep`.
fn deployed_nodes(
    d: &Deployment,
    nodes: &HashMap<String, Node>,
    keep: impl Fn(&NodeState) -> bool,
) -> Vec<Node> {
    d.state
        .nodes
        .iter()
        .filter(|n| keep(n))
        .filter_map(|n| nodes.get(&n.node_id).cloned())
        .collect()
}

impl Engine {
    /// An engine over `store`, driving nodes through `driver`.
    pub fn new(store: Store, driver: Arc<dyn Driver>, settings: EngineSettings) -> Arc<Self> {
        Arc::new(Self {
            store,
            driver,
            settings,
            wake: Notify::new(),
            last_reconcile: parking_lot::Mutex::new(None),
            claims: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Claims deployment `id` for an API call (a pause, an abort, …) until
    /// the returned guard is dropped: the step this engine is taking on it,
    /// if any, is cut short, and no other starts meanwhile, so the call gets
    /// the deployment's lock now rather than when a slow node has answered
    /// or timed out (a load waits up to two minutes). A step cut short is
    /// dropped at its next await, as if the process had died there: every
    /// node call is idempotent and a step saves its progress only whole,
    /// so the next step does again what that one had begun. A step on
    /// another control-plane replica is not reached: the call waits for it.
    pub fn hold(&self, id: &str) -> ControlHold<'_> {
        let mut claims = self.claims.lock();
        let c = claims.entry(id.to_string()).or_default();
        c.controls += 1;
        if let Some(step) = &c.step {
            // A permit, kept if the step is not yet waiting for one.
            step.notify_one();
        }
        ControlHold {
            engine: self,
            id: id.to_string(),
        }
    }

    /// Makes the loop look at the work now rather than at its next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` resolves.
    ///
    /// Each deployment's steps run in a task of their own, so a node that is
    /// slow to answer (a load waits up to its timeout) holds up only the
    /// deployments that wait for it; the others keep their pace. So does
    /// placement reconciliation. On stop, the tasks in flight finish (each
    /// step saves its progress).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut steps = tokio::task::JoinSet::new();
        // Task → deployment, so that a step that panicked is tried again.
        let mut in_flight: HashMap<tokio::task::Id, String> = Default::default();
        let mut reconciling: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            while let Some(done) = steps.try_join_next_with_id() {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(e) => {
                        tracing::error!(error = %e, "a rollout step panicked; it is tried again");
                        e.id()
                    }
                };
                in_flight.remove(&task);
            }
            for id in self.work().await {
                if in_flight.len() >= DEPLOYMENTS_AT_ONCE {
                    break;
                }
                if in_flight.values().any(|busy| *busy == id) {
                    continue;
                }
                let engine = self.clone();
                let stepped = id.clone();
                let task = steps.spawn(async move { engine.step_locked(&stepped).await });
                in_flight.insert(task.id(), id);
            }
            if reconciling.as_ref().is_none_or(|r| r.is_finished()) {
                let engine = self.clone();
                reconciling = Some(tokio::spawn(async move { engine.reconcile_if_due().await }));
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.settings.tick) => {}
                () = self.wake.notified() => {}
            }
        }
        if let Some(r) = reconciling {
            let _ = r.await;
        }
        while steps.join_next().await.is_some() {}
    }

    /// Deployments with work to do.
    async fn work(&self) -> Vec<String> {
        match self.store.engine_work().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "rollout engine cannot read its work");
                Vec::new()
            }
        }
    }

    /// One step of `id`, unless another replica (or an API call) holds it.
    async fn step_locked(&self, id: &str) {
        // Registered before the lock is taken, and under the same mutex as
        // API calls' claims: either a call claimed it first (no step), or
        // the call's claim interrupts this step.
        let interrupted = {
            let mut claims = self.claims.lock();
            let c = claims.entry(id.to_string()).or_default();
            if c.controls > 0 {
                return;
            }
            c.step.insert(Arc::new(Notify::new())).clone()
        };
        self.step_unless_interrupted(id, &interrupted).await;
        let mut claims = self.claims.lock();
        if let Some(c) = claims.get_mut(id) {
            c.step = None;
            if c.controls == 0 {
                claims.remove(id);
            }
        }
    }

    async fn step_unless_interrupted(&self, id: &str, interrupted: &Notify) {
        let Some(_lock) = self
            .store
            .try_lock(&format!("deployment:{id}"))
            .await
            .ok()
            .flatten()
        else {
            return;
        };
        let stepped = tokio::select! {
            stepped = self.step(id) => stepped,
            () = interrupted.notified() => {
                tracing::info!(deployment = %id, "step interrupted by an API call on the deployment; the next step resumes");
                return;
            }
        };
        match stepped {
            Ok(()) => {}
            Err(EngineError::Store(StoreError::Conflict(_))) => {
                tracing::debug!(deployment = %id, "changed during the step; next tick resumes");
            }
            Err(e) => tracing::warn!(deployment = %id, error = %e, "rollout step failed"),
        }
    }

    async fn reconcile_if_due(&self) {
        // Placement changes with heartbeats (seconds), not with every tick:
        // reconciling reads every finished deployment, so it runs at most
        // once a second.
        let due = {
            let mut last = self.last_reconcile.lock();
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(tokio::time::Instant::now());
            }
            due
        };
        if due && let Err(e) = self.reconcile().await {
            tracing::warn!(error = %e, "placement reconciliation failed");
        }
    }

    /// Keeps finished deployments' placement whole: a node of a live
    /// deployment that turned unhealthy is replaced by a healthy node of its
    /// region (the live version loaded and routed there), and a node a
    /// rollback could not reach is put back on the stable version once it
    /// heartbeats again.
    async fn reconcile(&self) -> Result<(), EngineError> {
        let nodes = self.nodes().await?;
        self.apply_pins(&nodes).await?;
        for status in [DeploymentStatus::Completed, DeploymentStatus::RolledBack] {
            for d in self.store.list_deployments(None, Some(status), 100).await? {
                let needs = d.state.nodes.iter().any(|n| {
                    let health = nodes.get(&n.node_id).map(|x| x.status);
                    (status == DeploymentStatus::Completed
                        && health == Some(NodeHealth::Unhealthy)
                        && n.state != "replaced")
                        || (n.state == "unreachable" && health == Some(NodeHealth::Healthy))
                });
                if !needs {
                    continue;
                }
                // Only the deployment whose version the service runs now.
                let v = self.versions(&d).await?;
                let serving = match (d.status, d.state.winner.as_deref()) {
                    (DeploymentStatus::Completed, Some("A"))
                    | (DeploymentStatus::RolledBack, _) => v.stable.clone(),
                    _ => Some(v.candidate.clone()),
                };
                let Some(serving) = serving else { continue };
                if self.store.live_module(&d.service).await?.as_deref()
                    != Some(serving.module_id.as_str())
                {
                    continue;
                }
                let Some(_lock) = self
                    .store
                    .try_lock(&format!("deployment:{}", d.deployment_id))
                    .await?
                else {
                    continue;
                };
                self.reconcile_one(d, &serving, &nodes).await?;
            }
        }
        Ok(())
    }

    /// Routes pinned nodes and regions to their pinned version (once per
    /// pin change; a region's nodes that join later are not pinned).
    async fn apply_pins(&self, nodes: &HashMap<String, Node>) -> Result<(), EngineError> {
        for pin in self.store.pins(None).await? {
            if pin.applied {
                continue;
            }
            let module = self.store.get_module(&pin.module_id).await?;
            let url = self.binary_url(&module);
            let targets: Vec<Node> = nodes
                .values()
                .filter(|n| n.status == NodeHealth::Healthy)
                .filter(|n| match pin.scope.as_str() {
                    "node" => n.node_id == pin.target,
                    _ => n.region == pin.target,
                })
                .cloned()
                .collect();
            if targets.is_empty() {
                continue;
            }
            let route = RouteSpec::only(&module.version);
            let service = pin.service.clone();
            let (_, failed) = self
                .on_nodes(&targets, |n| {
                    let (route, service, module, url) =
                        (route.clone(), service.clone(), &module, url.clone());
                    async move {
                        self.driver.load(&n, module, &url).await?;
                        self.driver.set_route(&n, &service, &route).await
                    }
                })
                .await;
            if failed.is_empty() {
                self.store.pin_applied(&pin).await?;
                tracing::info!(service = %pin.service, scope = %pin.scope, target = %pin.target, module = %pin.module_id, "pin applied");
            }
        }
        Ok(())
    }

    async fn reconcile_one(
        &self,
        mut d: Deployment,
        serving: &Module,
        nodes: &HashMap<String, Node>,
    ) -> Result<(), EngineError> {
        let url = self.binary_url(serving);
        let route = RouteSpec::only(&serving.version);
        let mut events = Vec::new();
        let in_use: Vec<String> = d.state.nodes.iter().map(|n| n.node_id.clone()).collect();
        for i in 0..d.state.nodes.len() {
            let ns = d.state.nodes[i].clone();
            let Some(node) = nodes.get(&ns.node_id) else {
                continue;
            };
            if ns.state == "unreachable" && node.status == NodeHealth::Healthy {
                if self
                    .driver
                    .set_route(node, &d.service, &route)
                    .await
                    .is_ok()
                {
                    d.state.nodes[i].state = "rolled-back".into();
                    d.state.nodes[i].error = None;
                    events.push(format!("{} is back and on {}", ns.node_id, serving.version));
                }
                continue;
            }
            if d.status != DeploymentStatus::Completed
                || node.status != NodeHealth::Unhealthy
                || ns.state == "replaced"
            {
                continue;
            }
            let replacement = nodes.values().find(|n| {
                n.status == NodeHealth::Healthy
                    && n.region == ns.region
                    && !in_use.contains(&n.node_id)
                    && !d.state.nodes.iter().any(|x| x.node_id == n.node_id)
                    && (n.modules.contains(&serving.module_id)
                        || n.loaded_modules < n.capacity.max_modules)
            });
            let Some(r) = replacement else {
                continue;
            };
            if self.driver.load(r, serving, &url).await.is_err()
                || self.driver.set_route(r, &d.service, &route).await.is_err()
            {
                continue;
            }
            let _ = self.store.note_held(&r.node_id, &serving.module_id).await;
            d.state.nodes[i].state = "replaced".into();
            d.state.nodes[i].error = Some(format!("unhealthy; replaced by {}", r.node_id));
            d.state.nodes.push(NodeState {
                node_id: r.node_id.clone(),
                region: r.region.clone(),
                state: "routed".into(),
                weight: 100.0,
                error: None,
            });
            events.push(format!(
                "{} unhealthy: {} placed on {}",
                ns.node_id, serving.module_id, r.node_id
            ));
        }
        if !events.is_empty() {
            let msg = events.join("; ");
            tracing::info!(deployment = %d.deployment_id, %msg, "placement reconciled");
            self.store
                .save_deployment(&d, Some(("placement", &msg, serde_json::json!({}))), None)
                .await?;
        }
        Ok(())
    }

    fn binary_url(&self, m: &Module) -> String {
        format!(
            "{}/api/v1/wasm/binaries/{}",
            self.settings.public_url.trim_end_matches('/'),
            m.checksum
        )
    }

    async fn nodes(&self) -> Result<HashMap<String, Node>, StoreError> {
        let timeout =
            i64::try_from(self.settings.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .list_nodes(None, timeout)
            .await?
            .into_iter()
            .map(|n| (n.node_id.clone(), n))
            .collect())
    }

    /// Runs `f` on each node, `concurrency` at a time, retrying transport
    /// failures; returns the failures by node.
    async fn on_nodes<F, Fut, T>(
        &self,
        nodes: &[Node],
        f: F,
    ) -> (Vec<(String, T)>, Vec<(String, AgentError)>)
    where
        F: Fn(Node) -> Fut,
        Fut: Future<Output = Result<T, AgentError>>,
    {
        let attempts = self.settings.attempts.max(1);
        let f = &f;
        let results: Vec<(String, Result<T, AgentError>)> =
            futures::stream::iter(nodes.iter().cloned())
                .map(|n| async move {
                    let mut last = None;
                    for attempt in 0..attempts {
                        match f(n.clone()).await {
                            Ok(v) => return (n.node_id.clone(), Ok(v)),
                            Err(e) => {
                                let retry = matches!(
                                    e,
                                    AgentError::Connect { .. } | AgentError::Transport { .. }
                                ) || matches!(
                                    e,
                                    AgentError::Refused {
                                        status: 502..=504,
                                        ..
                                    }
                                );
                                last = Some(e);
                                if !retry {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                            }
                        }
                    }
                    let node = n.node_id.clone();
                    (n.node_id, Err(last.unwrap_or(AgentError::Connect { node })))
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (id, r) in results {
            match r {
                Ok(v) => ok.push((id, v)),
                Err(e) => failed.push((id, e)),
            }
        }
        (ok, failed)
    }

    async fn versions(&self, d: &Deployment) -> Result<Versions, StoreError> {
        Ok(Versions {
            candidate: self.store.get_module(&d.module_id).await?,
            stable: match &d.stable_module_id {
                Some(id) => Some(self.store.get_module(id).await?),
                None => None,
            },
        })
    }

    /// One step of one deployment.
    pub async fn step(&self, id: &str) -> Result<(), EngineError> {
        let mut d = self.store.get_deployment(id).await?;
        match d.status {
            DeploymentStatus::Completed => return self.retire(d).await,
            DeploymentStatus::InProgress => {}
            _ => return Ok(()),
        }
        let v = match self.versions(&d).await {
            Ok(v) => v,
            Err(StoreError::NotFound(what)) => {
                let reason = format!("{what} is gone from the store");
                return self.fail(d, &reason).await;
            }
            Err(e) => return Err(e.into()),
        };
        if d.state.rolling_back {
            return self.finish_rollback(d, &v).await;
        }
        if d.state.plan.is_empty() {
            return self.start(d, &v).await;
        }
        let Some(phase) = d.state.plan.get(d.state.phase).cloned() else {
            return self.complete(d, &v).await;
        };
        let nodes = self.nodes().await?;
        if !d.state.applied {
            return self.apply(d, &v, &phase, &nodes).await;
        }

        // Holding: watch the metrics and the triggers.
        let (cand, stable) = self.windows(&d, &v, &phase, &nodes).await;
        d.state.metrics = serde_json::json!({
            "candidate": { "version": v.candidate.version, "window": cand },
            "stable": { "version": v.stable_label(), "window": stable },
            "analysis": analysis::numbers(&cand, &stable),
        });
        let memory_limit = u64::from(v.candidate.limits.max_memory_mb) << 20;
        if d.spec.auto_rollback_enabled
            && phase.weights.values().any(|w| *w > 0.0)
            && let Some(reason) = analysis::trigger(&cand, &d.spec.analysis, memory_limit)
        {
            self.gate(
                &mut d,
                "auto-rollback",
                "fail",
                &reason,
                analysis::numbers(&cand, &stable),
            );
            // A trigger rolls back whatever the strategy's pause rule says:
            // `pauseOnFailure` is about failed checks, not a crashing version.
            if v.stable.is_some() {
                return self.begin_rollback(d, &v, &reason).await;
            }
            return self.on_failure(d, &v, &phase, &reason).await;
        }
        let now = self.store.clock().now_ms();
        let started = d.state.phase_started_at.unwrap_or(now);
        if now < started + phase.hold_ms as i64 || d.state.awaiting_promotion {
            self.store.save_deployment(&d, None, None).await?;
            return Ok(());
        }

        // The phase's gates.
        if phase.health_gate {
            let checked: Vec<Node> = self.checked_nodes(&d, &phase, &nodes);
            let check = d.spec.health_check.clone();
            let service = d.service.clone();
            let label = v.candidate.version.clone();
            let timeout = Duration::from_millis(phase.health_timeout_ms.max(1));
            let (ok, failed) = self
                .on_nodes(&checked, |n| {
                    let (check, service, label) = (check.clone(), service.clone(), label.clone());
                    async move {
                        tokio::time::timeout(
                            timeout,
                            self.driver.health(&n, &service, &label, &check),
                        )
                        .await
                        .unwrap_or(Err(AgentError::Timeout {
                            node: n.node_id.clone(),
                        }))
                    }
                })
                .await;
            let unhealthy: Vec<String> = ok
                .iter()
                .filter(|(_, healthy)| !healthy)
                .map(|(id, _)| id.clone())
                .chain(
                    failed
                        .iter()
                        .map(|(id, e)| format!("{id} ({})", e.reason_code())),
                )
                .collect();
            let bad_ids: Vec<String> = ok
                .iter()
                .filter(|(_, healthy)| !healthy)
                .map(|(id, _)| id.clone())
                .chain(failed.iter().map(|(id, _)| id.clone()))
                .collect();
            let numbers = serde_json::json!({ "checked": checked.len(), "unhealthy": unhealthy });
            if !unhealthy.is_empty() {
                let reason = format!("health check failed on {}", unhealthy.join(", "));
                self.gate(&mut d, "health", "fail", &reason, numbers);
                for n in &mut d.state.nodes {
                    if bad_ids.contains(&n.node_id) {
                        n.state = "failed".into();
                        n.error = Some("health check failed".into());
                    }
                }
                return self.on_failure(d, &v, &phase, &reason).await;
            }
            for n in &mut d.state.nodes {
                if checked.iter().any(|c| c.node_id == n.node_id) {
                    n.state = "healthy".into();
                }
            }
            self.gate(
                &mut d,
                "health",
                "pass",
                &format!("{} node(s) healthy", checked.len()),
                numbers,
            );
        }
        if phase.metrics_gate && v.stable.is_some() {
            let numbers = analysis::numbers(&cand, &stable);
            match analysis::compare(&cand, &stable, &d.spec.analysis, memory_limit) {
                Verdict::Insufficient(reason) => {
                    let repeated = d.state.gates.last().is_some_and(|g| {
                        g.phase == Some(d.state.phase) && g.outcome == "insufficient-data"
                    });
                    if !repeated {
                        self.gate(&mut d, "metrics", "insufficient-data", &reason, numbers);
                    }
                    self.store.save_deployment(&d, None, None).await?;
                    return Ok(());
                }
                Verdict::Fail(reason) => {
                    d.state.failures += 1;
                    self.gate(&mut d, "metrics", "fail", &reason, numbers);
                    if d.state.failures >= self.failure_threshold(&d) {
                        return self.on_failure(d, &v, &phase, &reason).await;
                    }
                    // Judge again after another period.
                    d.state.phase_started_at = Some(now);
                    d.state.baseline = self.baseline(&d, &nodes).await;
                    self.store.save_deployment(&d, None, None).await?;
                    return Ok(());
                }
                Verdict::Pass => {
                    d.state.passes += 1;
                    self.gate(&mut d, "metrics", "pass", "within every threshold", numbers);
                    if d.state.passes < self.success_threshold(&d) {
                        d.state.phase_started_at = Some(now);
                        d.state.baseline = self.baseline(&d, &nodes).await;
                        d.state.baseline = self.baseline(&d, &nodes).await;
                        self.store.save_deployment(&d, None, None).await?;
                        return Ok(());
                    }
                }
            }
        }
        if phase.ab_gate {
            let (winner, reason, numbers) = analysis::ab_decide(&stable, &cand, &d.spec.analysis);
            let Some(winner) = winner else {
                let repeated = d
                    .state
                    .gates
                    .last()
                    .is_some_and(|g| g.outcome == "insufficient-data");
                if !repeated {
                    self.gate(&mut d, "ab", "insufficient-data", &reason, numbers);
                }
                self.store.save_deployment(&d, None, None).await?;
                return Ok(());
            };
            self.gate(&mut d, "ab", "pass", &reason, numbers);
            d.state.winner = Some(winner.to_string());
            let share = if winner == "B" { 100.0 } else { 0.0 };
            let weights = phase.weights.keys().map(|k| (k.clone(), share)).collect();
            d.state.plan.push(Phase {
                name: format!("promote {winner}"),
                weights,
                hold_ms: 0,
                health_gate: winner == "B",
                metrics_gate: false,
                ab_gate: false,
                health_timeout_ms: phase.health_timeout_ms,
                region: None,
            });
            if !self.auto_promote(&d) {
                d.state.awaiting_promotion = true;
                self.store
                    .save_deployment(
                        &d,
                        Some((
                            "awaiting-promotion",
                            &format!("{winner} won; promote to apply it"),
                            serde_json::json!({}),
                        )),
                        None,
                    )
                    .await?;
                return Ok(());
            }
        } else if !self.auto_promote(&d) && d.state.phase + 1 < d.state.plan.len() {
            d.state.awaiting_promotion = true;
            self.store
                .save_deployment(
                    &d,
                    Some((
                        "awaiting-promotion",
                        &format!("{} passed; promote to continue", phase.name),
                        serde_json::json!({}),
                    )),
                    None,
                )
                .await?;
            return Ok(());
        }
        self.next_phase(d, &v).await
    }

    fn success_threshold(&self, d: &Deployment) -> u32 {
        match d.spec.parse_strategy() {
            Ok(Strategy::Canary {
                success_threshold, ..
            }) => success_threshold.max(1),
            _ => 1,
        }
    }

    fn failure_threshold(&self, d: &Deployment) -> u32 {
        match d.spec.parse_strategy() {
            Ok(Strategy::Canary {
                failure_threshold, ..
            }) => failure_threshold.max(1),
            _ => 1,
        }
    }

    fn auto_promote(&self, d: &Deployment) -> bool {
        match d.spec.parse_strategy() {
            Ok(Strategy::Canary { auto_promote, .. } | Strategy::Ab { auto_promote, .. }) => {
                auto_promote
            }
            _ => true,
        }
    }

    /// The nodes a phase's health gate checks: those with a share, or every
    /// target when none has one (a Blue-Green warm-up).
    fn checked_nodes(
        &self,
        d: &Deployment,
        phase: &Phase,
        nodes: &HashMap<String, Node>,
    ) -> Vec<Node> {
        let any = phase.weights.values().any(|w| *w > 0.0);
        deployed_nodes(d, nodes, |n| {
            !d.state.failed_regions.contains(&n.region)
                && (!any || phase.weights.get(&n.node_id).copied().unwrap_or(0.0) > 0.0)
        })
    }

    fn gate(
        &self,
        d: &mut Deployment,
        gate: &str,
        outcome: &str,
        reason: &str,
        numbers: serde_json::Value,
    ) {
        tracing::info!(deployment = %d.deployment_id, gate, outcome, reason, "gate");
        d.state.gates.push(GateDecision {
            gate: gate.into(),
            phase: (!d.state.plan.is_empty()).then_some(d.state.phase),
            outcome: outcome.into(),
            reason: reason.into(),
            numbers,
            at: self.store.clock().now_ms(),
        });
    }

    /// Candidate and stable windows since the phase started, summed over
    /// the target nodes.
    async fn windows(
        &self,
        d: &Deployment,
        v: &Versions,
        _phase: &Phase,
        nodes: &HashMap<String, Node>,
    ) -> (Window, Window) {
        // Only nodes measured since the phase began: a node without a
        // baseline (a failed region, a failed fetch, a replacement) would
        // count its whole life.
        let targets: Vec<Node> = deployed_nodes(d, nodes, |n| {
            !d.state.failed_regions.contains(&n.region)
                && d.state.baseline.get(&n.node_id).is_some()
        });
        let service = d.service.clone();
        let (ok, _) = self
            .on_nodes(&targets, |n| {
                let service = service.clone();
                async move { self.driver.counters(&n, &service).await }
            })
            .await;
        let mut cand = Window::default();
        let mut stable = Window::default();
        for (node, counters) in ok {
            let base = d.state.baseline.get(&node);
            let base_of = |label: &str| {
                base.and_then(|b| b.get(label)).and_then(|c| {
                    serde_json::from_value::<wasmswap_core::CounterSnapshot>(c.clone()).ok()
                })
            };
            if let Some(c) = counters.get(&v.candidate.version) {
                cand.add(&Window::between(c, base_of(&v.candidate.version).as_ref()));
            }
            if let Some(label) = v.stable_label()
                && let Some(c) = counters.get(label)
            {
                stable.add(&Window::between(c, base_of(label).as_ref()));
            }
        }
        (cand, stable)
    }

    /// Picks the targets, runs the gates that come before any traffic
    /// moves, writes the plan and loads the versions on every target.
    async fn start(&self, mut d: Deployment, v: &Versions) -> Result<(), EngineError> {
        // Gates first: nothing has touched a node yet.
        if let Some(reason) = self.wit_gate(&mut d, v).await? {
            return self.fail(d, &reason).await;
        }
        self.capability_gate(&mut d, v);

        let nodes = self.nodes().await?;
        let pins = self.store.pins(Some(&d.service)).await?;
        let nodes: HashMap<String, Node> = nodes
            .into_iter()
            .filter(|(id, n)| {
                // Pinned nodes and regions with their own default keep
                // their version: rollouts pass them by.
                !pins.iter().any(|p| {
                    (p.scope == "node" && &p.target == id)
                        || (p.scope == "region" && p.target == n.region)
                })
            })
            .collect();
        let targets = match self.place(&d, v, &nodes) {
            Ok(t) => t,
            Err(reason) => {
                self.gate(&mut d, "placement", "fail", &reason, serde_json::json!({}));
                return self.fail(d, &reason).await;
            }
        };
        let strategy = d.spec.parse_strategy().unwrap_or(Strategy::Rolling {
            batch_size: 1,
            batch_delay: None,
            health_check_timeout: "PT30S".into(),
            pause_on_failure: true,
        });
        let mut plan = match plan::plan(&strategy, &targets) {
            Ok(p) => p,
            Err(reason) => return self.fail(d, &reason).await,
        };
        if v.stable.is_none() {
            // A first deployment has nothing to split with: one phase that
            // routes every target to the new version once it is healthy.
            plan = vec![Phase {
                name: "first deployment".into(),
                weights: targets.iter().map(|t| (t.node_id.clone(), 100.0)).collect(),
                hold_ms: 0,
                health_gate: true,
                metrics_gate: false,
                ab_gate: false,
                health_timeout_ms: plan.first().map_or(30_000, |p| p.health_timeout_ms),
                region: None,
            }];
        }

        // Load both versions everywhere (the stable one may be new to a node).
        let target_nodes: Vec<Node> = targets
            .iter()
            .filter_map(|t| nodes.get(&t.node_id).cloned())
            .collect();
        let mut failures = Vec::new();
        for module in v.stable.iter().chain(std::iter::once(&v.candidate)) {
            let url = self.binary_url(module);
            let (_, failed) = self
                .on_nodes(&target_nodes, |n| {
                    let url = url.clone();
                    async move { self.driver.load(&n, module, &url).await }
                })
                .await;
            for (id, e) in failed {
                failures.push(format!("{id}: {} ({})", module.module_id, e.reason_code()));
            }
        }
        if !failures.is_empty() {
            let reason = format!("loading failed on {}", failures.join(", "));
            self.gate(
                &mut d,
                "placement",
                "fail",
                &reason,
                serde_json::json!({ "failures": failures }),
            );
            return self.fail(d, &reason).await;
        }
        for n in &target_nodes {
            // Best effort: the next heartbeat corrects it anyway.
            let _ = self
                .store
                .note_held(&n.node_id, &v.candidate.module_id)
                .await;
        }
        d.state.nodes = targets
            .iter()
            .map(|t| NodeState {
                node_id: t.node_id.clone(),
                region: t.region.clone(),
                state: "loaded".into(),
                weight: 0.0,
                error: None,
            })
            .collect();
        d.state.plan = plan;
        d.state.phase = 0;
        d.state.applied = false;
        let message = format!(
            "{} target node(s), {} phase(s)",
            d.state.nodes.len(),
            d.state.plan.len()
        );
        self.store
            .save_deployment(
                &d,
                Some((
                    "started",
                    &message,
                    serde_json::json!({ "nodes": targets.len() }),
                )),
                None,
            )
            .await?;
        self.wake();
        Ok(())
    }

    /// The targets: healthy nodes of the requested regions (or the named
    /// nodes), with room for the new version, `replicas` per region.
    fn place(
        &self,
        d: &Deployment,
        v: &Versions,
        nodes: &HashMap<String, Node>,
    ) -> Result<Vec<Target>, String> {
        let spec = &d.spec;
        let mut candidates: Vec<&Node> = nodes
            .values()
            .filter(|n| n.status == NodeHealth::Healthy)
            .filter(|n| spec.target_nodes.is_empty() || spec.target_nodes.contains(&n.node_id))
            .filter(|n| spec.target_regions.is_empty() || spec.target_regions.contains(&n.region))
            .filter(|n| {
                n.modules.contains(&v.candidate.module_id)
                    || n.loaded_modules < n.capacity.max_modules
            })
            .collect();
        for wanted in &spec.target_nodes {
            if !candidates.iter().any(|n| &n.node_id == wanted) {
                return Err(format!("node {wanted} is unknown, unhealthy or full"));
            }
        }
        // Prefer nodes already serving the service, then the least loaded.
        candidates.sort_by_key(|n| {
            let serves = v
                .stable
                .as_ref()
                .is_some_and(|s| n.modules.contains(&s.module_id));
            (
                n.region.clone(),
                !serves,
                n.loaded_modules,
                n.node_id.clone(),
            )
        });
        let per_region = match spec.replicas {
            Replicas::Count(c) => c as usize,
            Replicas::All(_) => usize::MAX,
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut targets = Vec::new();
        for n in candidates {
            let c = counts.entry(n.region.clone()).or_default();
            if *c < per_region {
                *c += 1;
                targets.push(Target {
                    node_id: n.node_id.clone(),
                    region: n.region.clone(),
                });
            }
        }
        for r in &spec.target_regions {
            if !counts.contains_key(r) {
                return Err(format!("region {r} has no healthy node with room"));
            }
        }
        if targets.is_empty() {
            return Err("no healthy node with room matches the targets".into());
        }
        Ok(targets)
    }

    /// A breaking change to the exports blocks the deployment unless the
    /// module names interfaces, all approved, that allow it.
    async fn wit_gate(
        &self,
        d: &mut Deployment,
        v: &Versions,
    ) -> Result<Option<String>, EngineError> {
        let Some(stable) = &v.stable else {
            return Ok(None);
        };
        if stable.kind != "component" || v.candidate.kind != "component" {
            return Ok(None);
        }
        let old = self.store.binary(&stable.checksum).await?;
        let new = self.store.binary(&v.candidate.checksum).await?;
        let diff = tokio::task::spawn_blocking(move || {
            let old = wasmswap_core::wit::WitWorld::from_component(&old)?;
            let new = wasmswap_core::wit::WitWorld::from_component(&new)?;
            Ok::<_, wasmswap_core::wit::WitError>(wasmswap_core::wit::diff_worlds(&old, &new))
        })
        .await
        .ok()
        .and_then(Result::ok);
        let Some(diff) = diff else {
            // Fail closed: a world that cannot be read cannot be cleared.
            let reason =
                "a component's WIT world could not be decoded, so its changes cannot be checked"
                    .to_string();
            self.gate(d, "wit", "fail", &reason, serde_json::json!({}));
            return Ok(Some(reason));
        };
        let breaking: Vec<String> = diff
            .changes
            .iter()
            .filter(|c| c.callers.is_breaking())
            .map(|c| format!("{}: {}", c.path, c.kind))
            .collect();
        let numbers = serde_json::json!({ "changes": diff.changes.len(), "breaking": breaking });
        if breaking.is_empty() {
            self.gate(
                d,
                "wit",
                "pass",
                &format!("{} change(s), none breaking", diff.changes.len()),
                numbers,
            );
            return Ok(None);
        }
        // Allowed only by approved interfaces the module names that cover
        // every breaking change: the change's path names the interface's
        // WIT package (`ns:name/…`, or `…#ns:name/…` inside a world).
        let mut covering = Vec::new();
        for id in &v.candidate.required_interfaces {
            if let Ok(i) = self.store.get_interface(id).await
                && i.approved_by.is_some()
            {
                covering.push(format!("{}:{}/", i.namespace, i.name));
            }
        }
        let approved = !breaking.is_empty()
            && breaking.iter().all(|b| {
                let path = b.split(": ").next().unwrap_or(b);
                covering
                    .iter()
                    .any(|c| path.starts_with(c.as_str()) || path.contains(&format!("#{c}")))
            });
        if approved {
            self.gate(
                d,
                "wit",
                "pass",
                "breaking changes allowed by approved interfaces",
                numbers,
            );
            return Ok(None);
        }
        let reason = format!(
            "{} breaking change(s) for callers ({}); register and approve an interface version that allows them",
            breaking.len(),
            breaking.join("; ")
        );
        self.gate(d, "wit", "fail", &reason, numbers);
        Ok(Some(reason))
    }

    /// New imports and larger limits: shown, and (production) covered by
    /// the deployment's approval.
    fn capability_gate(&self, d: &mut Deployment, v: &Versions) {
        let Some(stable) = &v.stable else {
            return;
        };
        let new_imports: Vec<&String> = v
            .candidate
            .imports
            .iter()
            .filter(|i| !stable.imports.contains(i))
            .collect();
        let (c, s) = (&v.candidate.limits, &stable.limits);
        let mut larger = Vec::new();
        if c.max_memory_mb > s.max_memory_mb {
            larger.push(format!(
                "maxMemoryMB {} → {}",
                s.max_memory_mb, c.max_memory_mb
            ));
        }
        if c.max_cpu_percent > s.max_cpu_percent {
            larger.push(format!(
                "maxCpuPercent {} → {}",
                s.max_cpu_percent, c.max_cpu_percent
            ));
        }
        if c.max_execution_time_seconds > s.max_execution_time_seconds {
            larger.push(format!(
                "maxExecutionTimeSeconds {} → {}",
                s.max_execution_time_seconds, c.max_execution_time_seconds
            ));
        }
        let numbers = serde_json::json!({ "newImports": new_imports, "largerLimits": larger });
        if new_imports.is_empty() && larger.is_empty() {
            self.gate(
                d,
                "capabilities",
                "pass",
                "no new imports, no larger limits",
                numbers,
            );
        } else {
            let approved = d
                .approved_by
                .clone()
                .unwrap_or_else(|| "not needed outside production".into());
            self.gate(
                d,
                "capabilities",
                "pass",
                &format!(
                    "{} new import(s), {} larger limit(s); approved by {approved}",
                    new_imports.len(),
                    larger.len()
                ),
                numbers,
            );
        }
    }

    /// Sets the phase's routes on every node, then records the counters the
    /// phase's analysis starts from.
    async fn apply(
        &self,
        mut d: Deployment,
        v: &Versions,
        phase: &Phase,
        nodes: &HashMap<String, Node>,
    ) -> Result<(), EngineError> {
        let targets: Vec<Node> =
            deployed_nodes(&d, nodes, |n| !d.state.failed_regions.contains(&n.region));
        let service = d.service.clone();
        let cand = v.candidate.version.clone();
        let stable = v.stable_label().map(str::to_string);
        let (_, failed) = self
            .on_nodes(&targets, |n| {
                let weight = phase.weights.get(&n.node_id).copied().unwrap_or(0.0);
                let route = RouteSpec::split(stable.as_deref(), &cand, weight);
                let service = service.clone();
                async move {
                    match route {
                        Some(r) => self.driver.set_route(&n, &service, &r).await,
                        None => Ok(()),
                    }
                }
            })
            .await;
        if !failed.is_empty() {
            let list: Vec<String> = failed
                .iter()
                .map(|(id, e)| format!("{id} ({})", e.reason_code()))
                .collect();
            let reason = format!("setting routes failed on {}", list.join(", "));
            self.gate(&mut d, "routes", "fail", &reason, serde_json::json!({}));
            return self.on_failure(d, v, phase, &reason).await;
        }
        // Counters at the start of the phase: its analysis looks at the
        // calls made since.
        d.state.baseline = self.baseline(&d, nodes).await;
        for n in &mut d.state.nodes {
            if !d.state.failed_regions.contains(&n.region) {
                n.weight = phase.weights.get(&n.node_id).copied().unwrap_or(0.0);
                n.state = if n.weight > 0.0 {
                    "routed".into()
                } else {
                    "loaded".into()
                };
            }
        }
        d.state.applied = true;
        d.state.phase_started_at = Some(self.store.clock().now_ms());
        d.state.passes = 0;
        d.state.failures = 0;
        let message = format!(
            "phase {} of {}: {}",
            d.state.phase + 1,
            d.state.plan.len(),
            phase.name
        );
        if d.state.phase == 0 {
            self.store
                .set_module_status(
                    &v.candidate.module_id,
                    ModuleStatus::Deployed,
                    &engine_actor(),
                )
                .await?;
        }
        self.store
            .save_deployment(
                &d,
                Some((
                    "phase",
                    &message,
                    serde_json::json!({ "weights": phase.weights }),
                )),
                None,
            )
            .await?;
        self.wake();
        Ok(())
    }

    async fn next_phase(&self, mut d: Deployment, v: &Versions) -> Result<(), EngineError> {
        d.state.phase += 1;
        d.state.applied = false;
        d.state.awaiting_promotion = false;
        if d.state.phase >= d.state.plan.len() {
            return self.complete(d, v).await;
        }
        self.store.save_deployment(&d, None, None).await?;
        self.wake();
        Ok(())
    }

    /// After a rollout, each target keeps the new version and the one
    /// before it (so a rollback is one route change); older versions of the
    /// service are unloaded once they drain. Best effort: a node that does
    /// not answer keeps them until the next rollout.
    async fn unload_older(&self, d: &Deployment, v: &Versions) {
        let Ok(nodes) = self.nodes().await else {
            return;
        };
        let targets: Vec<Node> = deployed_nodes(d, &nodes, |_| true);
        let keep: Vec<String> = std::iter::once(v.candidate.version.clone())
            .chain(v.stable.iter().map(|m| m.version.clone()))
            .collect();
        let service = d.service.clone();
        let _ = self
            .on_nodes(&targets, |n| {
                let (service, keep) = (service.clone(), keep.clone());
                async move {
                    let loaded = self.driver.counters(&n, &service).await?;
                    for version in loaded.keys().filter(|l| !keep.contains(l)) {
                        self.driver.unload(&n, &service, version).await?;
                    }
                    Ok(())
                }
            })
            .await;
    }

    async fn complete(&self, mut d: Deployment, v: &Versions) -> Result<(), EngineError> {
        self.unload_older(&d, v).await;
        let kept_a = d.state.winner.as_deref() == Some("A");
        d.status = DeploymentStatus::Completed;
        d.state.awaiting_promotion = false;
        let actor = engine_actor();
        if kept_a {
            self.store
                .set_module_status(&v.candidate.module_id, ModuleStatus::Registered, &actor)
                .await?;
        } else if let Some(stable) = &v.stable {
            self.store
                .set_module_status(&stable.module_id, ModuleStatus::Registered, &actor)
                .await?;
        }
        if let Ok(Strategy::BlueGreen {
            keep_blue_environment: false,
            blue_retention_period,
            ..
        }) = d.spec.parse_strategy()
            && v.stable.is_some()
        {
            let ms = plan::duration_ms("blueRetentionPeriod", &blue_retention_period)
                .unwrap_or(3_600_000);
            d.state.retire_at = Some(self.store.clock().now_ms() + ms as i64);
        }
        let message = if kept_a {
            "experiment over: A stays".to_string()
        } else if d.state.failed_regions.is_empty() {
            format!("{} serves every target", v.candidate.module_id)
        } else {
            format!("completed; rolled back in {:?}", d.state.failed_regions)
        };
        self.store
            .save_deployment(
                &d,
                Some(("completed", &message, serde_json::json!({}))),
                None,
            )
            .await?;
        tracing::info!(deployment = %d.deployment_id, "deployment completed");
        Ok(())
    }

    /// What a failed gate does: pause (Rolling with `pauseOnFailure`, or
    /// without automatic rollback), roll one region back (Regional without
    /// `abortOnRegionFailure`), or roll everything back.
    async fn on_failure(
        &self,
        mut d: Deployment,
        v: &Versions,
        phase: &Phase,
        reason: &str,
    ) -> Result<(), EngineError> {
        let strategy = d.spec.parse_strategy().ok();
        if let (
            Some(Strategy::Regional {
                abort_on_region_failure: false,
                ..
            }),
            Some(region),
        ) = (&strategy, &phase.region)
            && v.stable.is_some()
        {
            // This region goes back; the others carry on.
            let nodes = self.nodes().await?;
            let back: Vec<Node> = deployed_nodes(&d, &nodes, |n| &n.region == region);
            self.restore(&d, v, &back).await;
            d.state.failed_regions.push(region.clone());
            for n in &mut d.state.nodes {
                if &n.region == region {
                    n.state = "rolled-back".into();
                    n.weight = 0.0;
                }
            }
            let msg = format!("region {region} rolled back: {reason}");
            self.store
                .save_deployment(
                    &d,
                    Some(("region-rolled-back", &msg, serde_json::json!({}))),
                    None,
                )
                .await?;
            return self
                .next_phase(self.store.get_deployment(&d.deployment_id).await?, v)
                .await;
        }
        let pause = matches!(
            strategy,
            Some(Strategy::Rolling {
                pause_on_failure: true,
                ..
            })
        ) || !d.spec.auto_rollback_enabled
            || v.stable.is_none();
        if pause {
            d.status = DeploymentStatus::Paused;
            let msg = format!("paused: {reason}");
            self.store
                .save_deployment(&d, Some(("paused", &msg, serde_json::json!({}))), None)
                .await?;
            return Ok(());
        }
        self.begin_rollback(d, v, reason).await
    }

    /// Routes `nodes` back to the stable version only.
    async fn restore(
        &self,
        d: &Deployment,
        v: &Versions,
        nodes: &[Node],
    ) -> Vec<(String, AgentError)> {
        let Some(stable) = v.stable_label() else {
            return Vec::new();
        };
        let route = RouteSpec::only(stable);
        let service = d.service.clone();
        // The stable version may have left a node (a replacement node, a
        // retired blue): load it again first — loading is idempotent.
        let stable_module = v.stable.clone();
        let url = stable_module
            .as_ref()
            .map(|m| self.binary_url(m))
            .unwrap_or_default();
        let (_, failed) = self
            .on_nodes(nodes, |n| {
                let (stable_module, url) = (stable_module.clone(), url.clone());
                let (route, service) = (route.clone(), service.clone());
                async move {
                    if let Some(m) = &stable_module {
                        self.driver.load(&n, m, &url).await?;
                    }
                    self.driver.set_route(&n, &service, &route).await
                }
            })
            .await;
        failed
    }

    /// Every measured node's counters now (the start of a new window).
    async fn baseline(&self, d: &Deployment, nodes: &HashMap<String, Node>) -> serde_json::Value {
        let targets: Vec<Node> =
            deployed_nodes(d, nodes, |n| !d.state.failed_regions.contains(&n.region));
        let service = d.service.clone();
        let (ok, _) = self
            .on_nodes(&targets, |n| {
                let service = service.clone();
                async move { self.driver.counters(&n, &service).await }
            })
            .await;
        serde_json::to_value(
            ok.into_iter()
                .collect::<BTreeMap<String, HashMap<String, wasmswap_core::CounterSnapshot>>>(),
        )
        .unwrap_or_default()
    }

    /// Starts rolling back (saved first, so a crash mid-way resumes it).
    async fn begin_rollback(
        &self,
        mut d: Deployment,
        v: &Versions,
        reason: &str,
    ) -> Result<(), EngineError> {
        d.state.rolling_back = true;
        let msg = format!("rolling back: {reason}");
        let d = self
            .store
            .save_deployment(
                &d,
                Some(("rolling-back", &msg, serde_json::json!({}))),
                None,
            )
            .await?;
        self.finish_rollback(d, v).await
    }

    /// Puts every touched node back on the stable version.
    async fn finish_rollback(&self, mut d: Deployment, v: &Versions) -> Result<(), EngineError> {
        let nodes = self.nodes().await?;
        // A node that stopped heartbeating cannot be reached now; it is
        // marked and put back when it returns (see `reconcile`), rather than
        // holding every other node's rollback hostage.
        let (reachable, unreachable): (Vec<Node>, Vec<Node>) = d
            .state
            .nodes
            .iter()
            .filter_map(|n| nodes.get(&n.node_id).cloned())
            .partition(|n| n.status == NodeHealth::Healthy);
        let failed = self.restore(&d, v, &reachable).await;
        if !failed.is_empty() {
            // Stay in `rolling_back`: the next tick tries those nodes again.
            let list: Vec<String> = failed
                .iter()
                .map(|(id, e)| format!("{id} ({})", e.reason_code()))
                .collect();
            tracing::warn!(deployment = %d.deployment_id, nodes = ?list, "rollback incomplete; retrying");
            self.store.save_deployment(&d, None, None).await?;
            return Ok(());
        }
        let touched = reachable;
        for n in &mut d.state.nodes {
            if unreachable.iter().any(|u| u.node_id == n.node_id) {
                n.state = "unreachable".into();
                n.error = Some("rolled back when it answers again".into());
            }
        }
        for n in &mut d.state.nodes {
            if n.state != "unreachable" {
                n.weight = 0.0;
                n.state = "rolled-back".into();
            }
        }
        d.state.rolling_back = false;
        d.status = DeploymentStatus::RolledBack;
        let actor = engine_actor();
        self.store
            .set_module_status(&v.candidate.module_id, ModuleStatus::Registered, &actor)
            .await?;
        if let Some(stable) = &v.stable {
            self.store
                .set_module_status(&stable.module_id, ModuleStatus::Deployed, &actor)
                .await?;
        }
        let msg = format!(
            "{} node(s) back on {}",
            touched.len(),
            v.stable_label().unwrap_or("-")
        );
        self.store
            .save_deployment(&d, Some(("rolled-back", &msg, serde_json::json!({}))), None)
            .await?;
        tracing::info!(deployment = %d.deployment_id, "rolled back");
        Ok(())
    }

    async fn fail(&self, mut d: Deployment, reason: &str) -> Result<(), EngineError> {
        d.status = DeploymentStatus::Failed;
        let msg = format!("failed before any traffic moved: {reason}");
        self.store
            .save_deployment(&d, Some(("failed", &msg, serde_json::json!({}))), None)
            .await?;
        Ok(())
    }

    /// Blue-Green without `keepBlueEnvironment`: unloads blue once its
    /// retention period is over.
    async fn retire(&self, mut d: Deployment) -> Result<(), EngineError> {
        let Some(at) = d.state.retire_at else {
            return Ok(());
        };
        if self.store.clock().now_ms() < at {
            return Ok(());
        }
        let v = self.versions(&d).await?;
        if let Some(stable) = &v.stable {
            let nodes = self.nodes().await?;
            let targets: Vec<Node> = deployed_nodes(&d, &nodes, |_| true);
            let service = d.service.clone();
            let label = stable.version.clone();
            let (_, failed) = self
                .on_nodes(&targets, |n| {
                    let (service, label) = (service.clone(), label.clone());
                    async move { self.driver.unload(&n, &service, &label).await }
                })
                .await;
            if !failed.is_empty() {
                return Ok(());
            }
        }
        d.state.retire_at = None;
        self.store
            .save_deployment(
                &d,
                Some((
                    "blue-retired",
                    "the previous version was unloaded",
                    serde_json::json!({}),
                )),
                None,
            )
            .await?;
        Ok(())
    }
}
