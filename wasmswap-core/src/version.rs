//! [`Version`]: an artifact made runnable — its `InstancePre` (imports
//! resolved once), its limits, its WASI grants and its live counters. Every
//! call gets a fresh instance from the pool, so no state survives a call and
//! a store that trapped is never reused.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::Value as Json;
use tracing::Instrument;
use wasmtime::component::{ComponentExportIndex, Val};
use wasmtime::{InstancePre, ModuleExport, Store, ValType};

use crate::artifact::{Artifact, ArtifactKind, Compiled};
use crate::error::{Error, ErrorKind, Result};
use crate::json;
use crate::limits::{Limits, StoreLimiter};
use crate::metrics::{CounterSnapshot, Counters};
use crate::runtime::Runtime;
use crate::sandbox::Capabilities;
use crate::store::{self, CallClock, CallData, ClockShared, P1State, P2State};

/// A runnable version of a binary: cheap to clone, safe to share across
/// threads, counted per call.
#[derive(Clone)]
pub struct Version {
    pub(crate) inner: Arc<VersionInner>,
}

pub(crate) struct VersionInner {
    runtime: Runtime,
    artifact: Artifact,
    label: String,
    limits: Limits,
    caps: Capabilities,
    pre: Pre,
    counters: Counters,
    /// Export lookups resolved once per name, not once per call.
    component_exports: RwLock<HashMap<String, Option<ComponentExportIndex>>>,
    module_exports: RwLock<HashMap<String, Option<(ModuleExport, wasmtime::FuncType)>>>,
    /// Calls holding a [`Lease`] on this version right now.
    in_flight: AtomicU64,
    /// Woken when `in_flight` drops to zero.
    idle: tokio::sync::Notify,
    /// Until when (the runtime's [`clock_nanos`](Runtime::clock_nanos))
    /// calls start on the low-priority lane.
    penalized_until: AtomicU64,
    /// Until when (the runtime's clock) its calls go to the runtime's
    /// [`Isolator`](crate::Isolator).
    isolated_until: AtomicU64,
}

enum Pre {
    Module {
        pre: InstancePre<P1State>,
        /// A WASI reactor's `_initialize`, run after instantiation.
        initialize: Option<ModuleExport>,
    },
    Component {
        pre: wasmtime::component::InstancePre<P2State>,
        /// Set when the component exports `wasi:http/incoming-handler`.
        #[cfg(feature = "http")]
        proxy: Option<crate::http::Proxy>,
    },
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("label", &self.inner.label)
            .field("artifact", &self.inner.artifact.id())
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Version>();
};

impl Version {
    /// Prepares `artifact` to run with `limits` and `caps`. Resolves its
    /// imports against the runtime's WASI linker now, so a binary whose
    /// imports cannot be satisfied fails here, not on its first call.
    pub fn new(
        runtime: &Runtime,
        artifact: &Artifact,
        label: impl Into<String>,
        limits: Limits,
        caps: Capabilities,
    ) -> Result<Self> {
        limits.validate()?;
        caps.validate()?;
        let rc = runtime.config();
        if limits.memory_bytes() > rc.max_memory_bytes {
            return Err(Error::InvalidConfig(format!(
                "maxMemoryMB {} is above the runtime's maximum of {} bytes",
                limits.max_memory_mb, rc.max_memory_bytes
            )));
        }
        if limits.fuel.is_some() && !rc.fuel {
            return Err(Error::InvalidConfig(
                "a fuel limit needs a runtime built with fuel(true)".into(),
            ));
        }
        let link_err = |e: wasmtime::Error| Error::Instantiate(format!("{e:#}"));
        let pre = match &artifact.inner.compiled {
            Compiled::Module(m) => Pre::Module {
                pre: runtime
                    .inner
                    .module_linker
                    .instantiate_pre(m)
                    .map_err(link_err)?,
                initialize: m.get_export_index("_initialize"),
            },
            Compiled::Component(c) => {
                let pre = runtime
                    .inner
                    .component_linker
                    .instantiate_pre(c)
                    .map_err(link_err)?;
                Pre::Component {
                    #[cfg(feature = "http")]
                    proxy: crate::http::proxy_pre(&pre),
                    pre,
                }
            }
        };
        Ok(Self {
            inner: Arc::new(VersionInner {
                runtime: runtime.clone(),
                artifact: artifact.clone(),
                label: label.into(),
                limits,
                caps,
                pre,
                counters: Counters::default(),
                component_exports: RwLock::new(HashMap::new()),
                module_exports: RwLock::new(HashMap::new()),
                in_flight: AtomicU64::new(0),
                idle: tokio::sync::Notify::new(),
                penalized_until: AtomicU64::new(0),
                isolated_until: AtomicU64::new(0),
            }),
        })
    }

    /// The label given at creation (e.g. `v1.2.0`).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The runtime this version was made in.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The artifact this version runs.
    pub fn artifact(&self) -> &Artifact {
        &self.inner.artifact
    }

    /// This version's limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// This version's WASI grants.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// A snapshot of this version's counters.
    pub fn counters(&self) -> CounterSnapshot {
        self.inner.counters.snapshot()
    }

    /// Takes a lease: this version counts as in flight until it is dropped.
    /// [`Service`](crate::Service) takes one per call; embedders calling a
    /// version directly may take one to make drains wait for their call.
    pub fn lease(&self) -> Lease {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        Lease {
            version: self.clone(),
        }
    }

    /// Number of leases (calls) currently holding this version.
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no lease holds this version, or `timeout` passes; on
    /// timeout returns the number still in flight.
    pub async fn drained(&self, timeout: Duration) -> Result<(), u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for the wake-up before checking, so a lease dropped
            // between the check and the wait is not missed.
            let idle = self.inner.idle.notified();
            let n = self.in_flight();
            if n == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return match self.in_flight() {
                    0 => Ok(()),
                    n => Err(n),
                };
            }
        }
    }

    /// Whether two handles are the same version (not merely the same bytes).
    pub fn same_as(&self, other: &Version) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn record_mirror(&self, outcome: crate::metrics::MirrorOutcome) {
        self.inner.counters.record_mirror(outcome);
    }

    /// Calls an exported function with JSON arguments and returns its result as
    /// JSON.
    ///
    /// Arguments are an array (positional), an object keyed by parameter name,
    /// or — for one parameter — the bare value. For components the conversion
    /// follows the function's WIT types (see the crate docs); for core modules
    /// parameters and results are numbers. Interface functions are named
    /// `interface#function`, e.g. `wasmswap:guests/api@0.1.0#echo`.
    ///
    /// Must be called inside a tokio runtime: timeouts and CPU-share pauses
    /// are tokio timers. The call runs on the caller's thread — unless the
    /// runtime has a low-priority lane
    /// ([`RuntimeConfig::low_priority_lane`](crate::RuntimeConfig::low_priority_lane))
    /// and the call computes past its CPU burst or this version has just
    /// hit its limits; then it runs there.
    pub async fn invoke_json(&self, function: &str, args: &Json) -> Result<Json> {
        self.invoke_json_with(function, args, None).await
    }

    /// [`invoke_json`](Self::invoke_json) with other WASI grants than the
    /// version's own (a mirrored call's, which runs without side effects).
    pub async fn invoke_json_with_caps(
        &self,
        function: &str,
        args: &Json,
        caps: Capabilities,
    ) -> Result<Json> {
        self.invoke_json_with(function, args, Some(caps)).await
    }

    /// [`invoke_json`](Self::invoke_json) with other WASI grants than the
    /// version's own, if `caps` is given (mirrored calls run without side
    /// effects).
    pub(crate) async fn invoke_json_with(
        &self,
        function: &str,
        args: &Json,
        caps: Option<Capabilities>,
    ) -> Result<Json> {
        if let Some(isolator) = self.isolator()
            && isolator.prepare(self).await.is_ok()
        {
            return self.invoke_isolated(isolator, function, args, caps).await;
        }
        self.invoke_here(function, args, caps).await
    }

    /// Runs a JSON call in this process.
    async fn invoke_here(
        &self,
        function: &str,
        args: &Json,
        caps: Option<Capabilities>,
    ) -> Result<Json> {
        let args = args.clone();
        let call = match &self.inner.pre {
            Pre::Module { .. } => self.run_module(
                function,
                caps,
                move |ty| json::core_params(ty, &args),
                json::core_results,
            ),
            Pre::Component { .. } => self.run_component(
                function,
                caps,
                move |ty| json::component_params(ty, &args),
                json::component_results,
            ),
        };
        self.place(function, call).await
    }

    /// The runtime's isolator, if this version's calls go there now.
    fn isolator(&self) -> Option<&dyn crate::Isolator> {
        let runtime = &self.inner.runtime;
        let isolator = runtime.config().isolator.as_deref()?;
        (self.inner.isolated_until.load(Ordering::Relaxed) > runtime.clock_nanos()
            && isolator.available())
        .then_some(isolator)
    }

    /// Whether this version's calls run in the runtime's
    /// [`Isolator`](crate::Isolator) now: one of its calls hit its memory
    /// limit within the last
    /// [`isolation_window`](crate::RuntimeConfig::isolation_window).
    pub fn isolated(&self) -> bool {
        self.isolator().is_some()
    }

    /// Runs a JSON call in the isolator, traced and counted like one here.
    async fn invoke_isolated(
        &self,
        isolator: &dyn crate::Isolator,
        function: &str,
        args: &Json,
        caps: Option<Capabilities>,
    ) -> Result<Json> {
        let span = tracing::info_span!(
            "wasm.function.invoke",
            wasm.function.name = function,
            wasm.version = %self.inner.label,
            wasm.isolated = true
        );
        let started = Instant::now();
        let limits = &self.inner.limits;
        // The isolator enforces the call's limits; this only bounds the
        // wait for an isolator that cannot run it (its process starved of
        // CPU, or hung): a little past the call's own backstop, plus time
        // to load the version there again if it lost it.
        let call = isolator.invoke_json(self, function, args, caps.as_ref());
        let outcome = tokio::time::timeout(limits.backstop() + ISOLATION_GRACE, call)
            .instrument(span)
            .await
            .unwrap_or(Err(Error::Timeout(limits.timeout())));
        self.record(started, outcome.map(|v| (v, CallStats::default())), None)
    }

    /// Calls a core module's export with raw wasm values.
    pub async fn invoke_core(
        &self,
        function: &str,
        params: &[wasmtime::Val],
    ) -> Result<Vec<wasmtime::Val>> {
        let params = params.to_vec();
        let call = self.run_module(function, None, move |_| Ok(params), |r| Ok(r.to_vec()));
        self.place(function, call).await
    }

    /// Calls a component's export with component values.
    pub async fn invoke_component(&self, function: &str, params: &[Val]) -> Result<Vec<Val>> {
        let params = params.to_vec();
        let call = self.run_component(function, None, move |_| Ok(params), |r| Ok(r.to_vec()));
        self.place(function, call).await
    }

    /// Runs a prepared call, traced, where it belongs: here, or on the
    /// low-priority lane from the start (this version is penalized) or from
    /// the tick where it computed past its CPU burst.
    async fn place<R: Send + 'static>(&self, function: &str, call: Call<R>) -> Result<R> {
        // Info level: the guest call is the innermost span of a request's
        // trace (control plane → node → guest).
        let span = tracing::info_span!(
            "wasm.function.invoke",
            wasm.function.name = function,
            wasm.version = %self.inner.label
        );
        let Call {
            run,
            clock,
            started,
        } = call;
        let run = run.instrument(span);
        let Some(lane) = self.inner.runtime.lane() else {
            return run.await;
        };
        // Penalizes a call that computed past its burst even if its caller
        // gives up on it (and so never records it): a looping tenant whose
        // clients time out first is still sent to the lane.
        let _heavy = PenalizeIfHeavy {
            version: self,
            clock: &clock,
        };
        let limits = &self.inner.limits;
        // A little past the call's own backstop, which normally answers.
        let deadline = started + limits.backstop() + LANE_GRACE;
        // A call given up on while on the lane keeps this version in flight
        // until its instance is gone, so a drain waits for it.
        let this = self.clone();
        match lane
            .run(self.penalized(), &clock, deadline.into(), run, move || {
                this.lease()
            })
            .await
        {
            Some(outcome) => outcome,
            None => self.record(started, Err(Error::Timeout(limits.timeout())), Some(&clock)),
        }
    }

    /// Prepares a call: a future that owns what it needs, so that it can
    /// move to another thread half-way. `body` runs the guest with this
    /// version, the function's name and the call's clock; the call is timed
    /// out, and recorded, here.
    fn prepare<R, F>(
        &self,
        function: &str,
        body: impl FnOnce(Version, String, CallClock) -> F + Send + 'static,
    ) -> Call<R>
    where
        R: Send + 'static,
        F: Future<Output = Result<(R, CallStats)>> + Send + 'static,
    {
        let this = self.clone();
        let function = function.to_string();
        let mut clock = CallClock::new(&self.inner.limits);
        let shared = clock.shared();
        let heavy = shared.clone();
        // Latency counts from here: a wait for the lane counts too.
        let started = Instant::now();
        let run = async move {
            // CPU time counts from the first poll: a wait for the lane is
            // not the guest's.
            clock.restart();
            let call = body(this.clone(), function, clock);
            let outcome = within_timeout(&this.inner.limits, call).await;
            this.record(started, outcome, Some(&heavy))
        };
        Call {
            run: Box::pin(run),
            clock: shared,
            started,
        }
    }

    /// Prepares a call of a core module's export (see
    /// [`prepare`](Self::prepare)).
    fn run_module<R: Send + 'static>(
        &self,
        function: &str,
        caps: Option<Capabilities>,
        params: impl FnOnce(&wasmtime::FuncType) -> Result<Vec<wasmtime::Val>> + Send + 'static,
        results: impl FnOnce(&[wasmtime::Val]) -> Result<R> + Send + 'static,
    ) -> Call<R> {
        self.prepare(function, move |this, function, clock| async move {
            let Pre::Module { pre, initialize } = &this.inner.pre else {
                return Err(Error::NoSuchFunction(function));
            };
            let limits = &this.inner.limits;
            let caps = caps.as_ref().unwrap_or(&this.inner.caps);
            let (export, ty) = this.module_export(&function)?;
            // Bad arguments are refused before an instance is spent on them.
            let args = params(&ty)?;
            check_core_args(&ty, &args)?;
            let wasi = caps.builder()?.build_p1();
            let data = P1State {
                wasi,
                limiter: StoreLimiter::new(limits),
                clock,
            };
            let mut store = this.new_store(data);
            let r = async {
                let instance = pre.instantiate_async(&mut store).await?;
                if let Some(init) = initialize
                    && let Some(f) = instance
                        .get_module_export(&mut store, init)
                        .and_then(|e| e.into_func())
                {
                    f.call_async(&mut store, &[], &mut []).await?;
                }
                Ok::<_, wasmtime::Error>(instance)
            }
            .await;
            let instance = r.map_err(|e| store::classify(e, &mut store, limits))?;
            let func = instance
                .get_module_export(&mut store, &export)
                .and_then(|e| e.into_func())
                .ok_or_else(|| Error::NoSuchFunction(function.clone()))?;
            let mut out: Vec<wasmtime::Val> = ty
                .results()
                .map(|t| wasmtime::Val::default_for_ty(&t).unwrap_or(wasmtime::Val::I32(0)))
                .collect();
            match func.call_async(&mut store, &args, &mut out).await {
                Ok(()) => {}
                // A WASI command's `proc_exit(0)` is a normal end.
                Err(e)
                    if e.downcast_ref::<wasmtime_wasi::I32Exit>()
                        .is_some_and(|x| x.0 == 0) => {}
                Err(e) => return Err(store::classify(e, &mut store, limits)),
            }
            Ok((results(&out)?, finish_stats(&mut store, limits)))
        })
    }

    /// Prepares a call of a component's export (see
    /// [`prepare`](Self::prepare)).
    fn run_component<R: Send + 'static>(
        &self,
        function: &str,
        caps: Option<Capabilities>,
        params: impl FnOnce(&wasmtime::component::types::ComponentFunc) -> Result<Vec<Val>>
        + Send
        + 'static,
        results: impl FnOnce(&[Val]) -> Result<R> + Send + 'static,
    ) -> Call<R> {
        self.prepare(function, move |this, function, clock| async move {
            let Pre::Component { pre, .. } = &this.inner.pre else {
                return Err(Error::NoSuchFunction(function));
            };
            let limits = &this.inner.limits;
            let caps = caps.as_ref().unwrap_or(&this.inner.caps);
            let index = this.component_export(&function)?;
            let data = P2State::new(caps, limits, clock)?;
            let mut store = this.new_store(data);
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| store::classify(e, &mut store, limits))?;
            let func = instance
                .get_func(&mut store, index)
                .ok_or_else(|| Error::NoSuchFunction(function.clone()))?;
            let ty = func.ty(&store);
            let args = params(&ty)?;
            let mut out = vec![Val::Bool(false); ty.results().len()];
            func.call_async(&mut store, &args, &mut out)
                .await
                .map_err(|e| store::classify(e, &mut store, limits))?;
            Ok((results(&out)?, finish_stats(&mut store, limits)))
        })
    }

    /// Resolves `name` or `interface#name` to an export index, once per name.
    fn component_export(&self, name: &str) -> Result<ComponentExportIndex> {
        if let Some(found) = self.inner.component_exports.read().get(name) {
            return found.ok_or_else(|| Error::NoSuchFunction(name.into()));
        }
        let Compiled::Component(c) = &self.inner.artifact.inner.compiled else {
            return Err(Error::NoSuchFunction(name.into()));
        };
        let found = match name.split_once('#') {
            Some((iface, func)) => c
                .get_export_index(None, iface)
                .and_then(|i| c.get_export_index(Some(&i), func)),
            None => c.get_export_index(None, name),
        };
        // Only functions are callable; an interface or type name is not.
        let found = found.filter(|_| {
            self.inner
                .artifact
                .info()
                .exports
                .iter()
                .any(|e| e.name == name)
        });
        let mut cache = self.inner.component_exports.write();
        // Bound the cache: names come from callers and may be junk.
        if cache.len() < 1024 {
            cache.insert(name.to_string(), found);
        }
        found.ok_or_else(|| Error::NoSuchFunction(name.into()))
    }

    /// Resolves a core export to its index and type, once per name.
    fn module_export(&self, name: &str) -> Result<(ModuleExport, wasmtime::FuncType)> {
        if let Some(found) = self.inner.module_exports.read().get(name) {
            return found
                .clone()
                .ok_or_else(|| Error::NoSuchFunction(name.into()));
        }
        let Compiled::Module(m) = &self.inner.artifact.inner.compiled else {
            return Err(Error::NoSuchFunction(name.into()));
        };
        let found = m
            .get_export_index(name)
            .and_then(|index| match m.get_export(name)? {
                wasmtime::ExternType::Func(ty) => Some((index, ty)),
                _ => None,
            });
        let mut cache = self.inner.module_exports.write();
        // Bound the cache: names come from callers and may be junk.
        if cache.len() < 1024 {
            cache.insert(name.to_string(), found.clone());
        }
        found.ok_or_else(|| Error::NoSuchFunction(name.into()))
    }

    /// A store for one call under this version's limits; CPU time is
    /// measured (host calls hooked) where the limits or the lane need it.
    fn new_store<T: CallData>(&self, data: T) -> Store<T> {
        let runtime = &self.inner.runtime;
        store::new_store(
            runtime.engine(),
            runtime.enter_call(),
            data,
            &self.inner.limits,
            runtime.lane().is_some(),
        )
    }

    /// Counts a finished call, and penalizes this version (see
    /// [`penalized`](Self::penalized)) if the call computed past its CPU
    /// burst or hit a limit. `clock` is the call's, if it got that far.
    fn record<R>(
        &self,
        started: Instant,
        outcome: Result<(R, CallStats)>,
        clock: Option<&ClockShared>,
    ) -> Result<R> {
        let latency = started.elapsed();
        if clock.is_some_and(|c| c.recorded.swap(true, Ordering::AcqRel)) {
            // Counted already: the lane finished it as its caller gave up.
            return outcome.map(|(value, _)| value);
        }
        let heavy = clock.is_some_and(|c| c.heavy.load(Ordering::Relaxed));
        if clock.is_some_and(|c| c.on_lane.load(Ordering::Relaxed)) {
            self.inner.counters.record_low_priority();
        }
        let hit_limit = outcome.as_ref().err().is_some_and(|e| e.kind().is_limit());
        if heavy || hit_limit {
            self.penalize();
        }
        if outcome
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::MemoryLimit)
        {
            self.isolate();
        }
        match outcome {
            Ok((value, stats)) => {
                self.inner
                    .counters
                    .record(latency, None, stats.fuel, stats.memory);
                Ok(value)
            }
            Err(e) => {
                let kind = e.kind();
                self.inner.counters.record(latency, Some(kind), 0, 0);
                if kind != ErrorKind::BadRequest {
                    tracing::debug!(version = %self.inner.label, error = %e, "wasm.function.invoke failed");
                }
                Err(e)
            }
        }
    }

    /// Starts this version's calls on the low-priority lane for the next
    /// [`low_priority_window`](crate::RuntimeConfig::low_priority_window).
    fn penalize(&self) {
        let runtime = &self.inner.runtime;
        let until = runtime.clock_nanos() + runtime.config().low_priority_window.as_nanos() as u64;
        self.inner
            .penalized_until
            .fetch_max(until, Ordering::Relaxed);
    }

    /// Sends this version's calls to the runtime's isolator, if it has
    /// one, for the next
    /// [`isolation_window`](crate::RuntimeConfig::isolation_window).
    fn isolate(&self) {
        let runtime = &self.inner.runtime;
        let config = runtime.config();
        if config.isolator.is_none() {
            return;
        }
        let until = runtime.clock_nanos() + config.isolation_window.as_nanos() as u64;
        let before = self
            .inner
            .isolated_until
            .fetch_max(until, Ordering::Relaxed);
        if before <= runtime.clock_nanos() {
            tracing::info!(version = %self.inner.label, "memory limit hit: calls run isolated");
        }
    }

    /// Whether this version's calls start on the runtime's low-priority lane:
    /// one of them computed past its CPU burst or hit a limit (timeout, CPU
    /// time, memory, stack, tables or resources, fuel) within the last
    /// [`low_priority_window`](crate::RuntimeConfig::low_priority_window).
    pub fn penalized(&self) -> bool {
        self.inner.runtime.lane().is_some()
            && self.inner.penalized_until.load(Ordering::Relaxed) > self.inner.runtime.clock_nanos()
    }

    /// Whether this version serves wasi-http (exports
    /// `wasi:http/incoming-handler`).
    #[cfg(feature = "http")]
    pub fn is_http(&self) -> bool {
        matches!(&self.inner.pre, Pre::Component { proxy: Some(_), .. })
    }

    /// Serves one HTTP request with a fresh instance of a wasi-http component.
    ///
    /// Returns when the guest has set the response head; the body streams as
    /// the guest writes it. The call counts as in flight (see
    /// [`in_flight`](Self::in_flight)) until the guest finishes, and is
    /// recorded in the counters then. Limits apply to the whole call,
    /// streaming included. Outbound requests go only to the hosts in
    /// [`Capabilities::outbound_http`].
    #[cfg(feature = "http")]
    pub async fn handle<B>(&self, request: http::Request<B>) -> Result<crate::http::Response>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Pre::Component {
            proxy: Some(proxy), ..
        } = &self.inner.pre
        else {
            return Err(Error::NoSuchFunction(
                "wasi:http/incoming-handler#handle".into(),
            ));
        };
        if let Some(isolator) = self.isolator()
            && isolator.prepare(self).await.is_ok()
        {
            return self.handle_isolated(isolator, request).await;
        }
        let started = Instant::now();
        let lease = self.lease();
        let limits = &self.inner.limits;
        let clock = CallClock::new(limits);
        let shared = clock.shared();
        let data = match P2State::new(&self.inner.caps, limits, clock) {
            Ok(d) => d,
            Err(e) => return self.record(started, Err(e), None),
        };
        let store = self.new_store(data);
        let span = tracing::info_span!(
            "wasm.function.invoke",
            wasm.function.name = "wasi:http/incoming-handler#handle",
            wasm.version = %self.inner.label
        );
        let lane = crate::http::Placement {
            runtime: self.inner.runtime.clone(),
            penalized: self.penalized(),
            clock: shared.clone(),
            lease,
        };
        let (response, task) = crate::http::handle(proxy, store, request, limits.clone(), lane)
            .instrument(span)
            .await;
        match response {
            Ok(resp) => {
                // Count the call when the guest is done streaming.
                let this = self.clone();
                tokio::spawn(async move {
                    let outcome = match task.await {
                        Ok((r, memory)) => r.map(|()| ((), CallStats { fuel: 0, memory })),
                        Err(e) => Err(Error::Internal(format!("guest task: {e}"))),
                    };
                    let _ = this.record(started, outcome, Some(&shared));
                });
                Ok(resp)
            }
            Err(early) => {
                let err = match early {
                    Some(e) => e,
                    None => match task.await {
                        Ok((Err(e), _)) => e,
                        Ok((Ok(()), _)) => Error::Trap {
                            code: None,
                            message: "guest returned without setting a response".into(),
                        },
                        Err(e) => Error::Internal(format!("guest task: {e}")),
                    },
                };
                self.record(started, Err(err), Some(&shared))
            }
        }
    }

    /// Serves a wasi-http request in the isolator: counted when the
    /// response body ends, in flight until then.
    #[cfg(feature = "http")]
    async fn handle_isolated<B>(
        &self,
        isolator: &dyn crate::Isolator,
        request: http::Request<B>,
    ) -> Result<crate::http::Response>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use http_body_util::BodyExt as _;
        let span = tracing::info_span!(
            "wasm.function.invoke",
            wasm.function.name = "wasi:http/incoming-handler#handle",
            wasm.version = %self.inner.label,
            wasm.isolated = true
        );
        let started = Instant::now();
        let lease = self.lease();
        let limits = &self.inner.limits;
        let request = request.map(|b| b.map_err(Into::into).boxed_unsync());
        let call = isolator.handle(self, request);
        let outcome = tokio::time::timeout(limits.backstop() + ISOLATION_GRACE, call)
            .instrument(span)
            .await
            .unwrap_or(Err(Error::Timeout(limits.timeout())));
        // The body is bounded as the head was: by the call's backstop and
        // grace, counted from the call's start.
        let deadline =
            tokio::time::Instant::from_std(started) + limits.backstop() + ISOLATION_GRACE;
        match outcome {
            Ok(resp) => Ok(resp.map(|body| {
                crate::http::Counted {
                    body,
                    version: self.clone(),
                    started,
                    lease: Some(lease),
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    timeout: limits.timeout(),
                }
                .boxed_unsync()
            })),
            Err(e) => self.record(started, Err(e), None),
        }
    }

    /// Counts an isolated wasi-http call when its response body ended
    /// (`None`: it ended well).
    #[cfg(feature = "http")]
    pub(crate) fn record_isolated_http(&self, started: Instant, failed: Option<Error>) {
        let outcome = match failed {
            None => Ok(((), CallStats::default())),
            Some(e) => Err(e),
        };
        let _ = self.record(started, outcome, None);
    }

    /// Whether this version is a component (else a core module).
    pub fn is_component(&self) -> bool {
        self.inner.artifact.kind() == ArtifactKind::Component
    }
}

/// Holds a version in flight for the length of a call. Dropping it ends the
/// call as far as drain accounting is concerned.
#[derive(Debug)]
pub struct Lease {
    version: Version,
}

impl Lease {
    /// The leased version.
    pub fn version(&self) -> &Version {
        &self.version
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.version.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.version.inner.idle.notify_waiters();
        }
    }
}

/// Epoch interruption stops a guest that computes, but not one blocked in a
/// host call (a WASI sleep, a read that never completes). This backstop drops
/// the call — store, fiber and all — shortly after its deadline.
async fn within_timeout<T>(limits: &Limits, call: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limits.backstop(), call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Timeout(limits.timeout())),
    }
}

/// Penalizes its version when dropped if the call computed past its burst.
struct PenalizeIfHeavy<'a> {
    version: &'a Version,
    clock: &'a ClockShared,
}

impl Drop for PenalizeIfHeavy<'_> {
    fn drop(&mut self) {
        if self.clock.heavy.load(Ordering::Relaxed) {
            self.version.penalize();
        }
    }
}

/// A prepared call: its future, owning everything it needs (so it can move
/// to the low-priority lane half-way), and what its clock shares.
struct Call<R> {
    run: std::pin::Pin<Box<dyn Future<Output = Result<R>> + Send>>,
    clock: Arc<ClockShared>,
    /// When the call was prepared: its latency counts from here.
    started: Instant,
}

/// How long past a call's backstop its caller waits for the low-priority
/// lane to answer before answering `timeout` itself.
pub(crate) const LANE_GRACE: Duration = Duration::from_millis(50);

/// How long past a call's backstop an isolated call may take (its wasi-http
/// response body included): for the isolator's own work around the call,
/// such as loading the version again if it lost it.
const ISOLATION_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct CallStats {
    fuel: u64,
    memory: u64,
}

fn finish_stats<T: CallData>(store: &mut Store<T>, limits: &Limits) -> CallStats {
    let fuel = limits.fuel.map_or(0, |budget| {
        budget.saturating_sub(store.get_fuel().unwrap_or(budget))
    });
    CallStats {
        fuel,
        memory: store.data_mut().limiter().memory_high_water,
    }
}

fn check_core_args(ty: &wasmtime::FuncType, args: &[wasmtime::Val]) -> Result<()> {
    if ty.params().len() != args.len() {
        return Err(Error::BadArgument {
            param: "arguments".into(),
            expected: format!(
                "{} argument(s) {}",
                ty.params().len(),
                json::core_signature(ty)
            ),
            problem: format!("got {}", args.len()),
        });
    }
    for (i, (want, got)) in ty.params().zip(args).enumerate() {
        let matches = matches!(
            (&want, got),
            (ValType::I32, wasmtime::Val::I32(_))
                | (ValType::I64, wasmtime::Val::I64(_))
                | (ValType::F32, wasmtime::Val::F32(_))
                | (ValType::F64, wasmtime::Val::F64(_))
                | (ValType::V128, wasmtime::Val::V128(_))
        );
        if !matches {
            return Err(Error::BadArgument {
                param: format!("arg{i}"),
                expected: format!("{want}"),
                problem: "got a value of another type".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call on the lane that ends as its caller gives up is recorded by
    /// both (the lane's run, then the caller's timeout): it counts once.
    #[test]
    fn a_call_is_counted_once() {
        let rt = crate::RuntimeConfig::new().build().unwrap();
        let wasm = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
        let artifact = rt.load(&wasm).unwrap();
        let v = Version::new(&rt, &artifact, "t", Limits::default(), Capabilities::none()).unwrap();
        let clock = ClockShared::default();
        let started = Instant::now();
        let done = ((), CallStats { fuel: 0, memory: 0 });
        v.record(started, Ok(done), Some(&clock)).unwrap();
        let late = v.record::<()>(
            started,
            Err(Error::Timeout(Duration::from_secs(1))),
            Some(&clock),
        );
        assert!(matches!(late, Err(Error::Timeout(_))), "{late:?}");
        let counted = v.counters();
        assert_eq!((counted.calls, counted.errors), (1, 0));
        // Another call's clock counts on its own.
        let other = ClockShared::default();
        let done = ((), CallStats { fuel: 0, memory: 0 });
        v.record(started, Ok(done), Some(&other)).unwrap();
        assert_eq!(v.counters().calls, 2);
    }
}
