//! The `wasmswap-host` binary: see the crate docs and `--help`.

use clap::Parser;
use wasmswap_host::{Cli, Host, HostConfig, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = HostConfig::from_cli(Cli::parse())?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let host = Host::start(config).await?;
    shutdown_signal().await;
    tracing::info!("stopping: no new connections; finishing in-flight requests");
    host.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
