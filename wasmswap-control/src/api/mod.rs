//! The REST API under `/api/v1`: routes, middleware and shared state.
//!
//! Every request gets an id (`x-request-id`, generated unless the client
//! sent a well-formed one) that is echoed in the response, written to the
//! audit log and put in error bodies. Everything but `/health`, the
//! OpenAPI document and login needs a bearer token; each caller has a
//! budget per endpoint class (see [`crate::rate`]).

// `#[utoipa::path(params(T))]` expands to fully qualified paths.
#[allow(unused_qualifications)]
mod audit;
mod dashboard;
#[allow(unused_qualifications)]
mod deployments;
#[allow(unused_qualifications)]
mod execute;
mod extract;
#[allow(unused_qualifications)]
mod interfaces;
mod login;
#[allow(unused_qualifications)]
mod modules;
#[allow(unused_qualifications)]
mod nodes;
mod openapi;
#[allow(unused_qualifications)]
mod pins;
pub mod reference;
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use extract::{Client, JsonBody};
pub use openapi::ApiDoc;

use crate::agent::AgentClient;
use crate::auth::{Authenticator, Caller};
use crate::error::{ApiError, REQUEST_ID};
use crate::metrics::{Metrics, RouteLabels};
use crate::model::Actor;
use crate::rate::{Class, RateLimiters, RateLimits};
use crate::store::Store;

/// The largest module binary, decoded: 50 MiB.
pub const MAX_MODULE_BYTES: usize = 50 << 20;
/// The largest body of any other request.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The largest registration body: a base64-encoded 50 MiB binary is 4/3 of
/// that, plus room for the JSON around it.
pub const MAX_UPLOAD_BODY_BYTES: usize = MAX_MODULE_BYTES / 3 * 4 + (2 << 20);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Settings of the API that are not part of auth or storage.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// A node without a heartbeat for this long is unhealthy. By default 30 s.
    pub heartbeat_timeout: Duration,
    /// The URL nodes reach this control plane at (binary downloads).
    pub public_url: String,
    /// Budgets per caller and class.
    pub rate_limits: RateLimits,
    /// Limit on one node call during `execute`. By default 30 s.
    pub node_call_timeout: Duration,
    /// Limit on one load (the node fetches and compiles a binary). By
    /// default 120 s.
    pub node_load_timeout: Duration,
    /// Unreferenced binaries unused this long are removed. By default 15 min.
    pub blob_grace: Duration,
    /// How often housekeeping runs (rate-limit state, unused binaries). By
    /// default every minute.
    pub housekeeping_every: Duration,
    /// How often the rollout engine looks at its work (it is also woken by
    /// every control). By default 200 ms.
    pub engine_tick: Duration,
    /// A client must send its request headers within this, or its
    /// connection is closed (slow-loris guard). By default 10 s.
    pub header_read_timeout: Duration,
    /// A kept-alive connection idle this long between requests is closed.
    /// By default 120 s, above clients' pool idle timeouts.
    pub idle_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(30),
            public_url: "http://127.0.0.1:8000".into(),
            rate_limits: RateLimits::default(),
            node_call_timeout: Duration::from_secs(30),
            node_load_timeout: Duration::from_secs(120),
            blob_grace: Duration::from_millis(crate::store::BLOB_GRACE_MS as u64),
            housekeeping_every: Duration::from_secs(60),
            engine_tick: Duration::from_millis(200),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The shared state behind [`AppState`].
#[derive(Debug)]
pub struct Inner {
    pub(crate) store: Store,
    pub(crate) auth: Authenticator,
    pub(crate) limits: RateLimiters,
    pub(crate) runtime: wasmswap_core::Runtime,
    /// Compiling a registered module (to validate it and learn its exports)
    /// takes a core; one at a time keeps the API responsive.
    pub(crate) compile: tokio::sync::Semaphore,
    /// Registration bodies are buffered (up to ~70 MB each): a few at once.
    pub(crate) uploads: tokio::sync::Semaphore,
    /// argon2 takes ~19 MiB and tens of milliseconds per login: one per core.
    pub(crate) logins: tokio::sync::Semaphore,
    pub(crate) agents: AgentClient,
    pub(crate) settings: ApiSettings,
    pub(crate) metrics: Metrics,
    pub(crate) engine: Arc<crate::rollout::Engine>,
    pub(crate) started: Instant,
}

/// Everything a handler needs; a cheap clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// State over an opened store. `node_token` is what nodes and the
    /// control plane share (agent API calls use it too).
    pub fn new(
        store: Store,
        auth: Authenticator,
        node_token: String,
        settings: ApiSettings,
    ) -> Result<Self, wasmswap_core::Error> {
        // Validation only: compile each upload once, never instantiate.
        let mut rc = wasmswap_core::Runtime::builder();
        rc.pooling(false).compile_timeout(Duration::from_secs(60));
        let runtime = rc.build()?;
        let agents = AgentClient::new(node_token, settings.node_call_timeout)
            .with_load_timeout(settings.node_load_timeout);
        let engine = crate::rollout::Engine::new(
            store.clone(),
            Arc::new(agents.clone()),
            crate::rollout::EngineSettings {
                public_url: settings.public_url.clone(),
                heartbeat_timeout: settings.heartbeat_timeout,
                tick: settings.engine_tick,
                ..Default::default()
            },
        );
        Ok(Self(Arc::new(Inner {
            limits: RateLimiters::new(&settings.rate_limits),
            agents,
            engine,
            store,
            auth,
            runtime,
            compile: tokio::sync::Semaphore::new(1),
            uploads: tokio::sync::Semaphore::new(4),
            logins: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            settings,
            metrics: Metrics::new(),
            started: Instant::now(),
        })))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The API settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    /// The rollout engine.
    pub fn engine(&self) -> &Arc<crate::rollout::Engine> {
        &self.0.engine
    }

    /// Forgets idle rate-limit state (call every minute or so).
    pub fn tidy(&self) {
        self.0.limits.forget_idle();
    }
}

/// The audit identity of a request.
pub(crate) fn actor(caller: &Caller, client: &Client) -> Actor {
    Actor {
        name: caller.name().to_string(),
        role: caller.role_name().to_string(),
        request_id: crate::error::request_id(),
        client: client.0.clone(),
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route(
            "/wasm/modules",
            post(modules::register)
                .get(modules::list)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY_BYTES)),
        )
        .route(
            "/wasm/modules/{id}",
            get(modules::get).delete(modules::delete),
        )
        .route("/wasm/modules/{id}/wit", get(modules::wit))
        .route("/wasm/modules/{id}/diff/{other}", get(modules::diff))
        .route("/wasm/binaries/{checksum}", get(modules::binary))
        .route("/wasm/nodes", post(nodes::register).get(nodes::list))
        .route("/wasm/nodes/{id}", get(nodes::get).delete(nodes::delete))
        .route("/wasm/nodes/{id}/health", get(nodes::health))
        .route("/wasm/nodes/{id}/heartbeat", post(nodes::heartbeat))
        .route(
            "/wasm/interfaces",
            post(interfaces::register).get(interfaces::list),
        )
        .route("/wasm/interfaces/{id}", get(interfaces::get))
        .route("/wasm/interfaces/{id}/validate", post(interfaces::validate))
        .route("/wasm/interfaces/{id}/approve", post(interfaces::approve))
        .route(
            "/wasm/interfaces/{id}/deprecate",
            post(interfaces::deprecate),
        )
        .route("/wasm/execute", post(execute::execute))
        .route(
            "/wasm/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/wasm/deployments/{id}", get(deployments::get))
        .route("/wasm/deployments/{id}/events", get(deployments::events))
        .route("/wasm/deployments/{id}/execute", post(deployments::execute))
        .route("/wasm/deployments/{id}/approve", post(deployments::approve))
        .route("/wasm/deployments/{id}/pause", post(deployments::pause))
        .route("/wasm/deployments/{id}/resume", post(deployments::resume))
        .route("/wasm/deployments/{id}/promote", post(deployments::promote))
        .route("/wasm/deployments/{id}/abort", post(deployments::abort))
        .route(
            "/wasm/deployments/{id}/rollback",
            post(deployments::rollback),
        )
        .route("/wasm/services/{service}/pins", get(pins::list))
        .route(
            "/wasm/services/{service}/pins/{scope}/{target}",
            axum::routing::put(pins::set).delete(pins::delete),
        )
        .route("/audit", get(audit::list))
        .route("/metrics", get(system::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    let public = Router::new()
        .route("/health", get(system::health))
        .route("/openapi.json", get(openapi::document))
        .route("/authentication/login", post(login::login));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard", get(dashboard::page))
        .nest("/api/v1", protected.merge(public))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside `observe`: a panic's answer carries the request id.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Picks the request id (the client's when well-formed, else a new UUID),
/// puts it on the request and the response, scopes it for error bodies and
/// the audit log, records metrics and logs one line per request.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), header.clone());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        request_id = %id,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    // Continue the caller's W3C trace, if it sent one.
    wasmswap_telemetry::accept_parent(&span, req.headers());
    let mut resp = REQUEST_ID
        .scope(
            id,
            tracing::Instrument::instrument(next.run(req), span.clone()),
        )
        .await;
    resp.headers_mut().insert(X_REQUEST_ID.clone(), header);
    let status = resp.status().as_u16();
    // OpenTelemetry has no unsigned integers: an i64 is exported as one.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let labels = RouteLabels {
        method: method.to_string(),
        route,
        status,
    };
    let elapsed = started.elapsed();
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    tracing::debug!(parent: &span, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "served");
    resp
}

/// The class of an endpoint, for rate limits.
fn class_of(method: &Method, route: &str, caller: &Caller) -> Class {
    if matches!(caller, Caller::Node) {
        return Class::Node;
    }
    match (method, route) {
        (&Method::POST, "/api/v1/wasm/modules" | "/api/v1/wasm/interfaces") => Class::Register,
        (&Method::POST, "/api/v1/wasm/execute") => Class::Execute,
        (_, r) if r.starts_with("/api/v1/wasm/deployments") && method != Method::GET => {
            Class::Deploy
        }
        (&Method::GET | &Method::HEAD, _) => Class::Read,
        (&Method::POST, r) if r.ends_with("/validate") => Class::Read,
        _ => Class::Write,
    }
}

/// Authenticates, applies the caller's rate limit, and hands the caller to
/// the handler.
async fn guard(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))?
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?
        .to_string();
    let caller = state.auth.verify(&token)?;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |p| p.as_str())
        .to_string();
    let class = class_of(req.method(), &route, &caller);
    let key = match &caller {
        Caller::User { name, .. } => format!("user:{name}"),
        // A node's heartbeats are counted per node (many nodes may share
        // an address behind NAT); its other calls per address.
        Caller::Node => match route.strip_prefix("/api/v1/wasm/nodes/{id}/") {
            Some(_) => format!(
                "node:{}",
                req.uri().path().split('/').nth(5).unwrap_or_default()
            ),
            None => format!("node-addr:{}", extract::peer(req.extensions())),
        },
    };
    let decision = state.limits.check(class, &key);
    let headers = [
        ("x-ratelimit-limit", decision.limit as u64),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset_secs),
    ];
    let mut resp = if decision.allowed {
        req.extensions_mut().insert(caller);
        next.run(req).await
    } else {
        state.metrics.rate_limited.inc();
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "rate limit of {} requests per minute for this kind of request reached; retry in {} s",
                decision.limit, decision.retry_after_secs
            ),
        )
        .with_details(serde_json::json!({ "limitPerMinute": decision.limit, "class": format!("{class:?}").to_lowercase() }));
        err.retry_after = Some(decision.retry_after_secs);
        err.into_response()
    };
    for (name, value) in headers {
        resp.headers_mut()
            .insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
    Ok(resp)
}
