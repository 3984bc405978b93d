//! Request spans for the node's two listeners, continuing the caller's W3C
//! trace context (`traceparent`), with OpenTelemetry's HTTP field names.

use hyper::body::Incoming;
use tracing::Span;
use tracing::field::Empty;

/// A server span for one request on `plane` (`agent` or `data`), a child of
/// the trace the caller sent, if any.
pub(crate) fn server_span(plane: &'static str, req: &http::Request<Incoming>) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        wasm.node.plane = plane,
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.response.status_code = Empty,
        trace_id = Empty,
    );
    wasmswap_telemetry::accept_parent(&span, req.headers());
    span
}

/// Records the answer's status on `span`.
pub(crate) fn record_status(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
