//! The isolation worker's CPU budget: the calls of versions that keep
//! hitting their limits there use at most a set share of one core,
//! averaged over time, however many arrive. (Which calls are paced is the
//! worker's choice: see `worker::Worker::pace`.)
//!
//! The worker runs at `SCHED_IDLE`, so it never keeps the host's serving
//! threads from a core they ask for; but a core it keeps busy still costs
//! the host's tenants on a small machine (measured on a 2-vCPU VM: a plain
//! `SCHED_IDLE` busy loop on the other core raised the unloaded p99 by
//! half, BENCHMARKS.md), and a tenant that keeps hitting its memory limit
//! would keep it busy for as long as it is called. So calls are admitted
//! at the pace the budget allows: a token bucket of CPU time, filled at
//! `share` CPU-seconds per second up to [`BURST`], charged with the CPU
//! time of the worker's executor thread — where every call runs — when
//! the next call is admitted. Not the whole process's: its epoch ticker
//! wakes every tick whether a call runs or not, and charged to the
//! tenants it took most of a small share (measured: at 0.02, a memory
//! bomb got 35 calls in 120 s instead of ~600). A call that finds the
//! bucket empty waits for it to fill, in arrival order, up to its own
//! deadline: under a flood, the tenant's calls time out while the host's
//! other tenants keep their core. The worker also holds each admitted
//! call to the same share as it runs, so one call cannot spend much
//! before the budget sees it. While the host is idle the budget holds
//! nobody back ([`CpuBudget::admit`]).
//!
//! A cgroup CPU quota does the same from outside, but throttles the
//! process mid-call — in the kernel, holding a lock of its memory map —
//! and measured worse (BENCHMARKS.md); pacing at call boundaries does not.

use std::time::Duration;

use tokio::time::Instant;

/// CPU time the bucket holds at most: a few calls after a quiet spell run
/// at once. Small, because a burst is CPU taken all at once, and the
/// host's tenants feel it all at once: measured on a 2-vCPU VM, a memory
/// bomb spent a 100 ms burst back to back at the start of each attack,
/// and the median round's bystander p99 was 1.29× unloaded, against 1.05×
/// with 10 ms (BENCHMARKS.md). A call is admitted whenever the bucket is
/// not in debt, so a lone call never waits; what it may cost as it runs
/// is the worker's to bound (`worker::Loaded::paced`).
const BURST: Duration = Duration::from_millis(10);

/// The budget; cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    /// CPU-seconds per wall second, in (0, 1].
    share: f64,
    /// The executor thread, whose CPU time is charged: every admission
    /// must run there.
    thread: std::thread::ThreadId,
    /// Held while a call waits to be admitted: arrival order.
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// CPU time the bucket holds (negative: owed).
    tokens: f64,
    /// When the bucket was last filled.
    filled: Instant,
    /// The process's CPU time when last charged.
    charged: Duration,
}

impl CpuBudget {
    /// A budget of `share` of one core (clamped to (0, 1]), charged with
    /// the CPU time of the calling thread: make it on the executor thread
    /// that runs the calls (the worker's runtime has one).
    pub(crate) fn new(share: f64) -> Self {
        CpuBudget {
            share: share.clamp(0.001, 1.0),
            thread: std::thread::current().id(),
            state: tokio::sync::Mutex::new(State {
                tokens: BURST.as_secs_f64(),
                filled: Instant::now(),
                charged: thread_cpu(),
            }),
        }
    }

    /// The share as a call's `max_cpu_percent` (1 at least): what each
    /// paced call is held to as it runs.
    pub(crate) fn call_percent(&self) -> u8 {
        (self.share * 100.0).round().clamp(1.0, 100.0) as u8
    }

    /// Waits until the budget admits one more call, charging the CPU the
    /// process has used since the last admission. While the host is idle
    /// (`!host_busy`) the budget is work-conserving: the call runs at
    /// once, and the bucket starts full again — a tenant alone on a node
    /// is not held to a share of a core nobody else wants, nor made to
    /// pay for it later.
    pub(crate) async fn admit(&self, host_busy: bool) {
        let mut state = self.state.lock().await;
        debug_assert_eq!(
            std::thread::current().id(),
            self.thread,
            "a CPU budget is charged on the thread it was made on"
        );
        let now = Instant::now();
        let cpu = thread_cpu();
        if !host_busy {
            *state = State {
                tokens: BURST.as_secs_f64(),
                filled: now,
                charged: cpu,
            };
            return;
        }
        let used = cpu.saturating_sub(state.charged);
        state.charged = cpu;
        let refill = now.duration_since(state.filled).as_secs_f64() * self.share;
        state.filled = now;
        state.tokens = (state.tokens + refill - used.as_secs_f64()).min(BURST.as_secs_f64());
        if state.tokens < 0.0 {
            // Owed: wait until it is paid back at `share`. The lock stays
            // held, so later calls queue behind this one.
            let wait = Duration::from_secs_f64(-state.tokens / self.share);
            tracing::debug!(?wait, "the worker's CPU budget is spent; the call waits");
            tokio::time::sleep(wait).await;
            state.tokens = 0.0;
            state.filled = Instant::now();
        }
    }
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}
