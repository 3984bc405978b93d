//! The control plane's own Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: String,
}

/// Counters and histograms, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub executions: Family<OutcomeLabels, Counter>,
    pub rate_limited: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0])
        });
        let executions = Family::<OutcomeLabels, Counter>::default();
        let rate_limited = Counter::default();
        registry.register(
            "wasmswap_control_http_requests",
            "API requests by route and status",
            requests.clone(),
        );
        registry.register(
            "wasmswap_control_http_request_duration_seconds",
            "API request latency",
            latency.clone(),
        );
        registry.register(
            "wasmswap_control_executions",
            "Function executions by outcome",
            executions.clone(),
        );
        registry.register(
            "wasmswap_control_rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            executions,
            rate_limited,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
