//! Health, metrics, and the fallbacks.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};

/// Liveness and readiness.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, or `degraded` when the store does not answer.
    pub status: String,
    /// The store answers.
    pub store: bool,
    /// This build.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
}

/// Health (no token needed). 503 when the store does not answer.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let store = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let body = Health {
        status: if store { "ok" } else { "degraded" }.into(),
        store,
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.started.elapsed().as_secs(),
    };
    let status = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics of the control plane.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint {}", uri.path()))
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
