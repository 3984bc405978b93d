//! The `wasmswap-control` binary: see the crate docs and `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmswap_control::ControlConfig;

/// The wasmswap control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "WASMSWAP_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file).
    #[arg(long, env = "WASMSWAP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory: embedded store and generated secrets (overrides the file).
    #[arg(long, env = "WASMSWAP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `postgres://…` metadata store (overrides the file).
    #[arg(long, env = "WASMSWAP_DATABASE_URL")]
    database_url: Option<String>,
    /// URL nodes reach this control plane at (overrides the file).
    #[arg(long, env = "WASMSWAP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Token shared with nodes (overrides the file).
    #[arg(long, env = "WASMSWAP_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "WASMSWAP_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an argon2 hash of a password read from stdin, for `auth.users`.
    HashPassword,
    /// Print the OpenAPI document (or, with --markdown, the API reference).
    Openapi {
        /// The Markdown reference (docs/api.md) instead of the JSON.
        #[arg(long)]
        markdown: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi { markdown }) = cli.command {
        let doc = wasmswap_control::api::reference::openapi_json();
        let text = if markdown {
            wasmswap_control::api::reference::markdown(&doc)
        } else {
            serde_json::to_string_pretty(&doc)? + "\n"
        };
        #[allow(clippy::print_stdout)]
        {
            print!("{text}");
        }
        return Ok(());
    }
    if let Some(Command::HashPassword) = cli.command {
        let mut password = String::new();
        std::io::stdin().read_line(&mut password)?;
        let hash = wasmswap_control::auth::hash_password(password.trim_end_matches(['\r', '\n']));
        #[allow(clippy::print_stdout)]
        {
            println!("{hash}");
        }
        return Ok(());
    }
    let telemetry = wasmswap_telemetry::init(
        "wasmswap-control",
        if cli.log_json {
            wasmswap_telemetry::LogFormat::Json
        } else {
            wasmswap_telemetry::LogFormat::Text
        },
        "info",
    )?;
    let mut config = match &cli.config {
        Some(path) => ControlConfig::from_toml(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?,
        None => ControlConfig::local("wasmswap-data")?,
    };
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(u) = cli.database_url {
        config.store.database_url = Some(u);
    }
    if let Some(u) = cli.public_url {
        config.public_url = Some(u);
    }
    if let Some(t) = cli.node_token {
        config.auth.node_token = Some(t);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    if config.auth.users.is_empty() {
        tracing::info!(
            file = %config.data_dir.join("admin-password").display(),
            "no users configured: log in as `admin` with the password in this file"
        );
    }
    let served = wasmswap_control::serve(listener, config, shutdown_signal()).await;
    telemetry.shutdown();
    served
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
