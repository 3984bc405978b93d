//! `GET /metrics`: the node's counters in the Prometheus text format, with
//! the metric names the seed's dashboards use, labelled by service and
//! version.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmswap_core::{ErrorKind, LATENCY_BUCKETS_US, LoadSource};

use crate::node::{Node, ServiceStatus, VersionStatus};

/// Upper bounds of the load-duration buckets, in seconds.
const LOAD_BUCKETS_S: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// Histogram of version load times, by where the code came from.
#[derive(Debug, Default)]
pub struct LoadHistogram {
    // [source][bucket], the last bucket being +Inf.
    buckets: [[AtomicU64; LOAD_BUCKETS_S.len() + 1]; 3],
    sum_us: [AtomicU64; 3],
}

fn source_index(s: LoadSource) -> usize {
    match s {
        LoadSource::Compiled => 0,
        LoadSource::Disk => 1,
        LoadSource::Memory => 2,
    }
}

const SOURCES: [&str; 3] = ["compiled", "disk", "memory"];

impl LoadHistogram {
    /// Records one load.
    pub fn observe(&self, source: LoadSource, took: Duration) {
        let i = source_index(source);
        let secs = took.as_secs_f64();
        let b = LOAD_BUCKETS_S
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LOAD_BUCKETS_S.len());
        self.buckets[i][b].fetch_add(1, Ordering::Relaxed);
        self.sum_us[i].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Escapes a label value (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One sample per service and version.
fn per_version(
    out: &mut String,
    services: &[ServiceStatus],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&VersionStatus) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for s in services {
        for v in &s.versions {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",version=\"{}\"}} {}",
                label(&s.name),
                label(&v.version),
                value(v)
            );
        }
    }
}

/// Renders every metric of `node`.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    let services = node.status();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };

    header(
        &mut out,
        "wasm_modules_count",
        "gauge",
        "Versions loaded on this node.",
    );
    let _ = writeln!(out, "wasm_modules_count {}", node.version_count());

    per_version(
        &mut out,
        &services,
        "wasm_functions_invoked_total",
        "counter",
        "Calls completed, by service and version.",
        |v| v.counters.calls,
    );

    header(
        &mut out,
        "wasm_function_errors_total",
        "counter",
        "Calls that failed, by service, version and kind.",
    );
    for s in &services {
        for v in &s.versions {
            for kind in ErrorKind::ALL {
                let n = v.counters.errors_of(kind);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "wasm_function_errors_total{{service=\"{}\",version=\"{}\",kind=\"{}\"}} {n}",
                        label(&s.name),
                        label(&v.version),
                        kind.as_str()
                    );
                }
            }
        }
    }

    header(
        &mut out,
        "wasm_function_invoke_duration",
        "histogram",
        "Call latency in seconds, by service and version.",
    );
    for s in &services {
        for v in &s.versions {
            let labels = format!(
                "service=\"{}\",version=\"{}\"",
                label(&s.name),
                label(&v.version)
            );
            let mut cumulative = 0;
            for (i, n) in v.counters.latency_buckets.iter().enumerate() {
                cumulative += n;
                let le = match LATENCY_BUCKETS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    out,
                    "wasm_function_invoke_duration_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "wasm_function_invoke_duration_sum{{{labels}}} {}",
                v.counters.latency_sum_us as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "wasm_function_invoke_duration_count{{{labels}}} {cumulative}"
            );
        }
    }

    per_version(
        &mut out,
        &services,
        "wasm_in_flight",
        "gauge",
        "Calls running now, by service and version.",
        |v| v.in_flight,
    );

    per_version(
        &mut out,
        &services,
        "wasm_memory_high_water_bytes",
        "gauge",
        "Largest linear memory any call reached, by service and version.",
        |v| v.counters.memory_high_water_bytes,
    );

    per_version(
        &mut out,
        &services,
        "wasm_low_priority_calls_total",
        "counter",
        "Calls run on the low-priority lane (they computed for long, or the version had just hit its limits), by service and version.",
        |v| v.counters.low_priority_calls,
    );

    per_version(
        &mut out,
        &services,
        "wasm_fuel_consumed_total",
        "counter",
        "Fuel consumed (when metered), by service and version.",
        |v| v.counters.fuel_consumed,
    );

    header(
        &mut out,
        "wasm_route_weight_percent",
        "gauge",
        "Share of calls each version of a service is routed (100 for the stable version without a candidate).",
    );
    for s in &services {
        if let Some(r) = &s.route {
            let (stable, cand) = match &r.candidate {
                Some(c) if r.mode == crate::node::RouteMode::Split => {
                    (100.0 - r.weight_percent, Some((c, r.weight_percent)))
                }
                _ => (100.0, None),
            };
            let _ = writeln!(
                out,
                "wasm_route_weight_percent{{service=\"{}\",version=\"{}\"}} {stable}",
                label(&s.name),
                label(&r.stable)
            );
            if let Some((c, w)) = cand {
                let _ = writeln!(
                    out,
                    "wasm_route_weight_percent{{service=\"{}\",version=\"{}\"}} {w}",
                    label(&s.name),
                    label(c)
                );
            }
        }
    }

    header(
        &mut out,
        "wasm_module_load_duration",
        "histogram",
        "Time to load a version in seconds, by where its code came from.",
    );
    let h = node.load_histogram();
    for (i, source) in SOURCES.iter().enumerate() {
        let mut cumulative = 0;
        for (b, count) in h.buckets[i].iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LOAD_BUCKETS_S
                .get(b)
                .map_or("+Inf".to_string(), |s| s.to_string());
            let _ = writeln!(
                out,
                "wasm_module_load_duration_bucket{{source=\"{source}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "wasm_module_load_duration_sum{{source=\"{source}\"}} {}",
            h.sum_us[i].load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "wasm_module_load_duration_count{{source=\"{source}\"}} {cumulative}"
        );
    }
    out
}
