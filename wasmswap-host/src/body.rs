//! Response bodies and the one JSON error shape both listeners answer with.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde::Serialize;

/// How long a request body may take to arrive (slow-body guard).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response to send.
pub type Response = http::Response<Body>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"code":"internal","message":"cannot encode the answer: {e}"}}}}"#)
            .into_bytes()
    });
    let mut resp = http::Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A refused or failed request: status, a stable code, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`bad_request`, `unauthorized`, `timeout`, …).
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with its status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// The JSON response: `{"error":{"code","message"}}`.
    pub fn response(&self) -> Response {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        json(
            self.status,
            &Outer {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                },
            },
        )
    }
}

impl ApiError {
    /// For anonymous data-plane clients: the same status and code, but a
    /// trap's backtrace and internal failures stay in the node's log.
    pub fn public(service: &str, e: wasmswap_core::Error) -> Self {
        use wasmswap_core::{Error, ErrorKind};
        let public = match &e {
            Error::Trap { code: Some(c), .. } => Some(format!("the guest trapped: {c}")),
            Error::Trap { code: None, .. }
            | Error::Isolated {
                kind: ErrorKind::Trap,
                ..
            } => Some("the guest trapped".to_string()),
            Error::Isolated {
                kind: ErrorKind::Internal,
                ..
            }
            | Error::Internal(_)
            | Error::Instantiate(_)
            | Error::Sandbox(_)
            | Error::Cache(_)
            | Error::Unrepresentable(_) => Some("the call failed inside the node".to_string()),
            _ => None,
        };
        if e.is_guest_fault() || public.is_some() {
            tracing::warn!(%service, error = %e, "call failed");
        }
        let mut api = ApiError::from(e);
        if let Some(message) = public {
            api.message = message;
        }
        api
    }
}

impl From<wasmswap_core::Error> for ApiError {
    /// Guest faults are the guest's problem (500 with what happened), limits
    /// and capacity are 503/504, bad arguments 400, a missing export 404.
    fn from(e: wasmswap_core::Error) -> Self {
        use wasmswap_core::{Error, ErrorKind};
        let message = e.to_string();
        match (&e, e.kind()) {
            (Error::NoSuchFunction(_), _) => ApiError::not_found(message),
            (_, ErrorKind::BadRequest) => ApiError::bad_request(message),
            (_, ErrorKind::Timeout) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            (_, ErrorKind::Overloaded) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            }
            (_, ErrorKind::Load) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_wasm", message)
            }
            (_, kind) if e.is_guest_fault() => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, kind.as_str(), message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

/// Reads a request body of at most `max` bytes within [`BODY_READ_TIMEOUT`];
/// `what` names it in errors ("the arguments", "the body").
pub async fn read_body(
    body: wasmswap_server::Incoming,
    max: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    let collect = http_body_util::Limited::new(body, max).collect();
    tokio::time::timeout(BODY_READ_TIMEOUT, collect)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("{what} did not arrive within {BODY_READ_TIMEOUT:?}"),
            )
        })?
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("{what} is larger than {max} bytes"),
                )
            } else {
                ApiError::bad_request(format!("reading {what}: {e}"))
            }
        })
}
