//! The control-plane client: registers the node, then sends heartbeats with
//! its services, versions and counters. The data plane never waits on it:
//! when the control plane is unreachable the node keeps serving its last
//! routes and keeps trying.
//!
//! Protocol (JSON, `Authorization: Bearer <shared token>`):
//! - `POST {base}/api/v1/wasm/nodes` with a [`Registration`]; any 2xx is accepted.
//! - `POST {base}/api/v1/wasm/nodes/{nodeId}/heartbeat` with a [`Heartbeat`];
//!   a 404 means the control plane forgot the node, which registers again.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::node::{Node, ServiceStatus};

/// What a node tells the control plane about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Unique node id.
    pub node_id: String,
    /// Region (placement unit of the Regional strategy).
    pub region: String,
    /// Zone within the region.
    pub zone: String,
    /// How much it can hold.
    pub capacity: Capacity,
    /// `wasmswap-host` and wasmtime versions.
    pub runtime_version: String,
    /// WASI worlds it runs: `preview1`, `preview2`, `http`.
    pub wasi_support: Vec<String>,
    /// Where the control plane reaches the agent API.
    pub agent_url: String,
    /// Where clients reach the data plane.
    pub data_url: String,
}

/// Node capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Versions it will hold at once.
    pub max_modules: u32,
    /// Pooled instances (concurrent calls) across all versions.
    pub max_instances: u32,
}

/// A periodic report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The node.
    pub node_id: String,
    /// Versions loaded.
    pub loaded_modules: usize,
    /// Services with their routes, versions and counters.
    pub services: Vec<ServiceStatus>,
}

/// Where and how to reach the control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// `http://host:port` of the control plane.
    pub base_url: String,
    /// Shared bearer token.
    pub token: String,
    /// Time between heartbeats.
    pub heartbeat_every: Duration,
}

#[derive(Debug)]
enum PostError {
    Status(StatusCode),
    Transport(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Status(s) => write!(f, "the control plane answered {s}"),
            PostError::Transport(e) => write!(f, "{e}"),
        }
    }
}

struct JsonClient {
    client: Client<HttpConnector, Full<Bytes>>,
    token: String,
}

impl JsonClient {
    async fn post<T: Serialize>(&self, url: &str, body: &T) -> Result<(), PostError> {
        let bytes = serde_json::to_vec(body).map_err(|e| PostError::Transport(e.to_string()))?;
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| PostError::Transport(e.to_string()))?;
        // One deadline for the whole exchange, and a small cap on what is
        // read back: a misbehaving control plane must not stall or bloat us.
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| PostError::Transport(e.to_string()))?;
            let status = resp.status();
            let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await;
            Ok::<_, PostError>(status)
        };
        let status = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| PostError::Transport("no answer within 10 s".into()))??;
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status))
        }
    }
}

/// Registers, then heartbeats forever (until the task is dropped). Retries
/// with backoff; never gives up and never touches the data plane.
pub async fn run(node: Node, cp: ControlPlane, registration: Registration) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = JsonClient {
        client: Client::builder(TokioExecutor::new()).build(connector),
        token: cp.token.clone(),
    };
    let base = cp.base_url.trim_end_matches('/').to_string();
    let register_url = format!("{base}/api/v1/wasm/nodes");
    let heartbeat_url = format!(
        "{base}/api/v1/wasm/nodes/{}/heartbeat",
        registration.node_id
    );
    let mut backoff = Duration::from_millis(250);
    loop {
        // Register (again) until it takes.
        loop {
            match client.post(&register_url, &registration).await {
                Ok(()) => {
                    tracing::info!(url = %register_url, "registered with the control plane");
                    backoff = Duration::from_millis(250);
                    break;
                }
                Err(e) => {
                    tracing::warn!(url = %register_url, error = %e, retry_in = ?backoff, "cannot register; serving on");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        loop {
            tokio::time::sleep(cp.heartbeat_every).await;
            let beat = Heartbeat {
                node_id: registration.node_id.clone(),
                loaded_modules: node.version_count(),
                services: node.status(),
            };
            match client.post(&heartbeat_url, &beat).await {
                Ok(()) => {}
                Err(PostError::Status(StatusCode::NOT_FOUND)) => {
                    tracing::warn!("the control plane does not know this node; registering again");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; serving on"),
            }
        }
    }
}
