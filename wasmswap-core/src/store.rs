//! Per-call store state: the WASI context, the limiter, and the clock that
//! turns epoch ticks into timeouts, CPU-time budgets and CPU-share pauses.
//! Every call gets a fresh store; a store that trapped is dropped with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{CallHook, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::error::Error;
use crate::limits::{Limits, StoreLimiter};

/// CPU time a call may use before its CPU share is enforced and before it
/// moves to the low-priority lane.
const CPU_BURST: Duration = Duration::from_millis(10);

/// Why the deadline callback stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Timeout,
    CpuBudget,
}

/// The most a stretch of running that the thread's CPU clock did not
/// measure counts towards [`CallClock`]'s `ran`.
const UNCLOCKED_STRETCH: Duration = Duration::from_millis(1);

/// What a call's clock shares with its yields and with the code driving the
/// call.
#[derive(Debug, Default)]
pub(crate) struct ClockShared {
    /// See [`CallClock`]'s `shared`.
    woke: AtomicU64,
    /// Set at the tick where the call's CPU time passes its burst: the call
    /// belongs on the low-priority lane ([`crate::lane`]) from there on.
    pub(crate) heavy: AtomicBool,
    /// Set when the call is handed to the low-priority lane.
    pub(crate) on_lane: AtomicBool,
    /// Set when the call is counted: a call on the lane can end just as its
    /// caller gives up on it and counts a timeout, and must count once.
    pub(crate) recorded: AtomicBool,
    /// The CPU time of the thread the guest resumed on, when it resumed,
    /// in nanoseconds, and that thread's [`thread_cpu`] id (0: none yet).
    resumed_cpu: AtomicU64,
    resumed_thread: AtomicU64,
}

/// Accounts wall-clock and CPU time for one call.
#[derive(Debug)]
pub(crate) struct CallClock {
    started: Instant,
    /// When the guest last started running, in nanoseconds since `started`
    /// (0: the call's start), written by each yield as it ends: a timer
    /// wakes up late (tokio's resolution is 1 ms) and a yielded task waits
    /// behind others, and counting that as CPU time called for longer
    /// pauses, so a tenant got a fraction of its share (a 50 % guest ran at
    /// about 10 % with a 500 µs tick). Shared with the yields.
    shared: Arc<ClockShared>,
    /// When the guest last left wasm for the host (a WASI call, the end of
    /// a call), if it is there now. Set by the call hook, which is only
    /// installed when CPU time is accounted.
    in_host_since: Option<Instant>,
    /// Host time within the current stretch of running: a WASI sleep or
    /// read is not the guest's CPU time.
    host_time: Duration,
    cpu_time: Duration,
    /// CPU time by the threads' own clocks where they tell (see `on_tick`):
    /// what decides that a call computes for long.
    ran: Duration,
    /// Whether to read the threads' CPU clocks at all: only for the
    /// low-priority lane.
    clocks_threads: bool,
    timeout: Duration,
    cpu_budget: Option<Duration>,
    cpu_percent: u32,
    pub(crate) stopped: Option<Stop>,
    /// Keeps the runtime's epoch ticking while this call's store lives.
    ticking: Option<crate::ticker::Ticking>,
}

impl CallClock {
    pub(crate) fn new(limits: &Limits) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            shared: Arc::default(),
            in_host_since: None,
            host_time: Duration::ZERO,
            cpu_time: Duration::ZERO,
            ran: Duration::ZERO,
            clocks_threads: false,
            timeout: limits.timeout(),
            cpu_budget: limits.cpu_time(),
            cpu_percent: u32::from(limits.max_cpu_percent),
            stopped: None,
            ticking: None,
        }
    }

    /// Called by wasmtime at each epoch tick while the guest runs.
    fn on_tick(&mut self) -> UpdateDeadline {
        let now = Instant::now();
        // Every tick ends in a yield, and wasmtime awaits it before the
        // guest runs again, so `woke` is when this stretch of running began.
        // Ticks fire only in wasm code and host calls never yield through
        // this callback, so every host call since then lies inside the
        // stretch and is taken out of it.
        let resumed = self.started + Duration::from_nanos(self.shared.woke.load(Ordering::Relaxed));
        let wall = now.saturating_duration_since(resumed);
        let host = std::mem::take(&mut self.host_time);
        // Wall time is CPU time only while the thread has the core. Where
        // the stretch ran on one thread (it resumed there, at a yield), that
        // thread's own CPU clock says how much of it ran.
        let ran = self
            .clocks_threads
            .then(thread_cpu)
            .flatten()
            .filter(|(thread, _)| *thread == self.shared.resumed_thread.load(Ordering::Relaxed))
            .map(|(_, cpu)| {
                let at = Duration::from_nanos(self.shared.resumed_cpu.load(Ordering::Relaxed));
                wall.min(cpu.saturating_sub(at))
            });
        // What moves a call to the lane: a call the OS merely took the core
        // from (a busy machine) must not look heavy, and be sent where it
        // waits longer still. A stretch without the thread's clock (the
        // first, or one across a host call that resumed on another thread)
        // counts at most a tick or so: a guest runs that long between ticks.
        self.ran += ran
            .unwrap_or(wall.min(UNCLOCKED_STRETCH))
            .saturating_sub(host);
        if self.ran > CPU_BURST {
            self.shared.heavy.store(true, Ordering::Relaxed);
        }
        // What limits and throttles it: on the callers' threads wall time,
        // which also charges the call the machinery around it; on the
        // low-priority lane, where the OS takes the core away by design for
        // as long as any other thread wants it, the thread's clock, so that
        // a call waiting for the core is neither stopped for CPU time it did
        // not use nor paused for it.
        let stretch = match ran {
            Some(ran) if self.shared.on_lane.load(Ordering::Relaxed) => ran,
            _ => wall,
        };
        self.cpu_time += stretch.saturating_sub(host);
        let elapsed = now - self.started;
        if elapsed >= self.timeout {
            self.stopped = Some(Stop::Timeout);
            return UpdateDeadline::Interrupt;
        }
        if self.cpu_budget.is_some_and(|b| self.cpu_time >= b) {
            self.stopped = Some(Stop::CpuBudget);
            return UpdateDeadline::Interrupt;
        }
        // Running at `cpu_percent` means the call's wall time is at least
        // cpu_time × 100 / cpu_percent. Pause until it is — but only past a
        // burst allowance: short calls must never pay for a timer (tokio's
        // resolution is 1 ms, longer than most calls).
        if self.cpu_percent < 100 && self.cpu_time > CPU_BURST {
            let due = self.cpu_time * 100 / self.cpu_percent;
            if due > elapsed {
                let pause = (due - elapsed).min(self.timeout - elapsed);
                return self.yield_until(tokio::time::sleep(pause));
            }
        }
        // Yield even when not throttled, so one busy guest cannot starve the
        // other tasks on its executor thread.
        self.yield_until(tokio::task::yield_now())
    }

    /// Starts the call's clocks again (the call starts running now, not
    /// when it was prepared).
    pub(crate) fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// What this clock shares with the code driving its call.
    pub(crate) fn shared(&self) -> Arc<ClockShared> {
        self.shared.clone()
    }

    /// Whether calls under `limits` need CPU time, and so the call hook.
    fn accounts_cpu(limits: &Limits) -> bool {
        limits.max_cpu_percent < 100 || limits.cpu_time().is_some()
    }

    /// Called by wasmtime on every transition between wasm and the host
    /// (a host function called from wasm, and wasm called back from the
    /// host inside one, as `cabi_realloc` is while results are lowered).
    fn on_call_hook(&mut self, hook: CallHook) {
        if hook.entering_host() {
            self.in_host_since = Some(Instant::now());
        } else if let Some(since) = self.in_host_since.take() {
            self.host_time += since.elapsed();
        }
    }

    /// Yields to the executor until `wait` ends, and has the wait stamp
    /// when it did: time off the CPU (a timer waking late, a wait in the run
    /// queue behind other tasks) is not the guest's CPU time.
    fn yield_until(&self, wait: impl Future<Output = ()> + Send + 'static) -> UpdateDeadline {
        let (shared, started, clocks) = (self.shared.clone(), self.started, self.clocks_threads);
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                wait.await;
                let since = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                shared.woke.store(since, Ordering::Relaxed);
                // Resumes on this thread: the next stretch runs here.
                if let Some((thread, cpu)) = clocks.then(thread_cpu).flatten() {
                    let cpu = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
                    shared.resumed_cpu.store(cpu, Ordering::Relaxed);
                    shared.resumed_thread.store(thread, Ordering::Relaxed);
                }
            }),
        )
    }
}

/// The calling thread's CPU time, with an id for the thread (never 0), on
/// Linux (`CLOCK_THREAD_CPUTIME_ID`); `None` elsewhere.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn thread_cpu() -> Option<(u64, Duration)> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let cpu = Duration::new(
        u64::try_from(t.tv_sec).ok()?,
        u32::try_from(t.tv_nsec).ok()?,
    );
    Some((ID.with(|id| *id), cpu))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn thread_cpu() -> Option<(u64, Duration)> {
    None
}

/// What every store's data gives the runtime.
pub(crate) trait CallData: Send + 'static {
    fn limiter(&mut self) -> &mut StoreLimiter;
    fn clock(&mut self) -> &mut CallClock;
}

/// Store data for WASI p1 core modules.
pub(crate) struct P1State {
    pub wasi: WasiP1Ctx,
    pub limiter: StoreLimiter,
    pub clock: CallClock,
}

/// Store data for components (WASI p2).
pub(crate) struct P2State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: StoreLimiter,
    pub clock: CallClock,
    #[cfg(feature = "http")]
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    #[cfg(feature = "http")]
    pub outbound: crate::http::OutboundPolicy,
}

impl P2State {
    pub(crate) fn new(
        caps: &crate::sandbox::Capabilities,
        limits: &Limits,
        clock: CallClock,
    ) -> crate::error::Result<Self> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources as usize);
        Ok(Self {
            wasi: caps.builder()?.build(),
            table,
            limiter: StoreLimiter::new(limits),
            clock,
            #[cfg(feature = "http")]
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            #[cfg(feature = "http")]
            outbound: crate::http::OutboundPolicy {
                allowed_hosts: caps.outbound_http.clone(),
            },
        })
    }
}

#[cfg(feature = "http")]
impl wasmtime_wasi_http::WasiHttpView for P2State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl CallData for P1State {
    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }
    fn clock(&mut self) -> &mut CallClock {
        &mut self.clock
    }
}

impl CallData for P2State {
    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }
    fn clock(&mut self) -> &mut CallClock {
        &mut self.clock
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Creates a store for one call with limits, fuel and the deadline callback
/// set, holding `ticking` (the epoch advances while it lives). `for_lane`
/// (the runtime has a low-priority lane) hooks host calls so that their
/// time is not counted as CPU time even where the limits do not need it
/// (the low-priority lane does, to find calls that compute for long).
pub(crate) fn new_store<T: CallData>(
    engine: &wasmtime::Engine,
    ticking: crate::ticker::Ticking,
    data: T,
    limits: &Limits,
    for_lane: bool,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    // The epoch ticks for as long as the store lives.
    store.data_mut().clock().ticking = Some(ticking);
    // Only the lane needs the threads' own CPU clocks (a system call a tick).
    store.data_mut().clock().clocks_threads = for_lane;
    store.limiter(|d| d.limiter());
    if let Some(fuel) = limits.fuel {
        // Only fails when the engine has fuel disabled; `Version::new` refuses
        // fuel limits then, so this cannot fail here.
        let _ = store.set_fuel(fuel);
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| Ok(cx.data_mut().clock().on_tick()));
    // Only where CPU time is needed: the hook runs on every host call.
    if for_lane || CallClock::accounts_cpu(limits) {
        store.call_hook(|mut cx, hook| {
            cx.data_mut().clock().on_call_hook(hook);
            Ok(())
        });
    }
    store
}

/// Turns a wasmtime error from instantiation or a call into our typed error,
/// using what the limiter and the clock recorded.
pub(crate) fn classify<T: CallData>(
    err: wasmtime::Error,
    store: &mut Store<T>,
    limits: &Limits,
) -> Error {
    let data = store.data_mut();
    match data.clock().stopped {
        Some(Stop::Timeout) => return Error::Timeout(limits.timeout()),
        Some(Stop::CpuBudget) => return Error::CpuLimit(limits.cpu_time().unwrap_or_default()),
        None => {}
    }
    let limiter = data.limiter();
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::StackOverflow => Error::StackOverflow,
            Trap::OutOfFuel => Error::FuelExhausted,
            Trap::Interrupt => Error::Timeout(limits.timeout()),
            _ if limiter.memory_denied => Error::MemoryLimit {
                limit_bytes: limiter.memory_bytes,
            },
            _ if limiter.table_denied => Error::TableLimit {
                limit: limiter.table_elements,
            },
            code => Error::Trap {
                code: Some(*code),
                message: format!("{err:?}"),
            },
        };
    }
    if limiter.memory_denied {
        return Error::MemoryLimit {
            limit_bytes: limiter.memory_bytes,
        };
    }
    if limiter.table_denied {
        return Error::TableLimit {
            limit: limiter.table_elements,
        };
    }
    if let Some(wasmtime::component::ResourceTableError::Full) =
        err.downcast_ref::<wasmtime::component::ResourceTableError>()
    {
        return Error::ResourceLimit(format!(
            "the guest holds more than {} host resources (maxResources)",
            limits.max_resources
        ));
    }
    if let Some(pool) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return Error::PoolExhausted(pool.to_string());
    }
    let message = format!("{err:#}");
    if message.contains("resource limit exceeded") {
        return Error::ResourceLimit(message);
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::Exit(exit.0);
    }
    Error::Trap {
        code: None,
        message,
    }
}
