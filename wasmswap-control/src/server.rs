//! Building the state from a configuration and serving it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use tower::ServiceExt as _;
use wasmswap_server::ServerLimits;

use crate::api::{ApiSettings, AppState, router};
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::ControlConfig;
use crate::store::Store;

/// Opens the store and sets up auth for `config`.
pub async fn build_state(config: &ControlConfig, clock: Clock) -> anyhow::Result<AppState> {
    let store = Store::open(&config.store_config(), clock)
        .await
        .context("opening the store")?;
    let node_token = config.node_token()?;
    let auth = Authenticator::new(
        &config.signing_key()?,
        config
            .auth
            .issuer
            .clone()
            .unwrap_or_else(|| "wasmswap-control".into()),
        config.auth.token_ttl_secs.unwrap_or(3600),
        config.users()?,
        Some(node_token.clone()),
    )
    .context("setting up authentication")?;
    let settings = ApiSettings {
        heartbeat_timeout: config.heartbeat_timeout(),
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen)),
        rate_limits: config.rate_limits,
        node_call_timeout: Duration::from_secs(config.node_call_timeout_secs.unwrap_or(30).max(1)),
        node_load_timeout: Duration::from_secs(config.node_load_timeout_secs.unwrap_or(120).max(1)),
        blob_grace: Duration::from_secs(config.blob_grace_secs.unwrap_or(15 * 60)),
        housekeeping_every: Duration::from_millis(
            config.housekeeping_interval_ms.unwrap_or(60_000).max(10),
        ),
        engine_tick: Duration::from_millis(200),
        header_read_timeout: Duration::from_millis(
            config.header_read_timeout_ms.unwrap_or(10_000).max(1),
        ),
        idle_timeout: Duration::from_millis(
            config
                .idle_timeout_ms
                .unwrap_or(120_000)
                .clamp(1_000, 86_400_000),
        ),
    };
    Ok(AppState::new(store, auth, node_token, settings)?)
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// the requests in flight. Runs the housekeeping (rate-limit state, unused
/// binaries) in the background meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ControlConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config, Clock::system()).await?;
    serve_state(listener, state, shutdown).await
}

/// Like [`serve`], with a state built already.
pub async fn serve_state(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let (engine_stop, engine_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(state.engine().clone().run(async {
        let _ = engine_stopped.await;
    }));
    let app = router(state.clone());
    tracing::info!(addr = %listener.local_addr()?, "control plane serving");
    // The shared listener rather than `axum::serve`: it cuts off clients that
    // are slow to send their headers (or send nothing), caps connections and
    // bounds the graceful stop.
    let handler = move |req: http::Request<wasmswap_server::Incoming>, peer: SocketAddr| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            match app.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    let limits = ServerLimits {
        header_read_timeout: state.settings().header_read_timeout,
        idle_timeout: state.settings().idle_timeout,
        ..ServerLimits::default()
    };
    wasmswap_server::serve(listener, handler, limits, shutdown).await;
    housekeeping.abort();
    // The engine finishes its step (it saves after every one).
    let _ = engine_stop.send(());
    let _ = engine.await;
    state.store().close().await;
    Ok(())
}

async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(state.settings().housekeeping_every);
    let grace_ms = i64::try_from(state.settings().blob_grace.as_millis()).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        state.tidy();
        match state.store().sweep_blobs(grace_ms).await {
            Ok(swept) if !swept.is_empty() => {
                tracing::info!(count = swept.len(), "removed unused binaries")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping unused binaries failed"),
        }
    }
}
