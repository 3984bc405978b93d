//! Deployments: create, list, get, events, and the controls (execute,
//! approve, pause, resume, promote, abort, rollback). The controls change
//! the deployment in the store and wake the rollout engine, which does the
//! node work.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{PathParams, QueryParams};
use super::{AppState, Client, JsonBody, actor};
use crate::auth::{Caller, Permission, Role};
use crate::error::{ApiError, ErrorBody};
use crate::rollout::model::{Deployment, DeploymentEvent, DeploymentSpec, DeploymentStatus};
use crate::rollout::ops::{self, OpError};

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid { field, message } => ApiError::invalid_field(field, message),
            OpError::State(message) => ApiError::conflict(message),
            OpError::Store(e) => e.into(),
        }
    }
}

fn is_admin(caller: &Caller) -> bool {
    matches!(
        caller,
        Caller::User {
            role: Role::Admin,
            ..
        }
    )
}

/// Creates a deployment (pending until `execute`).
#[utoipa::path(post, path = "/api/v1/wasm/deployments", tag = "deployments", request_body = DeploymentSpec,
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another deployment of the service is underway"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    JsonBody(spec): JsonBody<DeploymentSpec>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    caller.require(Permission::Deploy)?;
    let span = tracing::info_span!("wasm.deployment.create", wasm.module.id = %spec.module_id, strategy = %spec.strategy);
    let d = tracing::Instrument::instrument(
        ops::create(&state.store, spec, &actor(&caller, &client)),
        span,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeploymentListParams {
    /// Only this service (module name).
    pub service: Option<String>,
    /// Only this status.
    pub status: Option<DeploymentStatus>,
    /// At most this many, 1–100. By default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Deployments, newest first.
#[utoipa::path(get, path = "/api/v1/wasm/deployments", tag = "deployments", params(DeploymentListParams),
    responses((status = 200, body = Vec<Deployment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<DeploymentListParams>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    caller.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("limit is {limit}; allowed 1–100"),
        ));
    }
    Ok(Json(
        state
            .store
            .list_deployments(q.service.as_deref(), q.status, limit)
            .await?,
    ))
}

/// One deployment: status, progress, current stage, per-node state,
/// per-version metrics, gate decisions.
#[utoipa::path(get, path = "/api/v1/wasm/deployments/{id}", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Deployment>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(state.store.get_deployment(&id).await?))
}

/// A deployment's event history, oldest first.
#[utoipa::path(get, path = "/api/v1/wasm/deployments/{id}/events", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, body = Vec<DeploymentEvent>), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<DeploymentEvent>>, ApiError> {
    caller.require(Permission::Read)?;
    state.store.get_deployment(&id).await?;
    Ok(Json(state.store.deployment_events(&id).await?))
}

/// How far `promote` goes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteRequest {
    /// Straight to 100 % (else: the next phase).
    #[serde(default)]
    pub full: bool,
}

macro_rules! control {
    ($name:ident, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "deployments", params(("id" = String, Path)),
            responses((status = 200, body = Deployment), (status = 404, body = ErrorBody),
                (status = 409, body = ErrorBody, description = "not allowed in the deployment's state"),
                (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            client: Client,
            PathParams(id): PathParams<String>,
        ) -> Result<Json<Deployment>, ApiError> {
            let who = actor(&caller, &client);
            let d = run(stringify!($name), &state, &caller, &who, &id).await?;
            state.engine.wake();
            Ok(Json(d))
        }
    };
}

async fn run(
    op: &str,
    state: &AppState,
    caller: &Caller,
    who: &crate::model::Actor,
    id: &str,
) -> Result<Deployment, ApiError> {
    // Permission first: an unknown id must not tell a caller who may not
    // act on deployments anything.
    caller.require(match op {
        "execute" => Permission::Deploy,
        "approve" => Permission::DeployProduction,
        "pause" | "resume" | "abort" => Permission::ControlRollout,
        "rollback" => Permission::Rollback,
        other => return Err(ApiError::internal(format!("unknown control {other}"))),
    })?;
    // A step under way on the deployment (perhaps waiting on a slow node)
    // gives way to this call.
    let _hold = state.engine.hold(id);
    Ok(match op {
        // Production: an admin's execute approves it; anyone else's sends
        // it for approval.
        "execute" => ops::execute(&state.store, id, who, is_admin(caller)).await?,
        "approve" => ops::approve(&state.store, id, who).await?,
        "pause" => ops::pause(&state.store, id, who).await?,
        "resume" => ops::resume(&state.store, id, who).await?,
        "abort" => ops::rollback(&state.store, id, who, true).await?,
        _ => {
            let span = tracing::info_span!("wasm.deployment.rollback", deployment = %id);
            tracing::Instrument::instrument(ops::rollback(&state.store, id, who, false), span)
                .await?
        }
    })
}

control!(
    execute,
    "/api/v1/wasm/deployments/{id}/execute",
    "Starts a pending deployment (production: admins start it; others send it for approval)."
);
control!(
    approve,
    "/api/v1/wasm/deployments/{id}/approve",
    "An admin approves (and so starts) a production deployment."
);
control!(
    pause,
    "/api/v1/wasm/deployments/{id}/pause",
    "Holds traffic where it is."
);
control!(
    resume,
    "/api/v1/wasm/deployments/{id}/resume",
    "Carries on after a pause."
);
control!(
    abort,
    "/api/v1/wasm/deployments/{id}/abort",
    "Stops and puts every touched node back on the previous version."
);
control!(
    rollback,
    "/api/v1/wasm/deployments/{id}/rollback",
    "Puts every touched node back on the previous version (also after completion)."
);

/// Skips to the next phase, or with `{"full": true}` to 100 %.
#[utoipa::path(post, path = "/api/v1/wasm/deployments/{id}/promote", tag = "deployments", params(("id" = String, Path)),
    request_body = PromoteRequest,
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams(id): PathParams<String>,
    body: axum::body::Bytes,
) -> Result<Json<Deployment>, ApiError> {
    caller.require(Permission::ControlRollout)?;
    let production = state.store.get_deployment(&id).await?.environment == "production";
    // The body is optional: no body means the next phase.
    let full = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<PromoteRequest>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "validation_error",
                    format!("the body is not a promote request: {e}"),
                )
            })?
            .full
    };
    if full && production {
        // Skipping every remaining gate in production is an admin's call.
        caller.require(Permission::DeployProduction)?;
    }
    let d = {
        let _hold = state.engine.hold(&id);
        ops::promote(&state.store, &id, &actor(&caller, &client), full).await?
    };
    state.engine.wake();
    Ok(Json(d))
}
