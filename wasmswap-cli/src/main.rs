//! The `wasmswap` binary: see `wasmswap --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use wasmswap_cli::client::{Api, CliError, Credentials, DEFAULT_URL, exit};
use wasmswap_cli::cluster::{ClusterOptions, LocalCluster, SERVICE};
use wasmswap_cli::demo::{self, DemoOptions};
use wasmswap_cli::deployments::{self, DeploySpec};
use wasmswap_cli::fleet;
use wasmswap_cli::modules::{self, Registration};
use wasmswap_cli::output::{self, say};

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  other failure
  2  usage error (bad flags, unreadable file)
  3  not logged in, token rejected, or the role may not do this (401/403)
  4  not found (404)
  5  refused as invalid or conflicting (400/409/413/415/422)
  6  control plane unreachable, overloaded or failing (429/5xx)
  7  a watched rollout ended failed or rolled back
  8  a watched rollout waits for someone (execute, approval, a resume
     after a failed check) or did not end within --timeout";

/// Run WebAssembly at the edge and change it while it runs.
#[derive(Debug, Parser)]
#[command(name = "wasmswap", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Control plane URL (default: the saved login's, else http://127.0.0.1:8000).
    #[arg(long, global = true, env = "WASMSWAP_URL")]
    url: Option<String>,
    /// Bearer token (default: the saved login's).
    #[arg(long, global = true, env = "WASMSWAP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local cluster: control plane, edge nodes in two regions, the example service.
    Up(UpArgs),
    /// Log in and save the token for the other commands.
    Login {
        /// User name.
        #[arg(long, short, default_value = "admin")]
        user: String,
        /// Read the password from this file (default: from stdin).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Forget the saved login.
    Logout,
    /// Module versions.
    #[command(subcommand)]
    Modules(ModulesCmd),
    /// Roll a module version out.
    Deploy(Box<DeployArgs>),
    /// Deployments: a list, or one deployment (--watch follows it to the end).
    Status {
        /// Deployment id (none: list them).
        id: Option<String>,
        /// Only this service's deployments.
        #[arg(long)]
        service: Option<String>,
        /// Follow the deployment with a progress bar until it ends.
        #[arg(long, short)]
        watch: bool,
        /// With --watch: give up (exit 8) after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Move a deployment to its next phase (or, with --full, to 100 %).
    Promote {
        /// Deployment id.
        id: String,
        /// Skip the remaining phases.
        #[arg(long)]
        full: bool,
    },
    /// Hold a deployment where it is.
    Pause {
        /// Deployment id.
        id: String,
    },
    /// Continue a paused deployment.
    Resume {
        /// Deployment id.
        id: String,
    },
    /// Stop a deployment and restore the stable version.
    Abort {
        /// Deployment id.
        id: String,
    },
    /// Roll a deployment back to the version it replaced.
    Rollback {
        /// Deployment id.
        id: String,
    },
    /// Approve a production deployment (admin).
    Approve {
        /// Deployment id.
        id: String,
    },
    /// Edge nodes.
    Nodes {
        #[command(subcommand)]
        cmd: Option<NodesCmd>,
    },
    /// WIT interfaces.
    #[command(subcommand)]
    Interfaces(InterfacesCmd),
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Data directory (store, secrets, node state); kept across runs.
    #[arg(long, default_value = ".wasmswap")]
    data_dir: PathBuf,
    /// Control plane port; the nodes' data planes take the next ones (0: any free ports).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Regions (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "eu-west,us-east")]
    regions: Vec<String>,
    /// Nodes per region.
    #[arg(long, default_value_t = 2)]
    nodes_per_region: usize,
    /// Run a canary to the other version of the example under generated traffic.
    #[arg(long)]
    demo: bool,
    /// Seconds each demo canary stage is held.
    #[arg(long, default_value_t = 5)]
    demo_stage_seconds: u64,
    /// Demo requests per second.
    #[arg(long, default_value_t = 200)]
    demo_rps: u32,
    /// Stop the cluster when the demo ends (instead of waiting for Ctrl-C).
    #[arg(long)]
    exit_after_demo: bool,
    /// Log (to stderr) as JSON lines with each span's trace id.
    #[arg(long)]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum ModulesCmd {
    /// Register a .wasm file as a new version.
    Register {
        /// The .wasm file.
        path: PathBuf,
        #[command(flatten)]
        registration: Registration,
    },
    /// List module versions.
    List {
        /// Only this module name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one version.
    Show {
        /// Module id (`name-vX.Y.Z`).
        id: String,
    },
    /// A component's WIT world.
    Wit {
        /// Module id.
        id: String,
    },
    /// WIT changes between two versions, and whether they break callers.
    Diff {
        /// Old module id.
        old: String,
        /// New module id.
        new: String,
    },
    /// Delete a version (refused while deployed).
    Delete {
        /// Module id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// Module id to roll out (`name-vX.Y.Z`).
    module_id: String,
    /// canary, blue-green, rolling, regional or ab.
    #[arg(long, short, default_value = "canary")]
    strategy: String,
    /// Canary stages, percent (e.g. 10,25,50,100).
    #[arg(long, value_delimiter = ',')]
    stages: Vec<f64>,
    /// How long each canary stage / A/B experiment / region hold lasts (ISO-8601, e.g. PT1M).
    #[arg(long)]
    period: Option<String>,
    /// Wait for `promote` after each passed stage (canary, A/B).
    #[arg(long)]
    manual: bool,
    /// Rolling: nodes per batch.
    #[arg(long)]
    batch_size: Option<u32>,
    /// A/B: variant B's share, percent.
    #[arg(long)]
    variant_b: Option<f64>,
    /// Regional: region order (comma-separated).
    #[arg(long, value_delimiter = ',')]
    region_order: Vec<String>,
    /// Further strategy settings as JSON (merged last).
    #[arg(long)]
    config: Option<String>,
    /// Only these regions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Only these nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Replicas: 1–3 or `all`.
    #[arg(long)]
    replicas: Option<String>,
    /// Environment (production needs an admin's approval).
    #[arg(long)]
    environment: Option<String>,
    /// Health check: GET this path (wasi-http services).
    #[arg(long)]
    health_path: Option<String>,
    /// Health check: call this function (JSON services).
    #[arg(long)]
    health_function: Option<String>,
    /// Do not roll back by itself on crash, error or memory triggers.
    #[arg(long)]
    no_auto_rollback: bool,
    /// Calls needed before metrics are judged.
    #[arg(long)]
    min_samples: Option<u64>,
    /// Create it but do not start it.
    #[arg(long)]
    no_start: bool,
    /// Follow it to the end (like `status --watch`).
    #[arg(long, short)]
    watch: bool,
    /// With --watch: give up (exit 8) after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum NodesCmd {
    /// List nodes.
    List {
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Show one node.
    Show {
        /// Node id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum InterfacesCmd {
    /// List interface versions.
    List,
    /// Show one, with its review against the previous version.
    Show {
        /// Interface id.
        id: String,
    },
    /// Register a WIT file as `namespace:name@version`.
    Register {
        /// The WIT file.
        file: PathBuf,
        /// `namespace:name@version`.
        #[arg(long)]
        id: String,
        /// Which interface of the package (default: its only one).
        #[arg(long)]
        interface: Option<String>,
    },
    /// Accept an interface version's breaking changes (admin).
    Approve {
        /// Interface id.
        id: String,
    },
}

fn main() -> ExitCode {
    // The local cluster's nodes start this executable as their isolation
    // worker.
    if let Some(worker) = wasmswap_host::worker::run_if_worker() {
        return match worker {
            Ok(()) => ExitCode::from(exit::OK),
            Err(e) => fail(&CliError::Other(e)),
        };
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&CliError::Other(e.into())),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => fail(&e),
    }
}

#[allow(clippy::print_stderr)]
fn fail(e: &CliError) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(e.exit_code())
}

/// The client for the flags, the environment and the saved login.
fn api(cli: &Cli) -> Api {
    let saved = Credentials::load();
    let url = cli
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.url.clone()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    // A saved token is only sent to the control plane it came from.
    let token = cli.token.clone().or_else(|| {
        saved
            .filter(|c| c.url.trim_end_matches('/') == url.trim_end_matches('/'))
            .map(|c| c.token)
    });
    Api::new(&url, token)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    let api = api(&cli);
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Login {
            user,
            password_file,
        } => {
            let password = match password_file {
                Some(f) => std::fs::read_to_string(&f)
                    .map_err(|e| CliError::Input(format!("reading {}: {e}", f.display())))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| CliError::Input(format!("reading the password: {e}")))?;
                    line
                }
            };
            let creds = Api::new(api.base(), None)
                .login(&user, password.trim_end_matches(['\r', '\n']))
                .await?;
            let path = creds.save()?;
            if json {
                output::json(
                    &json!({ "user": creds.user, "role": creds.role, "url": creds.url, "expiresAt": creds.expires_at }),
                );
            } else {
                say(format!(
                    "logged in to {} as {} ({}) until {}; saved to {}",
                    creds.url,
                    creds.user,
                    creds.role,
                    creds.expires_at,
                    path.display()
                ));
            }
            Ok(())
        }
        Command::Logout => {
            let path = Credentials::path();
            match std::fs::remove_file(&path) {
                Ok(()) => say(format!("removed {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => say("not logged in"),
                Err(e) => return Err(CliError::Input(format!("removing {}: {e}", path.display()))),
            }
            Ok(())
        }
        Command::Modules(cmd) => modules_cmd(&api, cmd, json).await,
        Command::Deploy(args) => deploy(&api, *args, json).await,
        Command::Status {
            id,
            service,
            watch,
            timeout,
        } => match id {
            None => deployments::list(&api, service.as_deref(), json).await,
            Some(id) if watch => deployments::watch(&api, &id, json, timeout)
                .await
                .map(|_| ()),
            Some(id) => {
                let d = api
                    .get(&format!("/wasm/deployments/{}", modules::encode(&id)))
                    .await?;
                deployments::show(&d, json);
                Ok(())
            }
        },
        Command::Promote { id, full } => {
            let body = full.then(|| json!({ "full": true }));
            control(&api, &id, "promote", body.as_ref(), json).await
        }
        Command::Pause { id } => control(&api, &id, "pause", None, json).await,
        Command::Resume { id } => control(&api, &id, "resume", None, json).await,
        Command::Abort { id } => control(&api, &id, "abort", None, json).await,
        Command::Rollback { id } => control(&api, &id, "rollback", None, json).await,
        Command::Approve { id } => control(&api, &id, "approve", None, json).await,
        Command::Nodes { cmd } => match cmd {
            None => fleet::nodes(&api, None, json).await,
            Some(NodesCmd::List { region }) => fleet::nodes(&api, region.as_deref(), json).await,
            Some(NodesCmd::Show { id }) => fleet::node(&api, &id, json).await,
        },
        Command::Interfaces(cmd) => match cmd {
            InterfacesCmd::List => fleet::interfaces(&api, json).await,
            InterfacesCmd::Show { id } => fleet::interface(&api, &id, json).await,
            InterfacesCmd::Register {
                file,
                id,
                interface,
            } => fleet::register_interface(&api, &file, &id, interface.as_deref(), json).await,
            InterfacesCmd::Approve { id } => {
                let v = api
                    .post(
                        &format!("/wasm/interfaces/{}/approve", modules::encode(&id)),
                        None,
                    )
                    .await?;
                if json {
                    output::json(&v);
                } else {
                    say(format!("approved {id}"));
                }
                Ok(())
            }
        },
    }
}

async fn modules_cmd(api: &Api, cmd: ModulesCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        ModulesCmd::Register { path, registration } => {
            let m = modules::register(api, &path, &registration).await?;
            modules::show(&m, json);
            Ok(())
        }
        ModulesCmd::List { name } => modules::list(api, name.as_deref(), json).await,
        ModulesCmd::Show { id } => {
            let m = api
                .get(&format!("/wasm/modules/{}", modules::encode(&id)))
                .await?;
            modules::show(&m, json);
            Ok(())
        }
        ModulesCmd::Wit { id } => modules::wit(api, &id, json).await,
        ModulesCmd::Diff { old, new } => modules::diff(api, &old, &new, json).await,
        ModulesCmd::Delete { id } => {
            api.delete(&format!("/wasm/modules/{}", modules::encode(&id)))
                .await?;
            if json {
                output::json(&json!({ "deleted": id }));
            } else {
                say(format!("deleted {id}"));
            }
            Ok(())
        }
    }
}

async fn deploy(api: &Api, a: DeployArgs, json: bool) -> Result<(), CliError> {
    let mut config = serde_json::Map::new();
    if !a.stages.is_empty() {
        config.insert("stages".into(), json!(a.stages));
    }
    if let Some(p) = &a.period {
        let key = match a.strategy.as_str() {
            "ab" => "experimentDuration",
            "regional" => "interRegionDelay",
            "rolling" => "batchDelay",
            _ => "evaluationPeriod",
        };
        config.insert(key.into(), json!(p));
    }
    if a.manual {
        config.insert("autoPromote".into(), json!(false));
    }
    if let Some(b) = a.batch_size {
        config.insert("batchSize".into(), json!(b));
    }
    if let Some(b) = a.variant_b {
        config.insert("variantBPercentage".into(), json!(b));
    }
    if !a.region_order.is_empty() {
        config.insert("regionOrder".into(), json!(a.region_order));
    }
    if let Some(extra) = &a.config {
        let extra: Value = serde_json::from_str(extra)
            .map_err(|e| CliError::Input(format!("--config is not JSON: {e}")))?;
        let Value::Object(extra) = extra else {
            return Err(CliError::Input("--config must be a JSON object".into()));
        };
        config.extend(extra);
    }
    let spec = DeploySpec {
        module_id: a.module_id,
        strategy: a.strategy,
        strategy_config: Value::Object(config),
        regions: a.regions,
        nodes: a.nodes,
        replicas: a.replicas,
        environment: a.environment,
        health_path: a.health_path,
        health_function: a.health_function,
        auto_rollback: !a.no_auto_rollback,
        min_samples: a.min_samples,
    };
    let d = deployments::deploy(api, &spec.to_json(), !a.no_start).await?;
    let id = d["deploymentId"].as_str().unwrap_or_default().to_string();
    if a.watch {
        if !json {
            say(format!("deployment {id} started"));
        }
        return deployments::watch(api, &id, json, a.timeout)
            .await
            .map(|_| ());
    }
    if json {
        output::json(&d);
    } else {
        say(format!(
            "deployment {id} {}: follow it with `wasmswap status {id} --watch`",
            d["status"].as_str().unwrap_or("-")
        ));
    }
    Ok(())
}

async fn control(
    api: &Api,
    id: &str,
    action: &str,
    body: Option<&Value>,
    json: bool,
) -> Result<(), CliError> {
    let d = deployments::control(api, id, action, body).await?;
    if json {
        output::json(&d);
    } else {
        say(format!("{action}: {}", deployments::summary_line(&d)));
    }
    Ok(())
}

/// `wasmswap up`.
async fn up(args: UpArgs) -> Result<(), CliError> {
    // The cluster's own logs stay quiet unless RUST_LOG asks: the terminal
    // is for the summary and the demo.
    let telemetry = wasmswap_telemetry::init(
        "wasmswap-local",
        if args.log_json {
            wasmswap_telemetry::LogFormat::Json
        } else {
            wasmswap_telemetry::LogFormat::Text
        },
        // JSON logs are for machines: info, with each request's trace id.
        if args.log_json { "info" } else { "warn" },
    )?;
    let opts = ClusterOptions {
        data_dir: args.data_dir.clone(),
        port: args.port,
        regions: args.regions.clone(),
        nodes_per_region: args.nodes_per_region.max(1),
        users: Vec::new(),
    };
    say(format!(
        "starting a local cluster in {} ({} region(s) × {} node(s))…",
        opts.data_dir.display(),
        opts.regions.len(),
        opts.nodes_per_region
    ));
    let cluster = LocalCluster::start(&opts).await?;
    cluster.bootstrap().await?;
    let live = cluster.serving_version().await?.ok_or_else(|| {
        anyhow::anyhow!(
            "the example service does not answer on {}",
            cluster.nodes[0].data_url
        )
    })?;
    // Log the CLI in to this cluster, like `kind` writes a kubeconfig.
    let password = std::fs::read_to_string(&cluster.admin_password_file)
        .map_err(|e| CliError::Input(format!("reading the admin password: {e}")))?;
    let creds = Api::new(&cluster.control_url, None)
        .login("admin", password.trim())
        .await?;
    if let Some(old) = Credentials::load().filter(|c| c.url != creds.url) {
        say(format!(
            "note: replacing the CLI's saved login to {} with this cluster's",
            old.url
        ));
    }
    let saved = creds.save()?;
    say("");
    say(format!("control plane  {}/api/v1", cluster.control_url));
    say(format!("dashboard      {}/", cluster.control_url));
    say(format!(
        "admin login    user `admin`, password in {}",
        cluster.admin_password_file.display()
    ));
    say(format!("CLI login      saved to {}", saved.display()));
    say(output::table(
        &["NODE", "REGION", "DATA PLANE"],
        cluster
            .nodes
            .iter()
            .map(|n| vec![n.id.clone(), n.region.clone(), n.data_url.clone()]),
    ));
    say(format!(
        "service `{SERVICE}` serving {live}: curl {}/{SERVICE}/",
        cluster.nodes[0].data_url
    ));
    say("try: wasmswap nodes · wasmswap modules list · wasmswap status");
    let mut stop_now = args.demo && args.exit_after_demo;
    if args.demo {
        let urls = cluster.nodes.iter().map(|n| n.data_url.clone()).collect();
        let demo_opts = DemoOptions {
            stage_seconds: args.demo_stage_seconds,
            rps: args.demo_rps,
        };
        let summary = demo::run(cluster.api(), &live, urls, &demo_opts, ctrl_c()).await;
        let interrupted = match summary {
            Ok(s) => {
                demo::print_summary(&s);
                s.interrupted
            }
            Err(e) => {
                say(format!("demo failed: {e}"));
                false
            }
        };
        // Ctrl-C during the demo stops everything, like it does after it.
        stop_now |= interrupted;
    }
    if !stop_now {
        say("cluster running; Ctrl-C stops it");
        ctrl_c().await;
    }
    say("stopping: nodes finish their requests, then the control plane…");
    cluster.shutdown().await?;
    telemetry.shutdown();
    say("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn ctrl_c() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
