//! Lock-free per-version counters, read as a [`CounterSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// Upper bounds of the latency histogram buckets, in microseconds (the last
/// bucket is everything above). Roughly ×2.5 steps from 50 µs to 60 s, which
/// covers a fresh-instance call and a call that hits a long timeout.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 10_000_000, 60_000_000,
];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    by_kind: [AtomicU64; ErrorKind::ALL.len()],
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    fuel_consumed: AtomicU64,
    memory_high_water: AtomicU64,
    mirror: [AtomicU64; 3],
    low_priority: AtomicU64,
}

/// How a mirrored call compared with the stable version's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MirrorOutcome {
    Equal = 0,
    Different = 1,
    Failed = 2,
}

impl Counters {
    pub(crate) fn record(
        &self,
        latency: Duration,
        outcome: Option<ErrorKind>,
        fuel: u64,
        memory: u64,
    ) {
        self.calls.fetch_add(1, Relaxed);
        if let Some(kind) = outcome {
            self.errors.fetch_add(1, Relaxed);
            self.by_kind[kind.index()].fetch_add(1, Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        self.fuel_consumed.fetch_add(fuel, Relaxed);
        self.memory_high_water.fetch_max(memory, Relaxed);
    }

    pub(crate) fn record_low_priority(&self) {
        self.low_priority.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_mirror(&self, outcome: MirrorOutcome) {
        self.mirror[outcome as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            calls: self.calls.load(Relaxed),
            errors: self.errors.load(Relaxed),
            errors_by_kind: ErrorKind::ALL
                .iter()
                .map(|k| (*k, self.by_kind[k.index()].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            latency_buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            latency_sum_us: self.latency_sum_us.load(Relaxed),
            fuel_consumed: self.fuel_consumed.load(Relaxed),
            memory_high_water_bytes: self.memory_high_water.load(Relaxed),
            mirror_equal: self.mirror[MirrorOutcome::Equal as usize].load(Relaxed),
            mirror_different: self.mirror[MirrorOutcome::Different as usize].load(Relaxed),
            mirror_failed: self.mirror[MirrorOutcome::Failed as usize].load(Relaxed),
            low_priority_calls: self.low_priority.load(Relaxed),
        }
    }
}

/// A point-in-time copy of a version's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    /// Calls completed (successfully or not).
    pub calls: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Errors by kind (traps, timeouts, limits, bad arguments, ...); kinds
    /// with no errors are left out.
    pub errors_by_kind: Vec<(ErrorKind, u64)>,
    /// Call counts per latency bucket; bounds in [`LATENCY_BUCKETS_US`], plus
    /// one overflow bucket.
    pub latency_buckets: Vec<u64>,
    /// Sum of all call latencies, in microseconds.
    pub latency_sum_us: u64,
    /// Fuel consumed by all calls (when fuel is enabled).
    pub fuel_consumed: u64,
    /// Largest linear memory any call reached, in bytes.
    pub memory_high_water_bytes: u64,
    /// Mirrored calls (this version as the mirror) whose answer equalled the
    /// stable version's.
    pub mirror_equal: u64,
    /// Mirrored calls whose answer differed from the stable version's.
    pub mirror_different: u64,
    /// Mirrored calls that failed where the stable version answered (or
    /// answered where it failed).
    pub mirror_failed: u64,
    /// Calls that ran, from their start or from an epoch tick on, on the
    /// runtime's low-priority lane
    /// ([`RuntimeConfig::low_priority_lane`](crate::RuntimeConfig::low_priority_lane)):
    /// they computed for long, or this version had just hit its limits.
    #[serde(default)]
    pub low_priority_calls: u64,
}

impl CounterSnapshot {
    /// Errors of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Latency quantile (0.0–1.0) estimated from the histogram: the upper bound
    /// of the bucket holding that rank. `None` before any call.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX);
                return Some(Duration::from_micros(us));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outcomes_and_latency() {
        let c = Counters::default();
        c.record(Duration::from_micros(40), None, 0, 65536);
        c.record(
            Duration::from_micros(700),
            Some(ErrorKind::Timeout),
            0,
            131072,
        );
        c.record(Duration::from_secs(100), Some(ErrorKind::Trap), 0, 0);
        let s = c.snapshot();
        assert_eq!((s.calls, s.errors), (3, 2));
        assert_eq!(s.errors_of(ErrorKind::Timeout), 1);
        assert_eq!(s.errors_of(ErrorKind::MemoryLimit), 0);
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[4], 1);
        assert_eq!(*s.latency_buckets.last().unwrap(), 1);
        assert_eq!(s.memory_high_water_bytes, 131072);
        assert_eq!(s.latency_quantile(0.3), Some(Duration::from_micros(50)));
        assert_eq!(s.latency_quantile(0.5), Some(Duration::from_micros(1000)));
    }
}
