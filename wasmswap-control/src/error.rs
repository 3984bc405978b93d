//! The API's one error shape:
//! `{"error":{"code","message","details","timestamp","requestId"}}`.
//!
//! Causes are logged with the request id; clients get a stable code and a
//! message written for them, never a database or I/O error's text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{StoreError, Unwritable};

tokio::task_local! {
    /// The current request's id (set by the request-id middleware).
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request being served, or `-` outside one.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".into())
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_wasm`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured detail (field, offset, limits, …).
    pub details: serde_json::Value,
    /// Seconds until a retry may succeed (429, 503).
    pub retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What an error answer says.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured detail (`null` when there is none).
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
    /// When, RFC 3339.
    pub timestamp: String,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: String,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
            retry_after: None,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `validation_error` naming the field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", message)
            .with_details(serde_json::json!({ "field": field }))
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 413 `payload_too_large`.
    pub fn too_large(message: impl Into<String>, limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            .with_details(serde_json::json!({ "limitBytes": limit }))
    }

    /// 500 `internal`: logs `cause`, tells the client only the request id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = %request_id(), error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request id identifies it in the server's log",
        )
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::BlobCorrupt { .. } | StoreError::BlobMissing(_) => {
                tracing::error!(request_id = %request_id(), error = %e, "stored binary unusable");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_integrity",
                    "the stored binary failed verification; an operator has to restore it",
                )
            }
            StoreError::BlobUnwritable(why) => {
                tracing::error!(request_id = %request_id(), error = %e, "blob store refused a write");
                let (status, code) = match why {
                    Unwritable::Full => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
                    Unwritable::ReadOnly => (StatusCode::SERVICE_UNAVAILABLE, "storage_read_only"),
                };
                ApiError::new(
                    status,
                    code,
                    format!("the binary store is {why}; nothing was saved"),
                )
            }
            StoreError::Busy(message) => {
                let mut err = ApiError::unavailable(message);
                err.retry_after = Some(1);
                err
            }
            StoreError::Db(ref db) if matches!(db, sqlx::Error::PoolTimedOut) => {
                tracing::warn!(request_id = %request_id(), error = %e, "database busy");
                let mut err = ApiError::unavailable("the database is busy; retry shortly");
                err.retry_after = Some(1);
                err
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
                timestamp: crate::model::rfc3339(crate::clock::Clock::system().now_ms()),
                request_id: request_id(),
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
