//! Metric analysis of a candidate against the stable version, from the
//! nodes' per-version counters: error and trap ("crash") rates, p95
//! latency, memory high-water; and the A/B decision.
//!
//! The A/B test, stated: first a two-proportion z-test on the error rates
//! (pooled proportion, two-sided). If it is significant at the configured
//! level, the variant with the lower error rate wins. Otherwise a
//! Mann–Whitney U test on latency, computed from the nodes' latency
//! histograms (calls in the same bucket count as ties; normal
//! approximation with the tie correction, two-sided): if significant, the
//! variant whose latencies
//! are stochastically smaller wins. Otherwise there is no winner and the
//! stable version (A) stays. Each test runs at half the significance level
//! (Bonferroni), and neither runs before each variant has served
//! `minSampleSize` calls.

use serde::Serialize;
use wasmswap_core::{CounterSnapshot, ErrorKind};

use super::model::Analysis;

/// Counts of one version over a window (a phase), summed over nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that trapped or overflowed the stack.
    pub crashes: u64,
    /// Calls per latency bucket (core's bucket bounds, plus overflow).
    pub latency_buckets: Vec<u64>,
    /// Largest memory any call reached (over the whole life, not the window).
    pub memory_high_water_bytes: u64,
    /// Calls refused memory beyond the version's limit.
    pub memory_limit_errors: u64,
}

impl Window {
    /// `now - base` (a node's counters since the phase started).
    pub fn between(now: &CounterSnapshot, base: Option<&CounterSnapshot>) -> Self {
        let zero = CounterSnapshot::default();
        // Counters that went backwards were reset (the node restarted):
        // everything since counts.
        let base = base.filter(|b| b.calls <= now.calls).unwrap_or(&zero);
        let crashes = |s: &CounterSnapshot| {
            s.errors_of(ErrorKind::Trap) + s.errors_of(ErrorKind::StackOverflow)
        };
        let buckets = now
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(base.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let over = |s: &CounterSnapshot| s.errors_of(ErrorKind::MemoryLimit);
        // A client hanging up is not the version failing it.
        let errors = |s: &CounterSnapshot| {
            s.errors
                .saturating_sub(s.errors_of(ErrorKind::ClientClosed))
        };
        Window {
            memory_limit_errors: over(now).saturating_sub(over(base)),
            calls: now.calls.saturating_sub(base.calls),
            errors: errors(now).saturating_sub(errors(base)),
            crashes: crashes(now).saturating_sub(crashes(base)),
            latency_buckets: buckets,
            memory_high_water_bytes: now.memory_high_water_bytes,
        }
    }

    /// Adds another node's window.
    pub fn add(&mut self, other: &Window) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.crashes += other.crashes;
        self.memory_limit_errors += other.memory_limit_errors;
        if self.latency_buckets.len() < other.latency_buckets.len() {
            self.latency_buckets.resize(other.latency_buckets.len(), 0);
        }
        for (i, n) in other.latency_buckets.iter().enumerate() {
            self.latency_buckets[i] += n;
        }
        self.memory_high_water_bytes = self
            .memory_high_water_bytes
            .max(other.memory_high_water_bytes);
    }

    /// Errors per call (0 without calls).
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.calls)
    }

    /// Crashes per call.
    pub fn crash_rate(&self) -> f64 {
        ratio(self.crashes, self.calls)
    }

    /// Latency quantile in ms: the upper bound of the bucket holding it.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let snap = CounterSnapshot {
            latency_buckets: self.latency_buckets.clone(),
            ..CounterSnapshot::default()
        };
        snap.latency_quantile(q).map(|d| d.as_secs_f64() * 1e3)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within every threshold.
    Pass,
    /// Over a threshold: the reason.
    Fail(String),
    /// Too few calls to decide: the reason.
    Insufficient(String),
}

/// The numbers behind a decision, for the gate record.
pub fn numbers(candidate: &Window, stable: &Window) -> serde_json::Value {
    serde_json::json!({
        "candidate": {
            "calls": candidate.calls, "errorRate": candidate.error_rate(),
            "crashRate": candidate.crash_rate(), "p95Ms": candidate.latency_ms(0.95),
            "memoryHighWaterBytes": candidate.memory_high_water_bytes,
        },
        "stable": {
            "calls": stable.calls, "errorRate": stable.error_rate(),
            "crashRate": stable.crash_rate(), "p95Ms": stable.latency_ms(0.95),
            "memoryHighWaterBytes": stable.memory_high_water_bytes,
        },
    })
}

/// The automatic-rollback triggers: crash rate, error rate, memory over
/// its limit. `None` while within them (or before enough calls).
pub fn trigger(candidate: &Window, a: &Analysis, memory_limit_bytes: u64) -> Option<String> {
    // The host refuses growth past the limit (so the high-water mark stays
    // at or under it): a refusal is what "over the limit" looks like.
    if candidate.memory_limit_errors > 0 {
        return Some(format!(
            "{} call(s) hit the memory limit of {memory_limit_bytes} bytes",
            candidate.memory_limit_errors
        ));
    }
    if candidate.calls < a.min_sample_size {
        return None;
    }
    if candidate.crash_rate() > a.max_crash_rate {
        return Some(format!(
            "crash rate {:.1} % is over {:.1} % ({} of {} calls)",
            candidate.crash_rate() * 100.0,
            a.max_crash_rate * 100.0,
            candidate.crashes,
            candidate.calls
        ));
    }
    if candidate.error_rate() > a.max_error_rate {
        return Some(format!(
            "error rate {:.1} % is over {:.1} % ({} of {} calls)",
            candidate.error_rate() * 100.0,
            a.max_error_rate * 100.0,
            candidate.errors,
            candidate.calls
        ));
    }
    None
}

/// Candidate against stable between two phases.
pub fn compare(
    candidate: &Window,
    stable: &Window,
    a: &Analysis,
    memory_limit_bytes: u64,
) -> Verdict {
    if let Some(reason) = trigger(candidate, a, memory_limit_bytes) {
        return Verdict::Fail(reason);
    }
    if candidate.calls < a.min_sample_size {
        return Verdict::Insufficient(format!(
            "the candidate served {} calls; {} are needed to decide",
            candidate.calls, a.min_sample_size
        ));
    }
    // Regressions are judged against the stable version when it served
    // enough calls to compare with.
    if stable.calls >= a.min_sample_size {
        if let (Some(c), Some(s)) = (candidate.latency_ms(0.95), stable.latency_ms(0.95))
            && c > s * a.max_latency_ratio + 5.0
        {
            return Verdict::Fail(format!(
                "p95 latency {c:.1} ms is over {:.1}× the stable's {s:.1} ms",
                a.max_latency_ratio
            ));
        }
        let (cm, sm) = (
            candidate.memory_high_water_bytes,
            stable.memory_high_water_bytes,
        );
        if sm > 0 && cm as f64 > sm as f64 * a.max_memory_ratio {
            return Verdict::Fail(format!(
                "memory high-water {cm} bytes is over {:.1}× the stable's {sm}",
                a.max_memory_ratio
            ));
        }
    }
    Verdict::Pass
}

/// Two-sided p-value of a standard normal statistic.
fn p_two_sided(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// Two-proportion z-test on error rates: (z, p).
pub fn error_rate_test(a: &Window, b: &Window) -> (f64, f64) {
    let (n1, n2) = (a.calls as f64, b.calls as f64);
    let pooled = (a.errors + b.errors) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 || !se.is_finite() {
        return (0.0, 1.0);
    }
    let z = (a.error_rate() - b.error_rate()) / se;
    (z, p_two_sided(z))
}

/// Mann–Whitney U on bucketed latencies: (U of A, z, p). z > 0 means A's
/// latencies tend to be larger.
pub fn latency_test(a: &Window, b: &Window) -> (f64, f64, f64) {
    let len = a.latency_buckets.len().max(b.latency_buckets.len());
    let get = |w: &Window, i: usize| w.latency_buckets.get(i).copied().unwrap_or(0) as f64;
    let (n1, n2): (f64, f64) = (
        a.latency_buckets.iter().sum::<u64>() as f64,
        b.latency_buckets.iter().sum::<u64>() as f64,
    );
    if n1 == 0.0 || n2 == 0.0 {
        return (0.0, 0.0, 1.0);
    }
    // U_A counts pairs where A's call was slower than B's, ties as half.
    let mut u = 0.0;
    let mut b_below = 0.0;
    for i in 0..len {
        u += get(a, i) * (b_below + 0.5 * get(b, i));
        b_below += get(b, i);
    }
    let mean = n1 * n2 / 2.0;
    // Tie-corrected variance: with latencies in buckets, most calls tie.
    let n = n1 + n2;
    let ties: f64 = (0..len)
        .map(|i| {
            let t = get(a, i) + get(b, i);
            t * t * t - t
        })
        .sum();
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        return (u, 0.0, 1.0);
    }
    let sd = var.sqrt();
    let z = (u - mean) / sd;
    (u, z, p_two_sided(z))
}

/// The A/B decision: `Some("A")`, `Some("B")`, or `None` for "not enough
/// calls yet"; with the numbers and the reason.
pub fn ab_decide(
    a: &Window,
    b: &Window,
    cfg: &Analysis,
) -> (Option<&'static str>, String, serde_json::Value) {
    let mut nums = numbers(b, a);
    if a.calls < cfg.min_sample_size || b.calls < cfg.min_sample_size {
        return (
            None,
            format!(
                "A served {} and B {} calls; each needs {}",
                a.calls, b.calls, cfg.min_sample_size
            ),
            nums,
        );
    }
    let (z, p) = error_rate_test(a, b);
    let (u, lz, lp) = latency_test(a, b);
    nums["errorRateTest"] = serde_json::json!({ "test": "two-proportion z", "z": z, "p": p });
    nums["latencyTest"] =
        serde_json::json!({ "test": "Mann-Whitney U (tie-corrected)", "u": u, "z": lz, "p": lp });
    // Two tests: each at half the level (Bonferroni).
    let alpha = cfg.significance / 2.0;
    nums["alphaPerTest"] = serde_json::json!(alpha);
    if p < alpha {
        let winner = if b.error_rate() < a.error_rate() {
            "B"
        } else {
            "A"
        };
        return (
            Some(winner),
            format!(
                "error rates differ (A {:.2} %, B {:.2} %, p = {p:.4}): {winner} wins",
                a.error_rate() * 100.0,
                b.error_rate() * 100.0
            ),
            nums,
        );
    }
    if lp < alpha {
        let winner = if lz > 0.0 { "B" } else { "A" };
        return (
            Some(winner),
            format!("latencies differ (Mann-Whitney p = {lp:.4}): {winner} is faster and wins"),
            nums,
        );
    }
    (
        Some("A"),
        format!("no significant difference (error p = {p:.3}, latency p = {lp:.3}): A stays"),
        nums,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(calls: u64, errors: u64, bucket: usize) -> Window {
        let mut latency_buckets = vec![0; 17];
        latency_buckets[bucket] = calls;
        Window {
            calls,
            errors,
            crashes: 0,
            latency_buckets,
            memory_high_water_bytes: 1 << 20,
            memory_limit_errors: 0,
        }
    }

    #[test]
    fn insufficient_data_never_passes() {
        let a = Analysis::default();
        let v = compare(&window(10, 0, 3), &window(1000, 0, 3), &a, 1 << 30);
        assert!(matches!(v, Verdict::Insufficient(_)), "{v:?}");
        assert_eq!(
            compare(&window(100, 2, 3), &window(1000, 5, 3), &a, 1 << 30),
            Verdict::Pass
        );
        let v = compare(&window(100, 20, 3), &window(1000, 0, 3), &a, 1 << 30);
        assert!(
            matches!(v, Verdict::Fail(ref r) if r.contains("error rate")),
            "{v:?}"
        );
        let v = compare(&window(100, 0, 12), &window(1000, 0, 3), &a, 1 << 30);
        assert!(
            matches!(v, Verdict::Fail(ref r) if r.contains("p95")),
            "{v:?}"
        );
        let mut big = window(100, 0, 3);
        big.memory_limit_errors = 1;
        assert!(trigger(&big, &a, 1 << 30).unwrap().contains("memory limit"));
    }

    #[test]
    fn clients_hanging_up_are_not_the_versions_errors() {
        let snap = |calls, traps, closed| CounterSnapshot {
            calls,
            errors: traps + closed,
            errors_by_kind: vec![(ErrorKind::Trap, traps), (ErrorKind::ClientClosed, closed)],
            ..CounterSnapshot::default()
        };
        let w = Window::between(&snap(110, 3, 22), Some(&snap(10, 1, 2)));
        assert_eq!((w.calls, w.errors, w.crashes), (100, 2, 2));
        // Were the 20 hang-ups counted, 22 % errors (over the 10 % limit)
        // would roll the version back.
        assert_eq!(trigger(&w, &Analysis::default(), 1 << 30), None);
    }

    #[test]
    fn ab_picks_the_better_variant() {
        let cfg = Analysis::default();
        // B errs far less: B.
        let (w, why, nums) = ab_decide(&window(1000, 100, 3), &window(1000, 10, 3), &cfg);
        assert_eq!(w, Some("B"), "{why}");
        assert!(nums["errorRateTest"]["p"].as_f64().unwrap() < 0.001);
        // Same errors, B faster: B.
        let (w, why, _) = ab_decide(&window(500, 0, 8), &window(500, 0, 4), &cfg);
        assert_eq!(w, Some("B"), "{why}");
        // Same everything: A stays.
        let (w, why, _) = ab_decide(&window(500, 5, 4), &window(500, 5, 4), &cfg);
        assert_eq!(w, Some("A"));
        assert!(why.contains("no significant"));
        // Not enough calls: no decision.
        let (w, _, _) = ab_decide(&window(10, 0, 4), &window(500, 0, 4), &cfg);
        assert_eq!(w, None);
    }

    #[test]
    fn z_test_matches_a_worked_example() {
        // 45/500 vs 30/500: pooled 0.075, se 0.01666, z 1.80, p 0.072.
        let (z, p) = error_rate_test(&window(500, 45, 1), &window(500, 30, 1));
        assert!((z - 1.80).abs() < 0.01, "{z}");
        assert!((p - 0.072).abs() < 0.002, "{p}");
    }
}
