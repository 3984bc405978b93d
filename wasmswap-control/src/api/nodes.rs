//! Edge nodes: register, heartbeat, list, get, health, delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{PathParams, QueryParams};
use super::{AppState, Client, JsonBody, actor};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::model::{Node, NodeHealth};
use crate::store::{NodeReport, NodeUpdate};

fn timeout_ms(state: &AppState) -> i64 {
    i64::try_from(state.settings.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX)
}

fn check_url(field: &str, url: &str) -> Result<(), ApiError> {
    let ok = url.len() <= 512
        && url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{field} must be an http:// or https:// URL"),
        ))
    }
}

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{field} must be 1–64 characters of A-Z, a-z, 0-9, '.', '_', '-'"),
        ))
    }
}

/// Registration outcome.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// The node as stored.
    pub node: Node,
    /// Whether it was new (false: a known node registered again).
    pub created: bool,
}

/// Registers a node (nodes call this on start; an admin may too).
#[utoipa::path(post, path = "/api/v1/wasm/nodes", tag = "nodes", request_body = NodeUpdate,
    responses((status = 201, body = Registered), (status = 200, body = Registered),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    JsonBody(n): JsonBody<NodeUpdate>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    if caller.require(Permission::NodeAgent).is_err() {
        caller.require(Permission::ManageNodes)?;
    }
    check_id("nodeId", &n.node_id)?;
    check_id("region", &n.region)?;
    if !n.zone.is_empty() {
        check_id("zone", &n.zone)?;
    }
    check_url("agentUrl", &n.agent_url)?;
    check_url("dataUrl", &n.data_url)?;
    if n.capacity.max_modules == 0 {
        return Err(ApiError::invalid_field(
            "capacity.maxModules",
            "capacity.maxModules must be at least 1",
        ));
    }
    let mut who = actor(&caller, &client);
    if matches!(caller, Caller::Node) {
        who.name = format!("node:{}", n.node_id);
    }
    let created = state.store.register_node(&n, &who).await?;
    tracing::info!(node = %n.node_id, region = %n.region, created, "node registered");
    let node = state.store.get_node(&n.node_id, timeout_ms(&state)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Registered { node, created })))
}

/// Records a heartbeat. 404 for an unknown node, which then registers.
#[utoipa::path(post, path = "/api/v1/wasm/nodes/{id}/heartbeat", tag = "nodes",
    params(("id" = String, Path)), request_body = NodeReport,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(report): JsonBody<NodeReport>,
) -> Result<StatusCode, ApiError> {
    if caller.require(Permission::NodeAgent).is_err() {
        caller.require(Permission::ManageNodes)?;
    }
    if report.node_id != id {
        return Err(ApiError::invalid_field(
            "nodeId",
            format!(
                "the body is for node {:?} but the path names {id:?}",
                report.node_id
            ),
        ));
    }
    state.store.heartbeat(&report).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Node list filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NodeListParams {
    /// Only this region.
    pub region: Option<String>,
    /// Only this health (`healthy`, `unhealthy`).
    pub status: Option<NodeHealth>,
}

/// Nodes, by region.
#[utoipa::path(get, path = "/api/v1/wasm/nodes", tag = "nodes", params(NodeListParams),
    responses((status = 200, body = Vec<Node>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<NodeListParams>,
) -> Result<Json<Vec<Node>>, ApiError> {
    caller.require(Permission::Read)?;
    let mut nodes = state
        .store
        .list_nodes(q.region.as_deref(), timeout_ms(&state))
        .await?;
    if let Some(s) = q.status {
        nodes.retain(|n| n.status == s);
    }
    Ok(Json(nodes))
}

/// One node.
#[utoipa::path(get, path = "/api/v1/wasm/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Node>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(state.store.get_node(&id, timeout_ms(&state)).await?))
}

/// A node's health.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealthReport {
    /// The node.
    pub node_id: String,
    /// Healthy or not.
    pub status: NodeHealth,
    /// Last heartbeat, RFC 3339.
    pub last_heartbeat_at: String,
    /// Seconds after which a silent node is unhealthy.
    pub heartbeat_timeout_seconds: u64,
    /// Module versions loaded out of the capacity.
    pub loaded_modules: u32,
    /// Capacity.
    pub max_modules: u32,
    /// Its services as last reported (routes, versions, counters).
    #[schema(value_type = Vec<Object>)]
    pub services: serde_json::Value,
}

/// A node's health and last report.
#[utoipa::path(get, path = "/api/v1/wasm/nodes/{id}/health", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, body = NodeHealthReport), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn health(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<NodeHealthReport>, ApiError> {
    caller.require(Permission::Read)?;
    let node = state.store.get_node(&id, timeout_ms(&state)).await?;
    let services = state.store.node_services(&id).await?;
    Ok(Json(NodeHealthReport {
        node_id: node.node_id,
        status: node.status,
        last_heartbeat_at: node.last_heartbeat_at,
        heartbeat_timeout_seconds: state.settings.heartbeat_timeout.as_secs(),
        loaded_modules: node.loaded_modules,
        max_modules: node.capacity.max_modules,
        services,
    }))
}

/// Forgets a node (it registers again if it is still running).
#[utoipa::path(delete, path = "/api/v1/wasm/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageNodes)?;
    state
        .store
        .delete_node(&id, &actor(&caller, &client))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
