//! The dashboard: one self-contained page (inline CSS and JavaScript, no
//! build step) that logs in and drives the REST API from the browser.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /` and `GET /dashboard`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Everything is inline and same-origin: nothing else may load,
            // and the page may not be framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                 form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}
