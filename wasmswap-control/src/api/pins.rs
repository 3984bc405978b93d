//! Pins: hold a node on a version of a service, or give a region its own
//! default version. Rollouts pass pinned nodes and regions by.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::PathParams;
use super::{AppState, Client, JsonBody, actor};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::store::Pin;

/// The version to pin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinRequest {
    /// A module version of the service.
    pub module_id: String,
}

fn check_scope(scope: &str) -> Result<(), ApiError> {
    if matches!(scope, "node" | "region") {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "scope",
            format!("scope {scope:?} is not `node` or `region`"),
        ))
    }
}

/// Pins a node (`scope` = `node`) or a region (`region`) of a service to a
/// version. Admin only. Refused while a deployment of the service is underway.
#[utoipa::path(put, path = "/api/v1/wasm/services/{service}/pins/{scope}/{target}", tag = "deployments",
    params(("service" = String, Path), ("scope" = String, Path, description = "`node` or `region`", pattern = "^(node|region)$"), ("target" = String, Path)),
    request_body = PinRequest,
    responses((status = 200, body = Pin), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams((service, scope, target)): PathParams<(String, String, String)>,
    JsonBody(req): JsonBody<PinRequest>,
) -> Result<Json<Pin>, ApiError> {
    caller.require(Permission::DeployProduction)?;
    check_scope(&scope)?;
    let module = state.store.get_module(&req.module_id).await?;
    if module.name != service {
        return Err(ApiError::invalid_field(
            "moduleId",
            format!("{} is not a version of {service}", module.module_id),
        ));
    }
    if scope == "node" {
        let timeout =
            i64::try_from(state.settings.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        state.store.get_node(&target, timeout).await?;
    }
    if let Some(d) = state.store.active_deployment_of(&service).await? {
        return Err(ApiError::conflict(format!(
            "deployment {d} of {service} is underway; pin once it is over"
        )));
    }
    let pin = state
        .store
        .set_pin(
            &service,
            &scope,
            &target,
            &module.module_id,
            &actor(&caller, &client),
        )
        .await?;
    state.engine.wake();
    Ok(Json(pin))
}

/// Removes a pin.
#[utoipa::path(delete, path = "/api/v1/wasm/services/{service}/pins/{scope}/{target}", tag = "deployments",
    params(("service" = String, Path), ("scope" = String, Path), ("target" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams((service, scope, target)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::DeployProduction)?;
    check_scope(&scope)?;
    state
        .store
        .delete_pin(&service, &scope, &target, &actor(&caller, &client))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A service's pins.
#[utoipa::path(get, path = "/api/v1/wasm/services/{service}/pins", tag = "deployments",
    params(("service" = String, Path)),
    responses((status = 200, body = Vec<Pin>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(service): PathParams<String>,
) -> Result<Json<Vec<Pin>>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(state.store.pins(Some(&service)).await?))
}
