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
//! `share` CPU-seconds per second up to [`BURST`], charged with the
//! process's CPU time (every thread of it: calls interleave on the one
//! executor thread, and compiles run on others) when the next call is
//! admitted. A call that finds the bucket empty waits for it to fill, in
//! arrival order, up to its own deadline: under a flood, the tenant's
//! calls time out while the host's other tenants keep their core.
//!
//! A cgroup CPU quota does the same from outside, but throttles the
//! process mid-call — in the kernel, holding a lock of its memory map —
//! and measured worse (BENCHMARKS.md); pacing at call boundaries does not.

use std::time::Duration;

use tokio::time::Instant;

/// CPU time the bucket holds at most: a burst of calls after a quiet spell
/// runs at once.
const BURST: Duration = Duration::from_millis(100);

/// The budget; cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct CpuBudget {
    /// CPU-seconds per wall second, in (0, 1].
    share: f64,
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
    /// A budget of `share` of one core (clamped to (0, 1]).
    pub(crate) fn new(share: f64) -> Self {
        CpuBudget {
            share: share.clamp(0.001, 1.0),
            state: tokio::sync::Mutex::new(State {
                tokens: BURST.as_secs_f64(),
                filled: Instant::now(),
                charged: process_cpu(),
            }),
        }
    }

    /// Waits until the budget admits one more call, charging the CPU the
    /// process has used since the last admission.
    pub(crate) async fn admit(&self) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let cpu = process_cpu();
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

/// This process's CPU time, all threads (`CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}
