//! `POST /api/v1/wasm/execute`: run one function of a module on a healthy
//! node of a region, failing over to the next node when one is down.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, JsonBody};
use crate::agent::AgentError;
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::OutcomeLabels;
use crate::model::{Node, NodeHealth};

/// What to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The module version, `{name}-v{version}`.
    pub module_id: String,
    /// The exported function (a component's `interface#function` for
    /// functions inside exported interfaces).
    #[schema(min_length = 1, max_length = 256)]
    pub function_name: String,
    /// Arguments: a JSON array (positional) or object (by parameter name).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// Region to run in; any region when absent.
    #[serde(default)]
    pub target_region: Option<String>,
    /// Seconds to wait (1–300; by default the module's time limit).
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// The outcome.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    /// The function returned (false: the guest failed; see `error`).
    pub success: bool,
    /// Its result as JSON.
    #[schema(value_type = Object)]
    pub return_value: serde_json::Value,
    /// Wall time at the node, milliseconds.
    pub duration_ms: f64,
    /// The node that ran it.
    pub executed_on: String,
    /// Nodes tried before it, with why they failed.
    pub failed_over: Vec<Attempt>,
    /// The guest's failure, when `success` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub error: Option<serde_json::Value>,
}

/// Nodes to try, healthy ones of the region, least loaded first; ones that
/// already hold the module come before ones that would have to load it.
fn candidates(mut nodes: Vec<Node>, module_id: &str) -> Vec<Node> {
    nodes.retain(|n| n.status == NodeHealth::Healthy);
    nodes.sort_by_key(|n| {
        let holds = n.modules.iter().any(|m| m == module_id);
        (
            !holds,
            n.loaded_modules * 1000 / n.capacity.max_modules.max(1),
        )
    });
    nodes
}

/// Runs a function on a node.
#[utoipa::path(post, path = "/api/v1/wasm/execute", tag = "execute", request_body = ExecuteRequest,
    responses((status = 200, body = ExecuteResponse),
        (status = 400, body = ErrorBody, description = "bad arguments or fields"),
        (status = 404, body = ErrorBody, description = "no such module or function"),
        (status = 502, body = ErrorBody, description = "every node failed"),
        (status = 503, body = ErrorBody, description = "no healthy node with room in the region"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    client: super::Client,
    JsonBody(req): JsonBody<ExecuteRequest>,
) -> Result<Json<ExecuteResponse>, ApiError> {
    caller.require(Permission::Execute)?;
    let span = tracing::info_span!("wasm.deployment.execute", wasm.module.id = %req.module_id, wasm.function = %req.function_name);
    let actor = super::actor(&caller, &client);
    tracing::Instrument::instrument(run(state, req, &actor), span).await
}

async fn run(
    state: AppState,
    req: ExecuteRequest,
    actor: &crate::model::Actor,
) -> Result<Json<ExecuteResponse>, ApiError> {
    if req.function_name.is_empty() || req.function_name.len() > 256 {
        return Err(ApiError::invalid_field(
            "functionName",
            "functionName must be 1–256 characters",
        ));
    }
    let module = state.store.get_module(&req.module_id).await?;
    if !module
        .exported_functions
        .iter()
        .any(|f| f.name == req.function_name)
    {
        let names: Vec<&str> = module
            .exported_functions
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        return Err(ApiError::not_found(format!(
            "module {} exports no function {:?}; it exports {names:?}",
            module.module_id, req.function_name
        )));
    }
    let limit = module.limits.max_execution_time_seconds;
    let timeout = match req.timeout {
        Some(t) if !(1..=300).contains(&t) => {
            return Err(ApiError::invalid_field(
                "timeout",
                format!("timeout is {t}; allowed 1–300 seconds"),
            ));
        }
        Some(t) => t.min(limit),
        None => limit,
    };
    let timeout_ms =
        i64::try_from(state.settings.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
    let nodes = state
        .store
        .list_nodes(req.target_region.as_deref(), timeout_ms)
        .await?;
    let nodes = candidates(nodes, &module.module_id);
    if nodes.is_empty() {
        return Err(ApiError::unavailable(match &req.target_region {
            Some(r) => format!("no healthy node in region {r}"),
            None => "no healthy node".to_string(),
        }));
    }
    let binary_url = format!(
        "{}/api/v1/wasm/binaries/{}",
        state.settings.public_url.trim_end_matches('/'),
        module.checksum
    );
    let call_timeout = Duration::from_secs(u64::from(timeout)) + Duration::from_secs(2);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut full = 0;
    for node in &nodes {
        let holds = node.modules.iter().any(|m| m == &module.module_id);
        if !holds {
            if !state
                .store
                .reserve_slot(
                    &node.node_id,
                    &module.module_id,
                    node.capacity.max_modules,
                    actor,
                )
                .await?
            {
                full += 1;
                continue;
            }
            if let Err(e) = state.agents.load(node, &module, &binary_url).await {
                tracing::warn!(node = %node.node_id, error = %e, "load failed; trying the next node");
                state
                    .store
                    .release_slot(&node.node_id, &module.module_id)
                    .await?;
                attempts.push(Attempt::of(&e));
                continue;
            }
        }
        let started = Instant::now();
        let mut call = state
            .agents
            .invoke(
                node,
                &module,
                &req.function_name,
                &req.parameters,
                call_timeout,
            )
            .await;
        // The record said the node holds it, the node says it does not
        // (it was restarted without its state, or evicted it): load, retry once.
        if holds && matches!(&call, Err(AgentError::Refused { status: 404, .. })) {
            if let Err(e) = state.agents.load(node, &module, &binary_url).await {
                attempts.push(Attempt::of(&e));
                continue;
            }
            call = state
                .agents
                .invoke(
                    node,
                    &module,
                    &req.function_name,
                    &req.parameters,
                    call_timeout,
                )
                .await;
        }
        let outcome = |label: &str| {
            state
                .metrics
                .executions
                .get_or_create(&OutcomeLabels {
                    outcome: label.to_string(),
                })
                .inc();
        };
        match call {
            Ok(done) => {
                outcome("success");
                return Ok(Json(ExecuteResponse {
                    success: true,
                    return_value: done.value,
                    duration_ms: done.duration_ms,
                    executed_on: node.node_id.clone(),
                    failed_over: attempts,
                    error: None,
                }));
            }
            Err(e) if e.worth_failover() => {
                tracing::warn!(node = %node.node_id, error = %e, "node failed; trying the next one");
                attempts.push(Attempt::of(&e));
            }
            Err(AgentError::Refused {
                status: status @ (400 | 404),
                code,
                message,
                ..
            }) => {
                outcome("bad_request");
                let mut err = ApiError::bad_request(message)
                    .with_details(serde_json::json!({ "nodeCode": code }));
                if status == 404 {
                    err.status = StatusCode::NOT_FOUND;
                    err.code = "not_found";
                }
                return Err(err);
            }
            Err(AgentError::Refused { code, message, .. }) => {
                // The guest failed (trap, limit, timeout): it ran, and would
                // fail the same way elsewhere.
                outcome(&code);
                return Ok(Json(ExecuteResponse {
                    success: false,
                    return_value: serde_json::Value::Null,
                    duration_ms: started.elapsed().as_secs_f64() * 1e3,
                    executed_on: node.node_id.clone(),
                    failed_over: attempts,
                    error: Some(serde_json::json!({ "code": code, "message": message })),
                }));
            }
            Err(e) => {
                // The call may have run: not repeated elsewhere.
                tracing::warn!(node = %node.node_id, error = %e, "call outcome unknown");
                outcome("unknown");
                attempts.push(Attempt::of(&e));
                let timed_out = matches!(e, AgentError::Timeout { .. });
                return Err(ApiError::new(
                    if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY },
                    if timed_out { "node_timeout" } else { "node_error" },
                    format!(
                        "node {} did not answer properly; the call may have run, so it was not repeated elsewhere",
                        node.node_id
                    ),
                )
                .with_details(serde_json::json!({ "attempts": attempts })));
            }
        }
    }
    state
        .metrics
        .executions
        .get_or_create(&OutcomeLabels {
            outcome: "no_node".into(),
        })
        .inc();
    if attempts.is_empty() && full > 0 {
        return Err(ApiError::unavailable(format!(
            "every healthy node in the region is at capacity ({full} full)"
        )));
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "node_unavailable",
        format!("every node failed ({} tried)", attempts.len()),
    )
    .with_details(serde_json::json!({ "attempts": attempts })))
}

/// A node that was tried and why it failed, without addresses.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// Node id.
    pub node: String,
    /// `connect_failed`, `timeout`, `transport_error`, or the node's status and code.
    pub reason: String,
}

impl Attempt {
    fn of(e: &AgentError) -> Self {
        Attempt {
            node: e.node().to_string(),
            reason: e.reason_code(),
        }
    }
}
