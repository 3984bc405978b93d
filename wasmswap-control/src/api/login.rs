//! `POST /api/v1/authentication/login`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, Client, JsonBody};
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};
use crate::model::{Actor, rfc3339};
use crate::rate::Class;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    #[schema(min_length = 1, max_length = 128)]
    pub username: String,
    /// Password.
    #[schema(max_length = 1024)]
    pub password: String,
}

/// Who a token is for.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginUser {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// A token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The JWT; send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// When it expires, RFC 3339.
    pub expires_at: String,
    /// Who it is for.
    pub user: LoginUser,
}

/// Exchanges a user name and password for a token.
#[utoipa::path(post, path = "/api/v1/authentication/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    // Per client address: slows password guessing without locking out the
    // user being guessed at.
    let decision = state
        .limits
        .check(Class::Login, &format!("login:{}", client.0));
    if !decision.allowed {
        state.metrics.rate_limited.inc();
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many logins from this address; retry in {} s",
                decision.retry_after_secs
            ),
        );
        err.retry_after = Some(decision.retry_after_secs);
        return Err(err);
    }
    if body.username.is_empty() || body.username.len() > 128 || body.password.len() > 1024 {
        return Err(ApiError::invalid_field(
            "username",
            "username must be 1–128 characters and password at most 1024",
        ));
    }
    // argon2 is memory- and CPU-hard by design: bound how many run at once.
    let _permit = tokio::time::timeout(std::time::Duration::from_secs(5), state.logins.acquire())
        .await
        .map_err(|_| {
            let mut e = ApiError::unavailable("too many logins in progress; retry shortly");
            e.retry_after = Some(1);
            e
        })?
        .map_err(ApiError::internal)?;
    let st = state.clone();
    let (username, password) = (body.username.clone(), body.password);
    let issued = tokio::task::spawn_blocking(move || st.auth.login(&username, &password))
        .await
        .map_err(ApiError::internal)?;
    let mut actor = Actor {
        name: body.username.clone(),
        role: issued
            .as_ref()
            .map_or("none", |i| i.role.as_str())
            .to_string(),
        request_id: crate::error::request_id(),
        client: client.0,
    };
    let Some(issued) = issued else {
        actor.name = truncate(&actor.name);
        state
            .store
            .audit(
                &actor,
                "auth.login_failed",
                &actor.name.clone(),
                &serde_json::json!({}),
            )
            .await?;
        return Err(ApiError::unauthorized("invalid username or password"));
    };
    state
        .store
        .audit(
            &actor,
            "auth.login",
            &issued.user,
            &serde_json::json!({ "expiresAt": issued.expires_at }),
        )
        .await?;
    let mut resp = Json(LoginResponse {
        token: issued.token,
        expires_at: rfc3339(i64::try_from(issued.expires_at).unwrap_or(i64::MAX) * 1000),
        user: LoginUser {
            username: issued.user,
            role: issued.role,
        },
    })
    .into_response();
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset_secs),
    ] {
        resp.headers_mut().insert(name, HeaderValue::from(value));
    }
    Ok(resp)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
