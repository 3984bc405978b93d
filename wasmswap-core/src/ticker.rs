//! The epoch ticker: one thread per runtime that advances wasmtime's epoch
//! every tick, which is what interrupts a running guest (its deadline, CPU
//! share and timeouts are checked at each tick).
//!
//! It ticks only while calls are in flight, and sleeps once none has been
//! for [`IDLE_TICKS`]: waking every 500 µs cost an idle host ~3 % of a
//! core (measured: 0.57 s of CPU in 20 s, all of it this thread), and the
//! same again for its isolation worker — on a node that serves nothing. A
//! call that finds it asleep wakes it; its first tick comes one tick
//! later, as it would anyway. The grace before sleeping keeps a node with
//! steady traffic from paying a wake-up (a system call) on every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::Engine;

use crate::error::{Error, Result};

/// Ticks with no call in flight before the ticker sleeps (100 ms at the
/// default 500 µs tick).
const IDLE_TICKS: u32 = 200;

/// The ticker thread's handle; dropping it ends the thread.
pub(crate) struct Ticker {
    shared: Arc<Shared>,
}

struct Shared {
    /// Calls in flight ([`Ticking`] guards alive).
    running: AtomicUsize,
    stop: AtomicBool,
    thread: thread::Thread,
    /// Ticks so far.
    ticks: AtomicU64,
}

/// Keeps the ticker ticking for as long as it lives: held by each call's
/// store.
pub(crate) struct Ticking {
    shared: Arc<Shared>,
}

impl Ticker {
    /// Starts the thread, advancing `engine`'s epoch every `tick` while a
    /// call is in flight.
    pub(crate) fn spawn(engine: Engine, tick: Duration) -> Result<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Arc<Shared>>(1);
        let handle = thread::Builder::new()
            .name("wasmswap-epoch".into())
            .spawn(move || {
                let Ok(shared) = receiver.recv() else {
                    return;
                };
                // Asleep from the start: no call yet.
                let mut idle = IDLE_TICKS;
                while !shared.stop.load(Ordering::Acquire) {
                    if shared.running.load(Ordering::Acquire) > 0 {
                        idle = 0;
                    } else if idle >= IDLE_TICKS {
                        // Woken by the next call's `enter` (or the stop);
                        // an unpark that came first makes this return at
                        // once, so no call is missed.
                        thread::park();
                        continue;
                    } else {
                        idle += 1;
                    }
                    thread::sleep(tick);
                    engine.increment_epoch();
                    shared.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::Internal(format!("spawning epoch ticker: {e}")))?;
        let shared = Arc::new(Shared {
            running: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            thread: handle.thread().clone(),
            ticks: AtomicU64::new(0),
        });
        // Only fails if the thread is gone, which it is not before this.
        let _ = sender.send(shared.clone());
        Ok(Ticker { shared })
    }

    /// A call starts: the ticker ticks until the guard is dropped.
    pub(crate) fn enter(&self) -> Ticking {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.shared.thread.unpark();
        }
        Ticking {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.thread.unpark();
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Ticking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticking").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_ticks_only_while_a_call_is_in_flight() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let tick = Duration::from_millis(1);
        let ticker = Ticker::spawn(engine, tick).unwrap();
        let ticks = || ticker.shared.ticks.load(Ordering::Relaxed);
        // Stopped ticking: no tick over 30 ticks' time, within 5 s (the
        // grace is 200 ticks; a loaded machine sleeps long).
        let settled = || {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let before = ticks();
                thread::sleep(tick * 30);
                if ticks() == before {
                    return before;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still ticking with no call in flight"
                );
            }
        };
        assert_eq!(settled(), 0, "ticked before any call");
        let ticking = ticker.enter();
        thread::sleep(tick * 30);
        assert!(ticks() > 0, "did not tick with a call in flight");
        drop(ticking);
        let after_first = settled();
        // And again for the next call.
        let _ticking = ticker.enter();
        thread::sleep(tick * 30);
        assert!(ticks() > after_first, "did not tick for a second call");
    }
}
