//! The node: the services and versions it holds, every change the agent
//! API can make to them, and the local state that survives a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use wasmswap_core::{
    CandidateMode, Capabilities, CounterSnapshot, Limits, LoadSource, Route, Runtime, Service,
    Version, Weight,
};

use crate::body::ApiError;
use crate::fetch::{Fetcher, sha256_hex, verify};
use crate::metrics::LoadHistogram;

/// What to load: a service's version, by the SHA-256 of its binary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionSpec {
    /// The service (`[a-z0-9][a-z0-9._-]*`, at most 64 characters).
    pub service: String,
    /// The version's label, unique within the service (same rules).
    pub version: String,
    /// SHA-256 of the binary, hex.
    pub sha256: String,
    /// Where to fetch the binary when this node does not hold it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Per-call limits.
    #[serde(default)]
    pub limits: Limits,
    /// WASI grants.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// Split or mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// The candidate answers its share of calls.
    #[default]
    Split,
    /// The candidate runs a copy of its share; only compared.
    Mirror,
}

/// A service's route by version labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// The version answering every call not given to the candidate.
    pub stable: String,
    /// An optional candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The candidate's share, 0–100 (0.01 resolution).
    #[serde(default)]
    pub weight_percent: f64,
    /// Split (default) or mirror.
    #[serde(default)]
    pub mode: RouteMode,
    /// For a mirror: let the copy keep writable preopens and outbound HTTP.
    #[serde(default)]
    pub mirror_side_effects: bool,
}

impl RouteSpec {
    fn of(route: &Route) -> Self {
        let s = route.summary();
        RouteSpec {
            stable: s.stable,
            candidate: s.candidate,
            weight_percent: s.weight.map_or(0.0, Weight::percent),
            mode: match s.mode {
                Some(CandidateMode::Mirror { .. }) => RouteMode::Mirror,
                _ => RouteMode::Split,
            },
            mirror_side_effects: matches!(
                s.mode,
                Some(CandidateMode::Mirror { side_effects: true })
            ),
        }
    }
}

/// What a health check runs, and how many results decide it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthSpec {
    /// Exported function to call with no arguments (default `health_check`,
    /// or `health-check` for a component). Healthy unless it fails or
    /// returns `false`/`0`.
    #[serde(default)]
    pub function: Option<String>,
    /// For wasi-http versions: GET this path instead; healthy on 2xx.
    #[serde(default)]
    pub http_path: Option<String>,
    /// Successes that make it healthy.
    #[serde(default = "one")]
    pub success_threshold: u32,
    /// Failures that make it unhealthy.
    #[serde(default = "one")]
    pub failure_threshold: u32,
    /// Pause between checks.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Limit per check.
    #[serde(default = "default_check_timeout")]
    pub timeout_ms: u64,
}

fn one() -> u32 {
    1
}
fn default_interval() -> u64 {
    100
}
fn default_check_timeout() -> u64 {
    2_000
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Passed.
    pub ok: bool,
    /// What it returned or why it failed.
    pub detail: String,
    /// How long it took.
    pub duration_ms: f64,
}

/// A health check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// The version checked.
    pub version: String,
    /// Reached the success threshold before the failure threshold.
    pub healthy: bool,
    /// Checks that passed.
    pub successes: u32,
    /// Checks that failed.
    pub failures: u32,
    /// Each check, in order.
    pub checks: Vec<CheckResult>,
}

/// A loaded version as the agent API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    /// Its label.
    pub version: String,
    /// SHA-256 of its binary.
    pub sha256: String,
    /// `module` or `component`.
    pub kind: String,
    /// Serves wasi-http.
    pub http: bool,
    /// Exported function names.
    pub exports: Vec<String>,
    /// Where the compiled code came from: compiled, memory or disk.
    pub load_source: String,
    /// How long loading took.
    pub load_ms: f64,
    /// `stable`, `candidate`, `previous` (kept warm for rollback) or `idle`.
    pub role: String,
    /// Calls running on it now.
    pub in_flight: u64,
    /// Whether its calls run in the isolation worker now (a call hit
    /// its memory limit lately; see [`crate::isolate`]).
    #[serde(default)]
    pub isolated: bool,
    /// Its counters.
    pub counters: CounterSnapshot,
    /// Its limits.
    pub limits: Limits,
}

/// A service as the agent API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// Its route, when it has one.
    pub route: Option<RouteSpec>,
    /// The route a rollback would restore.
    pub previous_route: Option<RouteSpec>,
    /// Route generation (increments on every change).
    pub generation: u64,
    /// Every loaded version.
    pub versions: Vec<VersionStatus>,
}

#[derive(Clone)]
struct Loaded {
    version: Version,
    spec: VersionSpec,
    source: LoadSource,
    load_ms: f64,
}

#[derive(Default)]
struct Slot {
    versions: BTreeMap<String, Loaded>,
    service: Option<Service>,
}

/// What a node keeps on disk so that it serves the same routes after a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    versions: Vec<VersionSpec>,
    routes: BTreeMap<String, RouteSpec>,
}

/// Node settings.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where routes and binaries are kept across restarts; none: memory only.
    pub state_dir: Option<PathBuf>,
    /// Largest binary fetched.
    pub max_binary_bytes: usize,
    /// Limit on one fetch.
    pub fetch_timeout: Duration,
    /// Versions held at most; loads beyond are refused.
    pub max_modules: usize,
    /// Bearer token sent with binary fetches (the control plane's
    /// download endpoint needs one).
    pub fetch_token: Option<String>,
    /// Where versions that keep hitting their memory limit run their JSON
    /// calls (the runtime must have been built with the same worker as its
    /// isolator): the node hands it each loaded version's binary.
    pub isolator: Option<crate::isolate::WorkerProcess>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            state_dir: None,
            max_binary_bytes: 50 << 20,
            fetch_timeout: Duration::from_secs(60),
            max_modules: 1000,
            fetch_token: None,
            isolator: None,
        }
    }
}

/// The services and versions of one edge node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field(
                "services",
                &self.inner.slots.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

struct Inner {
    runtime: Runtime,
    options: NodeOptions,
    fetcher: Fetcher,
    slots: RwLock<BTreeMap<String, Slot>>,
    loads: LoadHistogram,
    /// Serialises state writes so an older snapshot never lands last.
    persist: tokio::sync::Mutex<()>,
    /// Set while `restore` runs: state is written once, at its end.
    restoring: std::sync::atomic::AtomicBool,
    /// Saved versions and routes a restore could not bring back.
    unrestored: parking_lot::Mutex<SavedState>,
}

/// Service and version names: safe in URLs, file names and metric labels.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {name:?} is not a valid name: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )))
    }
}

fn check_sha(sha: &str) -> Result<(), ApiError> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "sha256 {sha:?} is not 64 hex digits"
        )))
    }
}

impl Node {
    /// A node on `runtime`; creates its state directory.
    pub fn new(runtime: Runtime, options: NodeOptions) -> anyhow::Result<Self> {
        if let Some(dir) = &options.state_dir {
            std::fs::create_dir_all(dir.join("artifacts"))?;
        }
        Ok(Node {
            inner: Arc::new(Inner {
                fetcher: Fetcher::new(options.max_binary_bytes, options.fetch_timeout)
                    .with_token(options.fetch_token.clone()),
                runtime,
                options,
                slots: RwLock::new(BTreeMap::new()),
                loads: LoadHistogram::default(),
                persist: tokio::sync::Mutex::new(()),
                restoring: Default::default(),
                unrestored: Default::default(),
            }),
        })
    }

    /// The isolation worker, if this node has one.
    pub fn isolator(&self) -> Option<&crate::isolate::WorkerProcess> {
        self.inner.options.isolator.as_ref()
    }

    /// The runtime versions run on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The routed service `name`, if it has a route.
    pub fn service(&self, name: &str) -> Option<Service> {
        self.inner.slots.read().get(name)?.service.clone()
    }

    /// Names of services with a route.
    pub fn service_names(&self) -> Vec<String> {
        let slots = self.inner.slots.read();
        slots
            .iter()
            .filter(|(_, s)| s.service.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(crate) fn load_histogram(&self) -> &LoadHistogram {
        &self.inner.loads
    }

    fn artifact_path(&self, sha: &str) -> Option<PathBuf> {
        let dir = self.inner.options.state_dir.as_ref()?;
        Some(
            dir.join("artifacts")
                .join(format!("{}.wasm", sha.to_ascii_lowercase())),
        )
    }

    /// The binary from the local artifact store, when present and intact.
    fn stored_binary(&self, sha: &str) -> Option<Vec<u8>> {
        let path = self.artifact_path(sha)?;
        let bytes = std::fs::read(&path).ok()?;
        match verify(&bytes, sha) {
            Ok(()) => Some(bytes),
            Err(e) => {
                // A corrupted file is dropped and fetched again.
                tracing::warn!(path = %path.display(), error = %e, "stored binary is corrupt; removing it");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store_binary(&self, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.artifact_path(sha) else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// Loads a version: from `bytes` if given, else the local store, else
    /// its URL. The hash is checked whatever the source; the version is
    /// compiled (or taken from the compile cache) and kept warm, not routed.
    pub async fn load(
        &self,
        spec: VersionSpec,
        bytes: Option<Vec<u8>>,
    ) -> Result<VersionStatus, ApiError> {
        check_name("service", &spec.service)?;
        check_name("version", &spec.version)?;
        check_sha(&spec.sha256)?;
        if let Some(existing) = self.loaded(&spec.service, &spec.version) {
            return if existing.spec.sha256.eq_ignore_ascii_case(&spec.sha256) {
                self.version_status(&spec.service, &spec.version)
                    .ok_or_else(|| {
                        ApiError::conflict(format!(
                            "{}/{} changed while this request ran; retry",
                            spec.service, spec.version
                        ))
                    })
            } else {
                Err(ApiError::conflict(format!(
                    "{}/{} is already loaded with another binary ({}); load it under a new version label",
                    spec.service, spec.version, existing.spec.sha256
                )))
            };
        }
        if self.version_count() >= self.inner.options.max_modules {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "at_capacity",
                format!(
                    "this node holds its maximum of {} versions; unload one first",
                    self.inner.options.max_modules
                ),
            ));
        }
        let stored = match &bytes {
            Some(_) => None,
            None => {
                let (node, sha) = (self.clone(), spec.sha256.clone());
                tokio::task::spawn_blocking(move || node.stored_binary(&sha))
                    .await
                    .ok()
                    .flatten()
            }
        };
        let bytes = match bytes {
            Some(b) => {
                verify(&b, &spec.sha256).map_err(|e| ApiError::bad_request(e.to_string()))?;
                b
            }
            None => match stored {
                Some(b) => b,
                None => {
                    let url = spec.url.as_deref().ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "this node does not hold {} and no url was given to fetch it from",
                            spec.sha256
                        ))
                    })?;
                    self.inner
                        .fetcher
                        .fetch(url, &spec.sha256)
                        .await
                        .map_err(|e| {
                            ApiError::new(StatusCode::BAD_GATEWAY, "fetch_failed", e.to_string())
                        })?
                }
            },
        };
        let started = Instant::now();
        let runtime = self.inner.runtime.clone();
        let (label, limits, caps) = (
            spec.version.clone(),
            spec.limits.clone(),
            spec.capabilities.clone(),
        );
        // The blocking thread has no current span: carry the request's, so
        // `wasm.module.load` joins its trace.
        let span = tracing::Span::current();
        let loaded = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let (artifact, source) = runtime.load_traced(&bytes)?;
            let version = Version::new(&runtime, &artifact, label, limits, caps)?;
            Ok::<_, wasmswap_core::Error>((version, source, bytes))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        let (version, source, bytes) = loaded.map_err(ApiError::from)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        self.inner.loads.observe(source, started.elapsed());
        let stored = {
            let (node, sha) = (self.clone(), spec.sha256.clone());
            tokio::task::spawn_blocking(move || node.store_binary(&sha, &bytes).map(|()| bytes))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
        };
        let bytes = stored.map_err(|e| {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "store_failed",
                format!("cannot keep the binary: {e}"),
            )
        })?;
        if let Some(isolator) = &self.inner.options.isolator {
            isolator.keep_binary(&spec.sha256, bytes.into());
        }
        tracing::info!(service = %spec.service, version = %spec.version, ?source, load_ms, "version loaded");
        let (service, label) = (spec.service.clone(), spec.version.clone());
        {
            let mut slots = self.inner.slots.write();
            let slot = slots.entry(service.clone()).or_default();
            if let Some(first) = slot.versions.get(&label) {
                // Lost a race with another load of this label: keep the first.
                if !first.spec.sha256.eq_ignore_ascii_case(&spec.sha256) {
                    return Err(ApiError::conflict(format!(
                        "{service}/{label} was just loaded with another binary ({})",
                        first.spec.sha256
                    )));
                }
                return self_status(slot, &service, &label)
                    .ok_or_else(|| ApiError::conflict("changed concurrently; retry"));
            }
            slot.versions.insert(
                label.clone(),
                Loaded {
                    version,
                    spec,
                    source,
                    load_ms,
                },
            );
        }
        self.persist().await;
        self.version_status(&service, &label).ok_or_else(|| {
            ApiError::conflict(format!(
                "{service}/{label} was unloaded while it loaded; retry"
            ))
        })
    }

    fn loaded(&self, service: &str, version: &str) -> Option<Loaded> {
        self.inner
            .slots
            .read()
            .get(service)?
            .versions
            .get(version)
            .cloned()
    }

    fn version_of(&self, service: &str, label: &str) -> Result<Version, ApiError> {
        self.loaded(service, label)
            .map(|l| l.version)
            .ok_or_else(|| {
                ApiError::not_found(format!("{service} has no version {label:?} loaded"))
            })
    }

    /// Calls `function` of one loaded version directly, whatever the route
    /// says (the control plane's `execute`, and checks of a candidate that
    /// serves no traffic yet). Counted in that version's counters.
    pub async fn invoke_version(
        &self,
        service: &str,
        label: &str,
        function: &str,
        args: &serde_json::Value,
    ) -> Result<serde_json::Value, wasmswap_core::Error> {
        let version = self
            .loaded(service, label)
            .map(|l| l.version)
            .ok_or_else(|| {
                wasmswap_core::Error::NoSuchFunction(format!("{service}/{label} is not loaded"))
            })?;
        version.invoke_json(function, args).await
    }

    /// Sets a service's route; creates the service on its first route.
    pub async fn set_route(
        &self,
        service: &str,
        spec: RouteSpec,
    ) -> Result<ServiceStatus, ApiError> {
        check_name("service", service)?;
        {
            // Versions are looked up under the same lock the route is
            // stored under, so an unload cannot slip in between.
            let mut slots = self.inner.slots.write();
            let slot = slots.get_mut(service).ok_or_else(|| {
                ApiError::not_found(format!("no versions of {service} are loaded"))
            })?;
            let route = build_route(slot, service, &spec)?;
            match &slot.service {
                Some(s) => {
                    let swap = s.set_route(route).map_err(ApiError::from)?;
                    log_drain(service, swap);
                }
                None => slot.service = Some(Service::new(service, route).map_err(ApiError::from)?),
            }
        }
        self.inner.unrestored.lock().routes.remove(service);
        tracing::info!(service, route = ?spec, "route set");
        self.persist().await;
        self.status_of(service)
    }

    /// Puts the previous route back (one pointer swap).
    pub async fn rollback(&self, service: &str) -> Result<ServiceStatus, ApiError> {
        let svc = self
            .service(service)
            .ok_or_else(|| ApiError::not_found(format!("{service} has no route")))?;
        let swap = svc
            .rollback()
            .map_err(|e| ApiError::conflict(format!("cannot roll {service} back: {e}")))?;
        log_drain(service, swap);
        tracing::info!(service, "rolled back");
        self.persist().await;
        self.status_of(service)
    }

    /// Unloads a version once no call runs on it. Refused while the route
    /// uses it; a version kept warm for rollback is released first.
    pub async fn unload(
        &self,
        service: &str,
        label: &str,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let version = self.version_of(service, label)?;
        let svc = self.service(service);
        if let Some(svc) = &svc
            && svc.route().versions().any(|v| v.same_as(&version))
        {
            return Err(ApiError::conflict(format!(
                "{service}/{label} is in the current route; route away from it first"
            )));
        }
        // Calls hold leases, not the route: wait for them first, so a
        // refused unload leaves everything (the rollback route included) as it was.
        if let Err(in_flight) = version.drained(timeout).await {
            return Err(ApiError::conflict(format!(
                "{service}/{label} still has {in_flight} call(s) in flight after {timeout:?}"
            )));
        }
        if let Some(svc) = &svc
            && svc
                .previous_route()
                .is_some_and(|r| r.versions().any(|v| v.same_as(&version)))
        {
            let _ = svc.forget_previous(timeout).await;
        }
        let sha = {
            let mut slots = self.inner.slots.write();
            let Some(slot) = slots.get_mut(service) else {
                return Ok(());
            };
            // A route change or rollback may have picked it up again while
            // it drained: then it stays.
            if let Some(svc) = &slot.service
                && let Some(place) = in_use(svc, &version)
            {
                return Err(ApiError::conflict(format!(
                    "{service}/{label} went back into {place} while it drained; it stays loaded"
                )));
            }
            let sha = slot.versions.remove(label).map(|l| l.spec.sha256);
            if slot.versions.is_empty() && slot.service.is_none() {
                slots.remove(service);
            }
            let still_used = |sha: &str| {
                slots
                    .values()
                    .flat_map(|s| s.versions.values())
                    .any(|l| l.spec.sha256.eq_ignore_ascii_case(sha))
            };
            sha.filter(|s| !still_used(s))
        };
        self.inner
            .unrestored
            .lock()
            .versions
            .retain(|v| !(v.service == service && v.version == label));
        if let Some(isolator) = &self.inner.options.isolator {
            isolator.unload(&version).await;
            if let Some(sha) = &sha {
                isolator.forget_binary(sha);
            }
        }
        // The binary goes too, unless another version runs the same bytes.
        if let Some(path) = sha.and_then(|s| self.artifact_path(&s)) {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        }
        tracing::info!(service, version = label, "version unloaded");
        self.persist().await;
        Ok(())
    }

    /// Runs health checks against one version, directly (not through the route).
    pub async fn health(
        &self,
        service: &str,
        label: &str,
        spec: HealthSpec,
    ) -> Result<HealthReport, ApiError> {
        let version = self.version_of(service, label)?;
        if spec.success_threshold == 0 || spec.failure_threshold == 0 {
            return Err(ApiError::bad_request(
                "successThreshold and failureThreshold must be at least 1",
            ));
        }
        if spec.http_path.is_some() && !version.is_http() {
            return Err(ApiError::bad_request(format!(
                "{service}/{label} is not a wasi-http component; check it with a function instead"
            )));
        }
        let timeout = Duration::from_millis(spec.timeout_ms.max(1));
        let mut report = HealthReport {
            version: label.to_string(),
            healthy: false,
            successes: 0,
            failures: 0,
            checks: Vec::new(),
        };
        while report.successes < spec.success_threshold && report.failures < spec.failure_threshold
        {
            if !report.checks.is_empty() {
                tokio::time::sleep(Duration::from_millis(spec.interval_ms)).await;
            }
            let started = Instant::now();
            let outcome = tokio::time::timeout(timeout, check_once(&version, &spec)).await;
            let (ok, detail) = match outcome {
                Ok(r) => r,
                Err(_) => (false, format!("no answer within {timeout:?}")),
            };
            if ok {
                report.successes += 1;
            } else {
                report.failures += 1;
            }
            report.checks.push(CheckResult {
                ok,
                detail,
                duration_ms: started.elapsed().as_secs_f64() * 1e3,
            });
        }
        report.healthy = report.successes >= spec.success_threshold;
        Ok(report)
    }

    fn version_status(&self, service: &str, label: &str) -> Option<VersionStatus> {
        let slots = self.inner.slots.read();
        self_status(slots.get(service)?, service, label)
    }

    /// One service's status.
    pub fn status_of(&self, service: &str) -> Result<ServiceStatus, ApiError> {
        let slots = self.inner.slots.read();
        let slot = slots
            .get(service)
            .ok_or_else(|| ApiError::not_found(format!("no service {service:?} on this node")))?;
        Ok(service_status(service, slot))
    }

    /// Every service's status.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let slots = self.inner.slots.read();
        slots.iter().map(|(n, s)| service_status(n, s)).collect()
    }

    /// Number of loaded versions.
    pub fn version_count(&self) -> usize {
        self.inner
            .slots
            .read()
            .values()
            .map(|s| s.versions.len())
            .sum()
    }

    fn state_file(&self) -> Option<PathBuf> {
        Some(self.inner.options.state_dir.as_ref()?.join("state.json"))
    }

    /// Writes the versions and routes to the state directory. A failure is
    /// logged, not returned: the change already took effect in memory.
    async fn persist(&self) {
        let Some(path) = self.state_file() else {
            return;
        };
        if self
            .inner
            .restoring
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Written once when the restore is over, never half-way.
            return;
        }
        let _guard = self.inner.persist.lock().await;
        let state = {
            let slots = self.inner.slots.read();
            let mut state = SavedState {
                versions: slots
                    .values()
                    .flat_map(|s| s.versions.values().map(|l| l.spec.clone()))
                    .collect(),
                routes: slots
                    .iter()
                    .filter_map(|(n, s)| {
                        Some((n.clone(), RouteSpec::of(&s.service.as_ref()?.route())))
                    })
                    .collect(),
            };
            // What a restore could not bring back is kept for the next one.
            let pending = self.inner.unrestored.lock();
            for v in &pending.versions {
                if !state
                    .versions
                    .iter()
                    .any(|l| l.service == v.service && l.version == v.version)
                {
                    state.versions.push(v.clone());
                }
            }
            for (service, route) in &pending.routes {
                state
                    .routes
                    .entry(service.clone())
                    .or_insert_with(|| route.clone());
            }
            state
        };
        let bytes = match serde_json::to_vec_pretty(&state) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "cannot encode node state"),
        };
        let result = tokio::task::spawn_blocking(move || {
            write_atomically(&path, &bytes).map_err(|e| (path, e))
        })
        .await;
        if let Ok(Err((path, e))) = result {
            tracing::error!(path = %path.display(), error = %e, "cannot save node state");
        }
    }

    /// Loads the versions and routes saved by a previous run, binaries from
    /// the local store (fetched again only when missing or corrupt). What
    /// cannot be restored is logged and kept in the state file for the next
    /// start; a split whose candidate is missing serves its stable version.
    pub async fn restore(&self) -> anyhow::Result<usize> {
        let Some(path) = self.state_file() else {
            return Ok(0);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let state: SavedState = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not valid node state: {e}", path.display()))?;
        self.inner
            .restoring
            .store(true, std::sync::atomic::Ordering::Release);
        let mut restored = 0;
        let mut pending = SavedState::default();
        for spec in state.versions {
            let what = format!("{}/{}", spec.service, spec.version);
            match self.load(spec.clone(), None).await {
                Ok(_) => restored += 1,
                Err(e) => {
                    tracing::error!(version = %what, error = %e, "cannot restore version");
                    pending.versions.push(spec);
                }
            }
        }
        for (service, route) in state.routes {
            let mut result = self.set_route(&service, route.clone()).await;
            if result.is_err() && route.candidate.is_some() {
                tracing::warn!(%service, "the candidate is missing; serving the stable version alone");
                let stable_only = RouteSpec {
                    candidate: None,
                    weight_percent: 0.0,
                    ..route.clone()
                };
                result = self.set_route(&service, stable_only).await;
            }
            if let Err(e) = result {
                tracing::error!(%service, error = %e, "cannot restore route");
                pending.routes.insert(service, route);
            }
        }
        *self.inner.unrestored.lock() = pending;
        self.inner
            .restoring
            .store(false, std::sync::atomic::Ordering::Release);
        self.persist().await;
        tracing::info!(versions = restored, "node state restored");
        Ok(restored)
    }
}

fn build_route(slot: &Slot, service: &str, spec: &RouteSpec) -> Result<Route, ApiError> {
    let version = |label: &str| {
        slot.versions
            .get(label)
            .map(|l| l.version.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("{service} has no version {label:?} loaded"))
            })
    };
    let stable = version(&spec.stable)?;
    let Some(candidate) = &spec.candidate else {
        return Ok(Route::stable(stable));
    };
    let candidate = version(candidate)?;
    let weight = Weight::from_percent(spec.weight_percent)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(match spec.mode {
        RouteMode::Split => Route::split(stable, candidate, weight),
        RouteMode::Mirror => {
            let mut r = Route::mirror(stable, candidate, weight);
            if let Some(c) = r.candidate.as_mut() {
                c.mode = CandidateMode::Mirror {
                    side_effects: spec.mirror_side_effects,
                };
            }
            r
        }
    })
}

/// Whether `version` is in the service's current or rollback route.
fn in_use(service: &Service, version: &Version) -> Option<&'static str> {
    if service.route().versions().any(|v| v.same_as(version)) {
        Some("the current route")
    } else if service
        .previous_route()
        .is_some_and(|r| r.versions().any(|v| v.same_as(version)))
    {
        Some("the rollback route")
    } else {
        None
    }
}

fn self_status(slot: &Slot, service: &str, label: &str) -> Option<VersionStatus> {
    let l = slot.versions.get(label)?;
    let role = match &slot.service {
        Some(s) => {
            let route = s.route();
            if route.stable.same_as(&l.version) {
                "stable"
            } else if route
                .candidate
                .as_ref()
                .is_some_and(|c| c.version.same_as(&l.version))
            {
                "candidate"
            } else if s
                .previous_route()
                .is_some_and(|r| r.versions().any(|v| v.same_as(&l.version)))
            {
                "previous"
            } else {
                "idle"
            }
        }
        None => "idle",
    };
    let info = l.version.artifact().info();
    let _ = service;
    Some(VersionStatus {
        version: label.to_string(),
        sha256: l.spec.sha256.to_ascii_lowercase(),
        kind: format!("{:?}", info.kind).to_lowercase(),
        http: l.version.is_http(),
        exports: info.exports.iter().map(|e| e.name.clone()).collect(),
        load_source: format!("{:?}", l.source).to_lowercase(),
        load_ms: l.load_ms,
        role: role.to_string(),
        in_flight: l.version.in_flight(),
        isolated: l.version.isolated(),
        counters: l.version.counters(),
        limits: l.spec.limits.clone(),
    })
}

fn service_status(name: &str, slot: &Slot) -> ServiceStatus {
    ServiceStatus {
        name: name.to_string(),
        route: slot.service.as_ref().map(|s| RouteSpec::of(&s.route())),
        previous_route: slot
            .service
            .as_ref()
            .and_then(|s| s.previous_route())
            .map(|r| RouteSpec::of(&r)),
        generation: slot.service.as_ref().map_or(0, Service::generation),
        versions: slot
            .versions
            .keys()
            .filter_map(|l| self_status(slot, name, l))
            .collect(),
    }
}

/// Logs when the versions a route change retired have drained.
fn log_drain(service: &str, swap: wasmswap_core::Swap) {
    if swap.retired().is_empty() {
        return;
    }
    let service = service.to_string();
    tokio::spawn(async move {
        let report = swap.drained(Duration::from_secs(60)).await;
        tracing::info!(%service, drained = report.is_drained(), ?report, "retired versions");
    });
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves a half-written file under the real name.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

async fn check_once(version: &Version, spec: &HealthSpec) -> (bool, String) {
    if let Some(path) = &spec.http_path {
        // wasi-http wants an absolute URI; the host name is only a label here.
        let uri = format!("http://localhost{path}");
        let req = match http::Request::get(uri.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return (false, format!("bad path {path:?}: {e}")),
        };
        return match version.handle(req).await {
            Ok(resp) if resp.status().is_success() => {
                (true, format!("GET {path}: {}", resp.status()))
            }
            Ok(resp) => (false, format!("GET {path}: {}", resp.status())),
            Err(e) => (false, format!("GET {path}: {e}")),
        };
    }
    let exports: Vec<String> = version
        .artifact()
        .info()
        .exports
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let function = match &spec.function {
        Some(f) => f.clone(),
        None => ["health_check", "health-check"]
            .into_iter()
            .find(|f| exports.iter().any(|e| e == f))
            .unwrap_or("health_check")
            .to_string(),
    };
    match version
        .invoke_json(&function, &serde_json::Value::Null)
        .await
    {
        Ok(v) => {
            let ok = !matches!(&v, serde_json::Value::Bool(false))
                && !v.as_f64().is_some_and(|n| n == 0.0);
            (ok, format!("{function}() returned {v}"))
        }
        Err(e) => (false, format!("{function}(): {e}")),
    }
}

/// SHA-256 of bytes, for standalone mode and tests.
pub fn content_sha256(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}
