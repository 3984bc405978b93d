//! The dashboard: one self-contained page (inline CSS and JavaScript, no
//! build step) that logs in and drives the REST API from the browser.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("dashboard.html");

/// The Content-Security-Policy: only the page's own `<script>` and
/// `<style>` blocks run (by hash, so an injected inline script or style
/// would not), it talks only to this origin, and it may not be framed.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hashes(PAGE, "script"),
        hashes(PAGE, "style")
    )
});

/// `'sha256-…'` of the contents of every `<tag>…</tag>` block in `page`.
fn hashes(page: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        out.push(format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        rest = &body[end + close.len()..];
    }
    if out.is_empty() {
        "'none'".into()
    } else {
        out.join(" ")
    }
}

/// `GET /` and `GET /dashboard`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_exactly_the_page_blocks() {
        assert_eq!(hashes(PAGE, "script").matches("'sha256-").count(), 1);
        assert_eq!(hashes(PAGE, "style").matches("'sha256-").count(), 1);
        assert!(!CSP.contains("unsafe-inline"));
        assert_eq!(hashes("<p>none</p>", "script"), "'none'");
    }
}
