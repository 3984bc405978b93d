//! Request spans for the node's two listeners, continuing the caller's W3C
//! trace context (`traceparent`), with OpenTelemetry's HTTP field names.

use tracing::Span;
use tracing::field::Empty;
use wasmswap_server::Incoming;

/// A server span for one request on the agent API: a child of the trace
/// the caller (the control plane) sent. Named by method and path: the
/// agent's paths are few (services and versions the operator loaded).
pub(crate) fn agent_span(req: &http::Request<Incoming>) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        wasm.node.plane = "agent",
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
    );
    wasmswap_telemetry::accept_parent(&span, req.headers());
    span
}

/// A server span for one request on the public data plane. Its clients are
/// untrusted: the span starts its own trace and links the one a client
/// sent, and its name is the method alone (paths are the client's choice).
pub(crate) fn data_span(req: &http::Request<Incoming>) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        wasm.node.plane = "data",
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
    );
    wasmswap_telemetry::link_remote(&span, req.headers());
    span
}

/// Records the answer's status on `span`.
pub(crate) fn record_status(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
