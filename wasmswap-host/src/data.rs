//! The data plane: requests to services by `Host` or `/{service}/…`, served
//! by wasi-http components, and `POST /_invoke/{service}/{function}` JSON calls.

use std::collections::HashMap;
use tracing::Instrument as _;

use http::header::{COOKIE, HOST};
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use wasmswap_server::Incoming;

use crate::body::{ApiError, BoxError, Response, json};
use crate::node::Node;

/// The response header naming the version that answered.
pub const VERSION_HEADER: &str = "x-wasmswap-version";

/// Where a request's sticky key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header.
    Header(HeaderName),
    /// A cookie, by name.
    Cookie(String),
}

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Where the sticky key comes from.
    pub sticky: StickyKey,
    /// `Host` names (without port) mapped to services.
    pub hosts: HashMap<String, String>,
    /// Largest JSON body for `/_invoke`.
    pub max_invoke_body: usize,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            sticky: StickyKey::Header(HeaderName::from_static("x-wasmswap-key")),
            hosts: HashMap::new(),
            max_invoke_body: 1 << 20,
        }
    }
}

/// The data plane of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DataPlane {
    node: Node,
    config: std::sync::Arc<DataPlaneConfig>,
}

impl DataPlane {
    /// A data plane for `node`.
    pub fn new(node: Node, config: DataPlaneConfig) -> Self {
        DataPlane {
            node,
            config: std::sync::Arc::new(config),
        }
    }

    fn sticky_key(&self, req: &http::Request<Incoming>) -> Option<String> {
        match &self.config.sticky {
            StickyKey::Header(h) => req.headers().get(h)?.to_str().ok().map(str::to_string),
            StickyKey::Cookie(name) => req.headers().get_all(COOKIE).iter().find_map(|v| {
                v.to_str().ok()?.split(';').find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    // RFC 6265 allows a quoted value.
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    (k == name).then(|| v.to_string())
                })
            }),
        }
    }

    /// Answers one request. Never fails: every problem is a response.
    pub async fn handle(&self, req: http::Request<Incoming>) -> Response {
        let span = crate::trace::data_span(&req);
        let resp = self.handle_untraced(req).instrument(span.clone()).await;
        crate::trace::record_status(&span, resp.status());
        resp
    }

    async fn handle_untraced(&self, req: http::Request<Incoming>) -> Response {
        let result = if let Some(rest) = req.uri().path().strip_prefix("/_invoke/") {
            let rest = rest.to_string();
            self.invoke(req, &rest).await
        } else {
            self.http(req).await
        };
        result.unwrap_or_else(|e| e.response())
    }

    async fn invoke(&self, req: http::Request<Incoming>, rest: &str) -> Result<Response, ApiError> {
        let (service, function) = rest
            .split_once('/')
            .filter(|(s, f)| !s.is_empty() && !f.is_empty())
            .ok_or_else(|| ApiError::bad_request("use POST /_invoke/{service}/{function}"))?;
        if req.method() != Method::POST {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST for /_invoke",
            ));
        }
        let function = percent_decode(function)?;
        let svc = self
            .node
            .service(service)
            .ok_or_else(|| ApiError::not_found(format!("no service named {service:?}")))?;
        let key = self.sticky_key(&req);
        let body = crate::body::read_body(
            req.into_body(),
            self.config.max_invoke_body,
            "the arguments",
        )
        .await?;
        let args: serde_json::Value = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?
        };
        let (label, served) = svc
            .invoke_json_labelled(key.as_deref(), &function, &args)
            .await;
        // Errors carry the version that produced them, like answers do.
        let mut resp = match served {
            Ok(served) => json(StatusCode::OK, &served.value),
            Err(e) => ApiError::public(service, e).response(),
        };
        set_version(&mut resp, &label);
        Ok(resp)
    }

    /// The service a plain HTTP request is for, and the URI the guest sees.
    fn route_http(&self, req: &http::Request<Incoming>) -> Result<(String, Uri), ApiError> {
        let host = req
            .uri()
            .host()
            .map(str::to_string)
            .or_else(|| {
                let h = req.headers().get(HOST)?.to_str().ok()?;
                Some(h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
            })
            .map(|h| h.to_ascii_lowercase());
        if let Some(service) = host.and_then(|h| self.config.hosts.get(&h)) {
            return Ok((service.clone(), req.uri().clone()));
        }
        // `/{service}/rest?q`: the guest sees `/rest?q`.
        let path = req.uri().path();
        let trimmed = path.trim_start_matches('/');
        let (service, rest) = trimmed
            .split_once('/')
            .map_or((trimmed, ""), |(s, r)| (s, r));
        if service.is_empty() {
            return Err(ApiError::not_found(
                "no service: request /{service}/… or use a configured Host",
            ));
        }
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let pq = format!("/{rest}{query}");
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            pq.parse()
                .map_err(|_| ApiError::bad_request("bad request path"))?,
        );
        if parts.scheme.is_none() {
            parts.scheme = Some(http::uri::Scheme::HTTP);
        }
        if parts.authority.is_none() {
            let authority = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            parts.authority = Some(
                authority
                    .parse()
                    .map_err(|_| ApiError::bad_request("bad Host header"))?,
            );
        }
        let uri = Uri::from_parts(parts).map_err(|_| ApiError::bad_request("bad request URI"))?;
        Ok((service.to_string(), uri))
    }

    async fn http(&self, req: http::Request<Incoming>) -> Result<Response, ApiError> {
        let (service, uri) = self.route_http(&req)?;
        let svc = self
            .node
            .service(&service)
            .ok_or_else(|| ApiError::not_found(format!("no service named {service:?}")))?;
        let key = self.sticky_key(&req);
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        // The guest sees this node's span as its parent, so calls it makes
        // (and its logs) continue the caller's trace.
        wasmswap_telemetry::inject(&tracing::Span::current(), &mut parts.headers);
        let req = http::Request::from_parts(parts, body);
        let served = svc
            .handle(key.as_deref(), req)
            .await
            .map_err(|e| ApiError::public(&service, e))?;
        let (parts, body) = served.value.into_parts();
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
        let mut resp = http::Response::from_parts(parts, body);
        set_version(&mut resp, &served.version);
        Ok(resp)
    }
}

fn set_version(resp: &mut Response, version: &str) {
    if let Ok(v) = HeaderValue::from_str(version) {
        resp.headers_mut().insert(VERSION_HEADER, v);
    }
}

/// Decodes `%XX` escapes (function names may hold `:`, `/`, `@`, `#`).
pub(crate) fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::bad_request(format!("bad escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("{s:?} is not UTF-8")))
}
