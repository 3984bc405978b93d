//! `GET /api/v1/audit`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::QueryParams;
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::model::AuditRecord;
use crate::store::AuditFilter;

/// Audit filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this (`module.`).
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Page size, 1–500. By default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Page start. By default 0.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Records.
    pub entries: Vec<AuditRecord>,
    /// How many match in all.
    pub total: i64,
}

/// The audit log: every state change with who, what, when, from where and
/// the request id.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Permission::ReadAudit)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("limit is {limit}; allowed 1–500"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field(
            "offset",
            "offset must not be negative",
        ));
    }
    let (entries, total) = state
        .store
        .list_audit(&AuditFilter {
            actor: q.actor,
            action: q.action,
            target: q.target,
            limit,
            offset,
        })
        .await?;
    Ok(Json(AuditPage { entries, total }))
}
