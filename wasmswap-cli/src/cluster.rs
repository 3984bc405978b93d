//! A local cluster in one process: the control plane with its embedded
//! store (SQLite + a blob directory) and edge nodes in several regions, all
//! on 127.0.0.1 — what `wasmswap up` runs, and what the tests drive.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use wasmswap_control::ControlConfig;
use wasmswap_control::auth::{Role, UserConfig, hash_password};
use wasmswap_host::{Host, HostConfig};

use crate::client::{Api, CliError};
use crate::deployments;
use crate::modules::{self, Registration};

/// The bundled example service (`examples/guests/http-hello`, v1 and v2).
pub const SERVICE: &str = "hello";
/// Its two versions: the module ids the control plane gives them.
pub const V1: &str = "hello-v1.0.0";
/// Version 2.
pub const V2: &str = "hello-v2.0.0";

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Store, secrets and node state live here (kept across runs).
    pub data_dir: PathBuf,
    /// The control plane's port; nodes' data planes take the next ones.
    /// 0: every listener on a free port.
    pub port: u16,
    /// Regions, each with `nodes_per_region` nodes.
    pub regions: Vec<String>,
    /// Nodes in each region.
    pub nodes_per_region: usize,
    /// Users besides the bootstrap admin: name, password, role.
    pub users: Vec<(String, String, Role)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".wasmswap"),
            port: 8000,
            regions: vec!["eu-west".into(), "us-east".into()],
            nodes_per_region: 2,
            users: Vec::new(),
        }
    }
}

/// One running edge node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// Region.
    pub region: String,
    /// Its data plane (`http://127.0.0.1:port`).
    pub data_url: String,
}

/// The running cluster.
#[derive(Debug)]
pub struct LocalCluster {
    /// The control plane's URL (API under `/api/v1`, dashboard at `/`).
    pub control_url: String,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// The bootstrap admin's generated password.
    pub admin_password_file: PathBuf,
    api: Api,
    hosts: Vec<Host>,
    stop: tokio::sync::oneshot::Sender<()>,
    control: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl LocalCluster {
    /// Starts the control plane and the nodes, waits until every node has
    /// registered and is healthy, and logs in as the bootstrap admin.
    pub async fn start(opts: &ClusterOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
        let control_dir = opts.data_dir.join("control");
        let mut config = ControlConfig::local(&control_dir)?;
        config.listen = SocketAddr::from(([127, 0, 0, 1], opts.port));
        config.heartbeat_timeout_secs = Some(10);
        // One person on a laptop: the dashboard polls every second and the
        // demo reads often, so reads are not the production default of 300/min.
        config.rate_limits.read = 20_000;
        config.rate_limits.deploy = 600;
        config.rate_limits.register = 600;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "binding the control plane to {} (is another cluster running? use --port)",
                    config.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let control_url = format!("http://{addr}");
        config.listen = addr;
        config.public_url = Some(control_url.clone());
        let node_token = config.node_token()?;
        // Creates the admin password file on first start.
        let mut users = config.users()?;
        users.extend(opts.users.iter().map(|(name, password, role)| UserConfig {
            username: name.clone(),
            password_hash: hash_password(password),
            role: *role,
        }));
        config.auth.users = users;
        let admin_password_file = control_dir.join("admin-password");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let control = tokio::spawn(wasmswap_control::serve(listener, config, async {
            let _ = stopped.await;
        }));

        let mut hosts = Vec::new();
        let mut nodes = Vec::new();
        let mut next_port = if opts.port == 0 { 0 } else { opts.port + 1 };
        for region in &opts.regions {
            for i in 1..=opts.nodes_per_region {
                let id = format!("{region}-{i}");
                let dir = opts.data_dir.join("nodes").join(&id);
                let listen = SocketAddr::from(([127, 0, 0, 1], next_port));
                if next_port != 0 {
                    next_port += 1;
                }
                let host = Host::start(HostConfig {
                    node_id: id.clone(),
                    region: region.clone(),
                    zone: format!("{region}-a"),
                    listen,
                    agent: Some((SocketAddr::from(([127, 0, 0, 1], 0)), node_token.clone())),
                    state_dir: Some(dir.join("state")),
                    cache_dir: Some(dir.join("cache")),
                    max_instances: 200,
                    control_plane: Some(control_url.clone()),
                    heartbeat_interval: Duration::from_secs(2),
                    shutdown_grace: Duration::from_secs(5),
                    drain_timeout: Duration::from_secs(5),
                    // As the host binary does: a tenant that keeps hitting
                    // its memory limit runs in a worker process (this
                    // executable again, see `main`).
                    isolation: true,
                    ..HostConfig::default()
                })
                .await
                .with_context(|| format!("starting node {id} on {listen}"))?;
                nodes.push(NodeInfo {
                    id,
                    region: region.clone(),
                    data_url: format!("http://{}", host.data_addr()),
                });
                hosts.push(host);
            }
        }

        let password = std::fs::read_to_string(&admin_password_file)
            .with_context(|| format!("reading {}", admin_password_file.display()))?;
        let creds = Api::new(&control_url, None)
            .login("admin", password.trim())
            .await
            .context("logging in as admin")?;
        let api = Api::new(&control_url, Some(creds.token));
        let cluster = Self {
            control_url,
            nodes,
            admin_password_file,
            api,
            hosts,
            stop,
            control,
        };
        cluster.wait_for_nodes().await?;
        Ok(cluster)
    }

    /// A client logged in as the bootstrap admin.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The running nodes' in-process handles.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    async fn wait_for_nodes(&self) -> anyhow::Result<()> {
        let want: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        for _ in 0..200 {
            let listed = self.api.get("/wasm/nodes").await?;
            let healthy = listed
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["status"] == "healthy")
                .filter(|n| want.contains(&n["nodeId"].as_str().unwrap_or_default()))
                .count();
            if healthy == want.len() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the nodes did not all register with the control plane within 10 s")
    }

    /// Registers the bundled service's two versions (if they are not yet)
    /// and, unless one is serving already, rolls v1 out to every node.
    /// Returns the module id serving now.
    pub async fn bootstrap(&self) -> Result<String, CliError> {
        for (version, bytes) in [
            ("1.0.0", test_programs::HTTP_HELLO_V1_COMPONENT_BYTES),
            ("2.0.0", test_programs::HTTP_HELLO_V2_COMPONENT_BYTES),
        ] {
            let reg = Registration {
                name: SERVICE.into(),
                version: version.into(),
                description: Some(format!("the bundled wasi-http example, {version}")),
                ..Registration::default()
            };
            match modules::register_bytes(&self.api, bytes.to_vec(), &reg).await {
                Ok(_) => {}
                Err(CliError::Api { status: 409, .. }) => {} // registered on an earlier run
                Err(e) => return Err(e),
            }
        }
        if let Some(live) = self.live_version().await? {
            return Ok(live);
        }
        let spec = json!({
            "moduleId": V1,
            "strategy": "rolling",
            "replicas": "all",
            "strategyConfig": { "batchSize": self.nodes.len() },
            "healthCheck": { "httpPath": "/health", "intervalMs": 100 },
        });
        let d = deployments::deploy(&self.api, &spec, true).await?;
        let id = d["deploymentId"].as_str().unwrap_or_default().to_string();
        self.wait_for(&id).await?;
        Ok(V1.to_string())
    }

    /// The module id the service's latest completed deployment made live.
    pub async fn live_version(&self) -> Result<Option<String>, CliError> {
        let list = self
            .api
            .get(&format!(
                "/wasm/deployments?service={SERVICE}&status=completed&limit=1"
            ))
            .await?;
        Ok(list[0]["moduleId"].as_str().map(str::to_string))
    }

    /// The module id the first node's data plane answers `hello` with now
    /// (what is really serving, whatever the deployment history says).
    pub async fn serving_version(&self) -> Result<Option<String>, CliError> {
        let url = format!("{}/{SERVICE}/", self.nodes[0].data_url);
        let resp = reqwest::get(&url)
            .await
            .map_err(|e| CliError::Unreachable {
                url,
                reason: e.to_string(),
            })?;
        Ok(resp
            .headers()
            .get("x-wasmswap-version")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{SERVICE}-v{v}")))
    }

    /// Waits (quietly) until deployment `id` ends; an error unless it completed.
    pub async fn wait_for(&self, id: &str) -> Result<Value, CliError> {
        let quiet = deployments::Bar::new(true);
        let d =
            deployments::follow(&self.api, id, &quiet, None, Duration::from_millis(100)).await?;
        deployments::completed(&self.api, id, d).await
    }

    /// Stops the nodes (finishing their requests), then the control plane
    /// (finishing its engine step and closing the store).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for h in self.hosts {
            h.shutdown().await;
        }
        let _ = self.stop.send(());
        self.control.await.context("control plane task")?
    }
}

/// Where a data directory's admin password lives.
pub fn admin_password_file(data_dir: &Path) -> PathBuf {
    data_dir.join("control").join("admin-password")
}
