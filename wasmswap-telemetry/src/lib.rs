//! Tracing for the wasmswap binaries.
//!
//! - [`init`] installs the process's subscriber: text or JSON logs
//!   (`RUST_LOG` filters, `info` by default) and an OpenTelemetry layer.
//!   Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the protocol, headers
//!   and timeout follow the standard `OTEL_EXPORTER_OTLP_*` variables
//!   (`http/protobuf` by default, `http/json` accepted). Without an endpoint
//!   spans still get W3C trace ids, so logs and propagation work the same.
//! - [`accept_parent`] and [`inject`] carry the W3C `traceparent` across
//!   HTTP hops (control plane → node agent → guest). They do nothing until a
//!   binary calls [`init`], so libraries can call them unconditionally.
//!
//! Only binaries call [`init`]; libraries just create spans.

use http::HeaderMap;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the spans (and their `trace_id`).
    Json,
}

/// The installed tracing; flushes exported spans when shut down or dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing spans at shutdown failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the environment asks for OTLP export.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Installs the global subscriber and the W3C trace-context propagator.
/// `service` names this process in exported spans unless `OTEL_SERVICE_NAME`
/// says otherwise; `default_filter` applies when `RUST_LOG` is not set.
/// Fails if a subscriber is installed already or the OTLP exporter cannot
/// be built from the environment.
pub fn init(service: &str, format: LogFormat, default_filter: &str) -> anyhow::Result<Telemetry> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let exporting = otlp_configured();
    let mut builder = SdkTracerProvider::builder();
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| anyhow::anyhow!("building the OTLP span exporter: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let provider = builder.with_resource(resource.build()).build();
    let tracer = provider.tracer("wasmswap");
    global::set_tracer_provider(provider.clone());

    // Logs follow RUST_LOG; spans are exported from wasmswap's own crates at
    // info whatever the log level, so a quiet terminal still yields traces
    // (and dependencies' internals do not flood the collector).
    let log_filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
    };
    let span_filter = Targets::new().with_default(LevelFilter::WARN).with_targets(
        [
            "wasmswap_core",
            "wasmswap_host",
            "wasmswap_control",
            "wasmswap_cli",
        ]
        .map(|t| (t, LevelFilter::INFO)),
    );
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(span_filter);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the tracing subscriber: {e}"))?;
    Ok(Telemetry {
        provider: Some(provider),
        exporting,
    })
}

/// Makes `span` a child of the W3C trace context in `headers`, when there is
/// a valid one, and records the span's trace id in its `trace_id` field
/// (declare it `trace_id = tracing::field::Empty` for logs to show it).
pub fn accept_parent(span: &Span, headers: &HeaderMap) {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started: then it
        // simply stays a root.
        let _ = span.set_parent(parent);
    }
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id);
    }
}

/// For listeners open to untrusted clients: keeps `span` a root of its own
/// trace (a client cannot choose the trace id, its sampling decision or the
/// `tracestate` handed on) and records the context the client sent, if
/// any, as a span link. Records `trace_id` like [`accept_parent`].
pub fn link_remote(span: &Span, headers: &HeaderMap) {
    let remote = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let sc = remote.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id);
    }
}

/// Writes `span`'s context into `headers` as `traceparent` (and
/// `tracestate`), replacing what was there.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    let cx: Context = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// The W3C trace id of `span` (32 hex digits), if it has one.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
