//! The client side of the node agent API (`wasmswap-host`).

use std::time::Duration;
use tracing::Instrument as _;

use serde::Deserialize;

use crate::model::{Module, Node};

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No connection: the request never reached the node.
    #[error("node {node}: connection failed")]
    Connect {
        /// Node id.
        node: String,
    },
    /// No answer in time (the call may have run).
    #[error("node {node}: timed out")]
    Timeout {
        /// Node id.
        node: String,
    },
    /// The exchange broke after the request was sent, or the answer was
    /// unreadable (the call may have run).
    #[error("node {node}: {reason}")]
    Transport {
        /// Node id.
        node: String,
        /// What happened (for the log).
        reason: String,
    },
    /// The node answered with an error.
    #[error("node {node} answered {status}: {code}: {message}")]
    Refused {
        /// Node id.
        node: String,
        /// HTTP status.
        status: u16,
        /// The node's error code.
        code: String,
        /// The node's message.
        message: String,
    },
}

impl AgentError {
    /// Whether another node should be tried: the call certainly did not
    /// run (no connection; the node is overloaded, out of room, or failed
    /// before the guest ran). Not after a timeout or a broken answer — the
    /// guest may have run, and a call is not assumed safe to repeat — nor
    /// when the guest or the request is at fault.
    pub fn worth_failover(&self) -> bool {
        match self {
            AgentError::Connect { .. } => true,
            AgentError::Timeout { .. } | AgentError::Transport { .. } => false,
            AgentError::Refused { status, code, .. } => {
                matches!(*status, 502 | 503 | 507) || (*status == 500 && code == "internal")
            }
        }
    }

    /// A short reason for clients, without addresses or node internals.
    pub fn reason_code(&self) -> String {
        match self {
            AgentError::Connect { .. } => "connect_failed".into(),
            AgentError::Timeout { .. } => "timeout".into(),
            AgentError::Transport { .. } => "transport_error".into(),
            AgentError::Refused { status, code, .. } => format!("{status} {code}"),
        }
    }

    /// The node it concerns.
    pub fn node(&self) -> &str {
        match self {
            AgentError::Connect { node }
            | AgentError::Timeout { node }
            | AgentError::Transport { node, .. }
            | AgentError::Refused { node, .. } => node,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}
#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    message: String,
}

/// What a node answered to an invocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoked {
    /// The function's result as JSON.
    pub value: serde_json::Value,
    /// Time spent in the node.
    pub duration_ms: f64,
}

/// Calls node agents with the shared token.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    token: String,
    /// Loads fetch and compile a binary: they get longer than other calls.
    load_timeout: Duration,
}

impl AgentClient {
    /// A client sending `token`, giving up on a call after `timeout`.
    pub fn new(token: String, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            token,
            load_timeout: timeout.max(Duration::from_secs(120)),
        }
    }

    /// Gives up on a load (fetch and compile on the node) after `timeout`
    /// instead of the default 120 s (or the call timeout, if longer).
    pub fn with_load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// One call to a node's agent API (the engine's driver uses it).
    pub(crate) async fn request(
        &self,
        node: &Node,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, AgentError> {
        self.send(node, method, path, body, None).await
    }

    async fn post(
        &self,
        node: &Node,
        path: &str,
        body: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, AgentError> {
        self.send(node, reqwest::Method::POST, path, Some(body), timeout)
            .await
    }

    async fn send(
        &self,
        node: &Node,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, AgentError> {
        let url = format!("{}{path}", node.agent_url.trim_end_matches('/'));
        let span = tracing::info_span!(
            "wasm.agent.call",
            otel.name = %format!("{method} {path}"),
            otel.kind = "client",
            http.request.method = %method,
            url.full = %url,
            wasm.node.id = %node.node_id,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // The node continues this trace (and hands it on to the guest).
        let mut headers = reqwest::header::HeaderMap::new();
        wasmswap_telemetry::inject(&span, &mut headers);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .headers(headers);
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().instrument(span.clone()).await.map_err(|e| {
            span.record("otel.status_code", "ERROR");
            let node = node.node_id.clone();
            if e.is_connect() {
                AgentError::Connect { node }
            } else if e.is_timeout() {
                AgentError::Timeout { node }
            } else {
                AgentError::Transport {
                    node,
                    reason: e.to_string(),
                }
            }
        })?;
        span.record(
            "http.response.status_code",
            i64::from(resp.status().as_u16()),
        );
        if !resp.status().is_success() {
            span.record("otel.status_code", "ERROR");
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unknown".into(), "no error body".into()),
        };
        Err(AgentError::Refused {
            node: node.node_id.clone(),
            status,
            code,
            message,
        })
    }

    /// Loads a module version on a node (service = module name, version
    /// label = module version); the node fetches the binary from
    /// `binary_url` unless it holds it, and verifies its SHA-256.
    pub async fn load(
        &self,
        node: &Node,
        module: &Module,
        binary_url: &str,
    ) -> Result<(), AgentError> {
        let limits = serde_json::json!({
            "maxMemoryMB": module.limits.max_memory_mb,
            "maxCpuPercent": module.limits.max_cpu_percent,
            "timeoutMs": u64::from(module.limits.max_execution_time_seconds) * 1000,
        });
        let spec = serde_json::json!({
            "service": module.name,
            "version": module.version,
            "sha256": module.checksum,
            "url": binary_url,
            "limits": limits,
        });
        self.post(node, "/v1/versions", &spec, Some(self.load_timeout))
            .await
            .map(drop)
    }

    /// Calls `function` of a loaded module version with JSON arguments.
    pub async fn invoke(
        &self,
        node: &Node,
        module: &Module,
        function: &str,
        args: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Invoked, AgentError> {
        let path = format!(
            "/v1/services/{}/versions/{}/invoke/{}",
            module.name,
            module.version,
            urlencode(function)
        );
        let resp = self.post(node, &path, args, Some(timeout)).await?;
        resp.json::<Invoked>().await.map_err(|e| {
            let node = node.node_id.clone();
            if e.is_timeout() {
                AgentError::Timeout { node }
            } else {
                AgentError::Transport {
                    node,
                    reason: format!("unreadable answer: {e}"),
                }
            }
        })
    }
}

/// Percent-encodes a path segment (function names carry `:`, `/`, `#`, `@`).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
