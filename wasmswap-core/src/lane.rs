//! The low-priority lane: threads of their own, at the OS's idle priority
//! (Linux `SCHED_IDLE`), for guest calls that compute for long or belong to
//! a version that keeps hitting its limits.
//!
//! Calls run on the caller's threads — an edge node's serving threads —
//! because a fresh instance and a short call cost less there than any hand
//! over between threads (moving every call to threads of their own was
//! measured and was slower: BENCHMARKS.md). But a guest that computes holds
//! its serving thread for up to an epoch tick at a time, and every other
//! tenant's request on that thread waits behind it. So a call that has used
//! more than its CPU burst moves, at its next tick, to the lane; and a
//! version whose calls hit a limit (timeout, CPU, memory, stack, tables,
//! resources, fuel) or computed that long starts its calls there for a while.
//! The kernel then runs them only on CPU the serving threads leave idle and
//! takes the core back the moment a serving thread wakes: on an idle node
//! they run at full speed, on a busy one they wait, not the well-behaved —
//! and while every core is busy they may wait until their timeout, which is
//! why the lane is off unless asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use crate::store::ClockShared;

/// How long a caller whose deadline passed just as its call ended on the
/// lane waits for that call's answer.
const LATE_ANSWER: std::time::Duration = std::time::Duration::from_millis(20);

/// Calls a lane thread holds at most. A call waiting there for CPU holds
/// its instance's pool slot and memory, and on a node whose cores are all
/// busy it may wait long: past this many, calls stay on their callers'
/// threads, as without the lane, rather than fill the pool.
const MAX_CALLS_PER_THREAD: usize = 64;

/// The lane's threads, started on first use.
pub(crate) struct Lane {
    threads: OnceLock<Vec<LaneThread>>,
    /// Where the next search for the least busy thread starts.
    turn: AtomicUsize,
}

/// One thread of the lane: a single-threaded executor of its own. Not one
/// multi-threaded executor for the lane: its idle workers are woken to
/// steal work every time a computing guest yields (each epoch tick), and
/// those wake-ups land on the cores the serving threads need — measured, a
/// two-thread executor cost the bystanders as much as no lane at all
/// (BENCHMARKS.md).
struct LaneThread {
    handle: tokio::runtime::Handle,
    /// Calls placed on this thread and not yet done.
    calls: Arc<AtomicUsize>,
    /// Dropped with the lane, which ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Lane {
    pub(crate) fn new() -> Self {
        Self {
            threads: OnceLock::new(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The lane's thread with the fewest calls (ties broken in turn, so
    /// that calls moving at once spread out), the lane started now if this
    /// is the first call to go there; `None` if every thread has
    /// [`MAX_CALLS_PER_THREAD`] or none could be started (the call then
    /// stays where it is).
    fn least_busy(&self) -> Option<&LaneThread> {
        let threads = self.threads.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(1, usize::from);
            (0..n)
                .map_while(|i| match LaneThread::start(i) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a low-priority lane thread");
                        None
                    }
                })
                .collect()
        });
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        (0..threads.len())
            .map(|i| &threads[(first + i) % threads.len()])
            .min_by_key(|t| t.calls.load(Ordering::Relaxed))
            .filter(|t| t.calls.load(Ordering::Relaxed) < MAX_CALLS_PER_THREAD)
    }

    /// Runs `call`: on the lane from the start if `start_there`, else here
    /// until its clock finds it heavy (at an epoch tick) and then on the
    /// lane, noting in the clock that it went there. Where the lane has no
    /// room the call runs here. `None` if the call, on the lane, has not
    /// ended by `deadline` (its threads get no CPU while every core is
    /// busy, and a call's own timeout needs them to run): it is dropped,
    /// and its instance with it as soon as the lane runs again. A call given
    /// up on (that deadline, or the caller dropped) while still on the lane
    /// is handed a `hold()`, dropped only after the call and its instance
    /// are: a version lease, so that a drain waits for the instance.
    ///
    /// The call must be `Unpin` — boxed — so that it can move half-run: its
    /// state stays put on the heap and only the box changes hands.
    pub(crate) async fn run<F, H>(
        &self,
        start_there: bool,
        clock: &ClockShared,
        deadline: tokio::time::Instant,
        mut call: F,
        hold: impl FnOnce() -> H + Send + 'static,
    ) -> Option<F::Output>
    where
        F: Future + Send + Unpin + 'static,
        F::Output: Send + 'static,
        H: Send + 'static,
    {
        let mut lane = if start_there { self.least_busy() } else { None };
        if lane.is_none() {
            let here = std::future::poll_fn(|cx| match Pin::new(&mut call).poll(cx) {
                Poll::Ready(out) => Poll::Ready(Some(out)),
                // The clock sets the flag at a tick, where the guest yields;
                // the thread is chosen now, by the load of the moment.
                Poll::Pending if clock.heavy.load(Ordering::Relaxed) => {
                    lane = self.least_busy();
                    if lane.is_some() {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    }
                }
                Poll::Pending => Poll::Pending,
            })
            .await;
            if here.is_some() {
                return here;
            }
            tracing::debug!("call moved to the low-priority lane");
        }
        let lane = lane?;
        clock.on_lane.store(true, Ordering::Relaxed);
        let placed = Placed(lane.calls.clone());
        placed.0.fetch_add(1, Ordering::Relaxed);
        let handover = Arc::new(Handover::default());
        let running = Running {
            call: Some(call),
            handover: handover.clone(),
            _placed: placed,
        };
        let mut task = Abort {
            task: lane.handle.spawn(running),
            handover,
            hold: Some(Box::new(hold)),
        };
        let late = match tokio::time::timeout_at(deadline, &mut task.task).await {
            Ok(Ok(out)) => return Some(out),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(_)) => return None,
            // Ended, or at least counted (the lane records a call just
            // before it ends).
            Err(_) => task.handover.state.lock().0 || clock.recorded.load(Ordering::Acquire),
        };
        // The call ended just as the deadline passed: its answer is on its
        // way (unless the lane thread lost the core right there), take it.
        if !late {
            return None;
        }
        match tokio::time::timeout(LATE_ANSWER, &mut task.task).await {
            Ok(Ok(out)) => Some(out),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled (only the lane's shutdown does that) or late.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl LaneThread {
    fn start(index: usize) -> std::io::Result<Self> {
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The executor is built and dropped on its own thread: dropping one
        // on the caller's, a tokio worker, would panic.
        std::thread::Builder::new()
            .name(format!("wasmswap-low-priority-{index}"))
            .spawn(move || {
                lower_this_thread();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // For the blocking pool's threads (WASI file I/O).
                    .on_thread_start(lower_this_thread)
                    .build();
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(rt.handle().clone()));
                // Runs the calls spawned on the handle until the lane is
                // dropped; the calls still there are dropped with `rt`.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the lane thread ended at start"))??;
        Ok(Self {
            handle,
            calls: Arc::new(AtomicUsize::new(0)),
            _stop: stop,
        })
    }
}

/// Counts a call against its lane thread until it is done or dropped.
struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a call on the lane and its caller share: whether the call is over
/// (its instance dropped), and what the caller left to be dropped after it.
struct Handover<H> {
    state: parking_lot::Mutex<(bool, Option<H>)>,
}

impl<H> Default for Handover<H> {
    fn default() -> Self {
        Self {
            state: parking_lot::Mutex::new((false, None)),
        }
    }
}

/// A call on the lane. Its state (store, instance) is dropped the moment
/// it ends or is cancelled, and only then whatever its caller handed over.
struct Running<F, H> {
    call: Option<F>,
    handover: Arc<Handover<H>>,
    _placed: Placed,
}

impl<F: Future + Unpin, H> Future for Running<F, H> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let Some(call) = self.call.as_mut() else {
            // Polled after its end: tokio never does.
            return Poll::Pending;
        };
        let out = std::task::ready!(Pin::new(call).poll(cx));
        self.finish();
        Poll::Ready(out)
    }
}

impl<F, H> Running<F, H> {
    fn finish(&mut self) {
        // The call's state first, then the caller's hold.
        drop(self.call.take());
        let held = {
            let mut state = self.handover.state.lock();
            state.0 = true;
            state.1.take()
        };
        drop(held);
    }
}

impl<F, H> Drop for Running<F, H> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Cancels the call on the lane when the caller stops waiting for it (the
/// client hung up, or the deadline passed), as dropping the call's future
/// does where it runs here; and, if the call is not over yet, hands it the
/// hold to keep until it is.
struct Abort<T, H> {
    task: tokio::task::JoinHandle<T>,
    handover: Arc<Handover<H>>,
    hold: Option<Box<dyn FnOnce() -> H + Send>>,
}

impl<T, H> Drop for Abort<T, H> {
    fn drop(&mut self) {
        self.task.abort();
        let mut state = self.handover.state.lock();
        if !state.0
            && let Some(hold) = self.hold.take()
        {
            state.1 = Some(hold());
        }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class, below even nice
/// 19: it runs only when no other thread wants the core. Elsewhere the
/// lane's threads keep their normal priority (still off the callers'
/// threads).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn lower_this_thread() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
    // The crate also resets the thread's nice value to 0, which a niced
    // process may not do; what matters is the policy.
    if thread_schedule_policy().ok() != Some(idle) {
        tracing::warn!(error = ?set.err(), "cannot put the low-priority lane's thread in SCHED_IDLE");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lower_this_thread() {}
