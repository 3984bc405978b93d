//! [`Runtime`]: one wasmtime `Engine`, its epoch ticker, its linkers and its
//! compile caches, behind a cheap-clone handle.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::artifact::{
    self, Artifact, ArtifactInfo, ArtifactInner, ArtifactKind, Compiled, ContentId,
};
use crate::cache::DiskCache;
use crate::config::RuntimeConfig;
use crate::error::{Error, LoadError, Result};
use crate::lane::Lane;
use crate::store::{P1State, P2State};
use crate::validate;

/// A handle to one configured wasmtime engine. Clones share everything.
///
/// Dropping the last clone stops the epoch ticker thread.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    pub(crate) module_linker: wasmtime::Linker<P1State>,
    pub(crate) component_linker: wasmtime::component::Linker<P2State>,
    /// Compiled artifacts by content id, as long as anything still uses them.
    loaded: Mutex<HashMap<ContentId, Weak<ArtifactInner>>>,
    disk: Option<DiskCache>,
    /// Advances the epoch while calls run; stops when dropped.
    ticker: crate::ticker::Ticker,
    /// What [`keep_resident`] allowed on this machine.
    kept_resident: usize,
    /// Threads for the calls that compute for long ([`crate::lane`]).
    lane: Lane,
    /// The start of [`Runtime::clock_nanos`].
    born: Instant,
    /// When a call last started in this process ([`Runtime::clock_nanos`]
    /// + 1; 0 for never): see [`Runtime::idle_for`].
    last_local_call: AtomicU64,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<Artifact>();
};

/// Where a [`Runtime::load`] found its compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Already compiled and alive in this runtime.
    Memory,
    /// Deserialized from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

impl Runtime {
    /// A runtime with the default configuration.
    pub fn new() -> Result<Self> {
        RuntimeConfig::default().build()
    }

    /// Starts a [`RuntimeConfig`] builder.
    pub fn builder() -> RuntimeConfig {
        RuntimeConfig::default()
    }

    pub(crate) fn from_config(config: RuntimeConfig) -> Result<Self> {
        let kept_resident = if config.pooling {
            keep_resident(&config)
        } else {
            0
        };
        let engine = Engine::new(&engine_config(&config, kept_resident))
            .map_err(|e| Error::InvalidConfig(format!("{e:#}")))?;

        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |s: &mut P1State| &mut s.wasi)
            .map_err(|e| Error::Internal(format!("linking WASI p1: {e:#}")))?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| Error::Internal(format!("linking WASI p2: {e:#}")))?;
        #[cfg(feature = "http")]
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(|e| Error::Internal(format!("linking wasi-http: {e:#}")))?;

        let disk = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine).map_err(Error::Cache)?),
            None => None,
        };

        let ticker = crate::ticker::Ticker::spawn(engine.clone(), config.epoch_tick)?;

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                config,
                module_linker,
                component_linker,
                loaded: Mutex::new(HashMap::new()),
                disk,
                ticker,
                kept_resident,
                lane: Lane::new(),
                born: Instant::now(),
                last_local_call: AtomicU64::new(0),
            }),
        })
    }

    /// The underlying wasmtime engine (for embedders that need raw access).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Bytes of each pooled linear memory this runtime really keeps resident
    /// between instances: [`RuntimeConfig::memory_keep_resident`] (at most
    /// `max_memory_bytes`) where this machine allows it — the pooling
    /// allocator, Linux's `PAGEMAP_SCAN`, no swap when the runtime was built —
    /// and 0 elsewhere.
    pub fn memory_kept_resident(&self) -> u64 {
        self.inner.kept_resident as u64
    }

    /// The low-priority lane, unless
    /// [`RuntimeConfig::low_priority_lane`] turned it off.
    pub(crate) fn lane(&self) -> Option<&Lane> {
        self.inner
            .config
            .low_priority_lane
            .then_some(&self.inner.lane)
    }

    /// Nanoseconds since this runtime was built: a clock cheap to keep in an
    /// atomic.
    pub(crate) fn clock_nanos(&self) -> u64 {
        u64::try_from(self.inner.born.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that a call starts in this process (not in the isolator):
    /// the epoch ticks until the guard, kept with its store, is dropped.
    pub(crate) fn enter_call(&self) -> crate::ticker::Ticking {
        self.inner
            .last_local_call
            .store(self.clock_nanos().saturating_add(1), Ordering::Relaxed);
        self.inner.ticker.enter()
    }

    /// How long since a call last started in this process — calls sent to
    /// the [`isolator`](RuntimeConfig::isolator) do not count — or `None`
    /// if none has. An isolator can leave the process's tenants their
    /// cores while this is short, and let its own calls use idle ones
    /// freely otherwise.
    pub fn idle_for(&self) -> Option<Duration> {
        match self.inner.last_local_call.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(
                self.clock_nanos().saturating_sub(at - 1),
            )),
        }
    }

    /// Validates, compiles (or fetches from cache) and describes a binary.
    ///
    /// Validation runs before any compilation and refuses, with a
    /// [`LoadError`] naming the problem: a bad header, a malformed binary
    /// (with its offset), a binary over the size limit, a disallowed proposal,
    /// an import outside the capability set, or declared tables/memories
    /// beyond the limits. Compilation is bounded by
    /// [`RuntimeConfig::compile_timeout`].
    ///
    /// This blocks while compiling; from async code call it inside
    /// `tokio::task::spawn_blocking`.
    pub fn load(&self, bytes: &[u8]) -> Result<Artifact> {
        self.load_traced(bytes).map(|(a, _)| a)
    }

    /// Like [`load`](Self::load), also saying where the code came from.
    pub fn load_traced(&self, bytes: &[u8]) -> Result<(Artifact, LoadSource)> {
        let span = tracing::info_span!("wasm.module.load", wasm.module.size = bytes.len());
        let _entered = span.enter();
        let started = Instant::now();
        validate::check_size(bytes, &self.inner.config)?;
        let id = ContentId::of(bytes);
        // The same bytes already passed validation under this runtime's
        // configuration: no need to validate them again.
        if let Some(artifact) = self.cached(&id) {
            return Ok((artifact, LoadSource::Memory));
        }
        let inspection = tracing::info_span!("wasm.module.validate")
            .in_scope(|| validate::inspect(bytes, &self.inner.config))
            .inspect_err(|e| tracing::debug!(error = %e, "refused"))?;

        let (compiled, source) = match self
            .inner
            .disk
            .as_ref()
            .and_then(|d| d.get(&self.inner.engine, &id, inspection.kind))
        {
            Some(c) => (c, LoadSource::Disk),
            None => {
                let c = self.compile(bytes, inspection.kind)?;
                if let Some(disk) = &self.inner.disk {
                    disk.put(&id, &c);
                }
                (c, LoadSource::Compiled)
            }
        };

        let info = ArtifactInfo {
            id,
            kind: inspection.kind,
            wasi: inspection.wasi,
            size_bytes: bytes.len(),
            imports: inspection.imports,
            exports: artifact::exports(&self.inner.engine, &compiled),
            wit: match inspection.kind {
                ArtifactKind::Component => artifact::component_wit(bytes),
                ArtifactKind::Module => None,
            },
        };
        let artifact = Artifact {
            inner: Arc::new(ArtifactInner { info, compiled }),
        };
        // Another thread may have loaded the same bytes meanwhile; keep one.
        let mut loaded = self.inner.loaded.lock();
        if let Some(existing) = loaded.get(&id).and_then(Weak::upgrade) {
            return Ok((Artifact { inner: existing }, LoadSource::Memory));
        }
        loaded.retain(|_, w| w.strong_count() > 0);
        loaded.insert(id, Arc::downgrade(&artifact.inner));
        drop(loaded);
        tracing::debug!(
            wasm.module.checksum = %id,
            ?source,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "loaded"
        );
        Ok((artifact, source))
    }

    /// An artifact already loaded in this runtime, by content id.
    pub fn cached(&self, id: &ContentId) -> Option<Artifact> {
        let loaded = self.inner.loaded.lock();
        loaded
            .get(id)
            .and_then(Weak::upgrade)
            .map(|inner| Artifact { inner })
    }

    /// Number of distinct artifacts currently alive in this runtime.
    pub fn loaded_count(&self) -> usize {
        self.inner
            .loaded
            .lock()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Compiles on a worker thread so a pathological input cannot hold the
    /// caller past the compile timeout. Cranelift cannot be cancelled, so a
    /// timed-out compile finishes in the background and is discarded.
    fn compile(&self, bytes: &[u8], kind: ArtifactKind) -> Result<Compiled> {
        let (tx, rx) = mpsc::sync_channel(1);
        let engine = self.inner.engine.clone();
        let owned = bytes.to_vec();
        thread::Builder::new()
            .name("wasmswap-compile".into())
            .spawn(move || {
                let result = match kind {
                    ArtifactKind::Module => {
                        wasmtime::Module::new(&engine, &owned).map(Compiled::Module)
                    }
                    ArtifactKind::Component => wasmtime::component::Component::new(&engine, &owned)
                        .map(Compiled::Component),
                };
                let _ = tx.send(result.map_err(|e| format!("{e:#}")));
            })
            .map_err(|e| Error::Internal(format!("spawning compile thread: {e}")))?;
        let timeout = self.inner.config.compile_timeout;
        match rx.recv_timeout(timeout) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(msg)) => Err(LoadError::Compile(msg).into()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(LoadError::CompileTimeout(timeout).into()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Internal("compile thread panicked".into()))
            }
        }
    }
}

fn engine_config(c: &RuntimeConfig, keep_resident: usize) -> wasmtime::Config {
    let mut cfg = wasmtime::Config::new();
    cfg.strategy(wasmtime::Strategy::Cranelift);
    cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Exactly the proposals validation allows; everything else off.
    cfg.wasm_features(wasmparser::WasmFeatures::all(), false);
    cfg.wasm_features(validate::allowed_features(c), true);
    cfg.epoch_interruption(true);
    cfg.consume_fuel(c.fuel);
    // Unwind tables cost memory per module and time at unload; traps and
    // backtraces do not need them.
    cfg.native_unwind_info(false);
    cfg.max_wasm_stack(c.max_wasm_stack);
    // Host functions (WASI) run on the same fiber stack as the guest.
    cfg.async_stack_size(c.max_wasm_stack + (1 << 20));
    cfg.memory_init_cow(true);
    cfg.memory_guard_size(c.guard_size());
    cfg.memory_reservation(c.memory_reservation());
    // A memory that outgrows its reservation would be copied; with the pool
    // sized to the maximum memory it never does.
    cfg.memory_reservation_for_growth(0);
    if c.pooling {
        let n = c.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(n)
            .total_component_instances(n)
            .total_memories(n)
            .total_tables(n)
            .total_stacks(n)
            .max_memory_size(c.max_memory_bytes as usize)
            .table_elements(c.max_table_elements as usize)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_core_instances_per_component(50)
            .max_memories_per_component(10)
            .max_tables_per_component(50)
            // Batch madvise resets: on a multi-threaded process each one
            // costs a TLB shootdown on every core.
            .decommit_batch_size(16);
        if keep_resident > 0 {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(keep_resident);
        }
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

/// Bytes of each pooled memory kept resident between instances (see
/// [`RuntimeConfig::memory_keep_resident`]). Only where `PAGEMAP_SCAN` finds
/// the written pages, since a blind reset would clear every instance's whole
/// accessible memory on the way out; and only without swap: wasmtime 48's
/// scan looks for written pages that are *present*, so a written page the
/// kernel has swapped out would be neither cleared nor given back, and the
/// slot's next instance could read it (wasmtime PR #14357).
fn keep_resident(c: &RuntimeConfig) -> usize {
    let wanted = c.memory_keep_resident.min(c.max_memory_bytes);
    if wanted == 0 {
        return 0;
    }
    if !PoolingAllocationConfig::is_pagemap_scan_available() {
        tracing::warn!(
            "PAGEMAP_SCAN is not available (Linux 6.7 or later): pooled memory is given back \
             to the kernel after every instance (memory_keep_resident has no effect)"
        );
        return 0;
    }
    match swap_devices() {
        Some(0) => usize::try_from(wanted).unwrap_or(usize::MAX),
        found => {
            tracing::warn!(
                swap_devices = ?found,
                "swap is on (or /proc/swaps is unreadable): pooled memory is given back to the \
                 kernel after every instance, because a swapped-out page would escape the reset"
            );
            0
        }
    }
}

/// Active swap areas listed in `/proc/swaps` (below its header line);
/// `None` when it cannot be read.
fn swap_devices() -> Option<usize> {
    let swaps = std::fs::read_to_string("/proc/swaps").ok()?;
    Some(
        swaps
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count(),
    )
}
