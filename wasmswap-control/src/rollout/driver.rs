//! What the engine needs from nodes, as a trait: the real implementation
//! calls the node agent API; the engine's unit tests drive an in-memory
//! fleet through the same interface.

use std::collections::HashMap;

use async_trait::async_trait;
use wasmswap_core::CounterSnapshot;

use crate::agent::{AgentClient, AgentError};
use crate::model::{Module, Node};

use super::model::HealthCheck;

/// A route as the node agent takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Version answering everything not given to the candidate.
    pub stable: String,
    /// The candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Its share, 0–100.
    pub weight_percent: f64,
}

impl RouteSpec {
    /// `stable` alone, or split with `candidate` at `weight` (0 and 100
    /// collapse to one version).
    pub fn split(stable: Option<&str>, candidate: &str, weight: f64) -> Option<Self> {
        match stable {
            None if weight <= 0.0 => None,
            None => Some(Self::only(candidate)),
            Some(s) if weight <= 0.0 => Some(Self::only(s)),
            Some(_) if weight >= 100.0 => Some(Self::only(candidate)),
            Some(s) => Some(RouteSpec {
                stable: s.to_string(),
                candidate: Some(candidate.to_string()),
                weight_percent: weight,
            }),
        }
    }

    /// One version for everything.
    pub fn only(version: &str) -> Self {
        RouteSpec {
            stable: version.to_string(),
            candidate: None,
            weight_percent: 0.0,
        }
    }
}

/// Node operations the engine uses. All are idempotent.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Loads a module version (service = module name, label = version).
    async fn load(&self, node: &Node, module: &Module, binary_url: &str) -> Result<(), AgentError>;
    /// Sets a service's route.
    async fn set_route(
        &self,
        node: &Node,
        service: &str,
        route: &RouteSpec,
    ) -> Result<(), AgentError>;
    /// Health-checks one version directly.
    async fn health(
        &self,
        node: &Node,
        service: &str,
        version: &str,
        check: &HealthCheck,
    ) -> Result<bool, AgentError>;
    /// Counters of every loaded version of a service, by version label.
    async fn counters(
        &self,
        node: &Node,
        service: &str,
    ) -> Result<HashMap<String, CounterSnapshot>, AgentError>;
    /// Unloads a version once it drains.
    async fn unload(&self, node: &Node, service: &str, version: &str) -> Result<(), AgentError>;
}

#[async_trait]
impl Driver for AgentClient {
    async fn load(&self, node: &Node, module: &Module, binary_url: &str) -> Result<(), AgentError> {
        AgentClient::load(self, node, module, binary_url).await
    }

    async fn set_route(
        &self,
        node: &Node,
        service: &str,
        route: &RouteSpec,
    ) -> Result<(), AgentError> {
        let body = serde_json::to_value(route).unwrap_or_default();
        self.request(
            node,
            reqwest::Method::PUT,
            &format!("/v1/services/{service}/route"),
            Some(&body),
        )
        .await
        .map(drop)
    }

    async fn health(
        &self,
        node: &Node,
        service: &str,
        version: &str,
        check: &HealthCheck,
    ) -> Result<bool, AgentError> {
        let body = serde_json::to_value(check).unwrap_or_default();
        let resp = self
            .request(
                node,
                reqwest::Method::POST,
                &format!("/v1/services/{service}/versions/{version}/health"),
                Some(&body),
            )
            .await?;
        let report: serde_json::Value = resp.json().await.map_err(|e| AgentError::Transport {
            node: node.node_id.clone(),
            reason: e.to_string(),
        })?;
        Ok(report["healthy"].as_bool().unwrap_or(false))
    }

    async fn counters(
        &self,
        node: &Node,
        service: &str,
    ) -> Result<HashMap<String, CounterSnapshot>, AgentError> {
        #[derive(serde::Deserialize)]
        struct V {
            version: String,
            counters: CounterSnapshot,
        }
        #[derive(serde::Deserialize)]
        struct S {
            versions: Vec<V>,
        }
        let resp = self
            .request(
                node,
                reqwest::Method::GET,
                &format!("/v1/services/{service}"),
                None,
            )
            .await;
        let resp = match resp {
            Err(AgentError::Refused { status: 404, .. }) => return Ok(HashMap::new()),
            other => other?,
        };
        let s: S = resp.json().await.map_err(|e| AgentError::Transport {
            node: node.node_id.clone(),
            reason: e.to_string(),
        })?;
        Ok(s.versions
            .into_iter()
            .map(|v| (v.version, v.counters))
            .collect())
    }

    async fn unload(&self, node: &Node, service: &str, version: &str) -> Result<(), AgentError> {
        match self
            .request(
                node,
                reqwest::Method::DELETE,
                &format!("/v1/services/{service}/versions/{version}?drainTimeoutMs=30000"),
                None,
            )
            .await
        {
            Ok(_) | Err(AgentError::Refused { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
