//! Wall-clock time behind a handle, so heartbeat timeouts and token expiry
//! can be tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unix milliseconds, from the system or set by a test.
#[derive(Debug, Clone)]
pub struct Clock(Option<Arc<AtomicI64>>, Option<(i64, tokio::time::Instant)>);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None, None)
    }

    /// A clock that only moves when told to, starting at `ms`.
    pub fn manual(ms: i64) -> Self {
        Self(Some(Arc::new(AtomicI64::new(ms))), None)
    }

    /// A clock at `ms` that moves with tokio's clock: under
    /// `tokio::time::pause()` it jumps when tokio's time is advanced.
    pub fn tokio(ms: i64) -> Self {
        Self(None, Some((ms, tokio::time::Instant::now())))
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        if let Some((base, start)) = self.1 {
            return base + i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
        }
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance_ms(&self, ms: i64) {
        if let Some(t) = &self.0 {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }
}
