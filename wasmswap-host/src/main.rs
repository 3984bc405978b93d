//! The `wasmswap-host` binary: see the crate docs and `--help`.

use clap::Parser;
use wasmswap_host::{Cli, Host, HostConfig, LogFormat};

fn main() -> anyhow::Result<()> {
    // First: started as this host's isolation worker, be that and nothing else.
    if let Some(worker) = wasmswap_host::worker::run_if_worker() {
        return worker;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = HostConfig::from_cli(Cli::parse())?;
    let format = match config.log_format {
        LogFormat::Json => wasmswap_telemetry::LogFormat::Json,
        LogFormat::Text => wasmswap_telemetry::LogFormat::Text,
    };
    let telemetry = wasmswap_telemetry::init("wasmswap-host", format, "info")?;
    let host = Host::start(config).await?;
    shutdown_signal().await;
    tracing::info!("stopping: no new connections; finishing in-flight requests");
    host.shutdown().await;
    telemetry.shutdown();
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
