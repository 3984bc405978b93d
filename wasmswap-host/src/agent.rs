//! The node agent API: what a control plane (or an operator) uses to load,
//! route, check, roll back and unload versions. Bearer token required on
//! everything but `/healthz`.

use std::time::Duration;
use tracing::Instrument as _;

use http::{HeaderValue, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use wasmswap_server::Incoming;

use crate::body::{ApiError, Response, full, json};
use crate::node::{HealthSpec, Node, RouteSpec, VersionSpec};

/// Agent API settings.
#[derive(Clone)]
pub struct AgentConfig {
    /// The bearer token requests must carry.
    pub token: String,
    /// How long an unload waits for calls to finish by default.
    pub drain_timeout: Duration,
    /// Largest request body.
    pub max_body: usize,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("token", &"<redacted>")
            .field("drain_timeout", &self.drain_timeout)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// The agent API of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Agent {
    node: Node,
    config: std::sync::Arc<AgentConfig>,
}

/// Compares digests, so the time taken does not depend on how much of the
/// token was right.
fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Agent {
    /// An agent for `node`.
    pub fn new(node: Node, config: AgentConfig) -> Self {
        Agent {
            node,
            config: std::sync::Arc::new(config),
        }
    }

    /// Answers one request. Never fails: every problem is a response.
    pub async fn handle(&self, req: http::Request<Incoming>) -> Response {
        let span = crate::trace::agent_span(&req);
        let resp = self.handle_untraced(req).instrument(span.clone()).await;
        crate::trace::record_status(&span, resp.status());
        resp
    }

    async fn handle_untraced(&self, req: http::Request<Incoming>) -> Response {
        if req.uri().path() == "/healthz" {
            return json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        if !self.authorized(&req) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer <token>` header is required",
            )
            .response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        self.route(req).await.unwrap_or_else(|e| e.response())
    }

    fn authorized(&self, req: &http::Request<Incoming>) -> bool {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| token_matches(t.trim(), &self.config.token))
    }

    async fn body<T: DeserializeOwned>(
        &self,
        req: http::Request<Incoming>,
        empty_ok: bool,
    ) -> Result<T, ApiError> {
        let bytes =
            crate::body::read_body(req.into_body(), self.config.max_body, "the body").await?;
        let bytes: &[u8] = if bytes.is_empty() && empty_ok {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }

    async fn route(&self, req: http::Request<Incoming>) -> Result<Response, ApiError> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        let not_allowed = || {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            )
        };
        match segments.as_slice() {
            ["metrics"] if method == Method::GET => {
                let mut resp = http::Response::new(full(crate::metrics::render(&self.node)));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(resp)
            }
            ["v1", "status"] if method == Method::GET => {
                Ok(json(StatusCode::OK, &self.node.status()))
            }
            ["v1", "versions"] if method == Method::POST => {
                let spec: VersionSpec = self.body(req, false).await?;
                let status = self.node.load(spec, None).await?;
                Ok(json(StatusCode::CREATED, &status))
            }
            ["v1", "services", service] if method == Method::GET => {
                Ok(json(StatusCode::OK, &self.node.status_of(service)?))
            }
            ["v1", "services", service, "route"] if method == Method::PUT => {
                let service = service.to_string();
                let spec: RouteSpec = self.body(req, false).await?;
                Ok(json(
                    StatusCode::OK,
                    &self.node.set_route(&service, spec).await?,
                ))
            }
            ["v1", "services", service, "rollback"] if method == Method::POST => {
                Ok(json(StatusCode::OK, &self.node.rollback(service).await?))
            }
            ["v1", "services", service, "versions", version] if method == Method::DELETE => {
                let timeout = drain_timeout(req.uri().query()).unwrap_or(self.config.drain_timeout);
                self.node.unload(service, version, timeout).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "unloaded": format!("{service}/{version}") }),
                ))
            }
            ["v1", "services", service, "versions", version, "health"]
                if method == Method::POST =>
            {
                let (service, version) = (service.to_string(), version.to_string());
                let spec: HealthSpec = self.body(req, true).await?;
                Ok(json(
                    StatusCode::OK,
                    &self.node.health(&service, &version, spec).await?,
                ))
            }
            [
                "v1",
                "services",
                service,
                "versions",
                version,
                "invoke",
                function,
            ] if method == Method::POST => {
                let (service, version) = (service.to_string(), version.to_string());
                let function = crate::data::percent_decode(function)?;
                let args: serde_json::Value = self.body(req, true).await?;
                let started = std::time::Instant::now();
                let value = self
                    .node
                    .invoke_version(&service, &version, &function, &args)
                    .await
                    .map_err(ApiError::from)?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "value": value,
                        "version": version,
                        "durationMs": started.elapsed().as_secs_f64() * 1e3,
                    }),
                ))
            }
            ["metrics"]
            | ["v1", "status"]
            | ["v1", "versions"]
            | ["v1", "services", _]
            | ["v1", "services", _, "route" | "rollback"]
            | ["v1", "services", _, "versions", _]
            | ["v1", "services", _, "versions", _, "health"]
            | ["v1", "services", _, "versions", _, "invoke", _] => Err(not_allowed()),
            _ => Err(ApiError::not_found(format!("no endpoint {path}"))),
        }
    }
}

/// `drainTimeoutMs=N` from a query string.
fn drain_timeout(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("drainTimeoutMs="))
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}
