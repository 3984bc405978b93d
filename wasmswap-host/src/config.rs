//! Configuration: a TOML file, overridden by command-line flags, which
//! fall back to `WASMSWAP_*` environment variables.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

/// `wasmswap-host`: run WebAssembly services on this node.
#[derive(Debug, Default, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML configuration file (flags override it).
    #[arg(long, env = "WASMSWAP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve a component with no control plane: `name=path/to/app.wasm`
    /// (repeatable). The file is watched and hot-reloaded.
    #[arg(long = "service", value_name = "NAME=PATH")]
    pub services: Vec<String>,
    /// Data-plane address.
    #[arg(long, env = "WASMSWAP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Agent API address.
    #[arg(long, env = "WASMSWAP_AGENT_LISTEN")]
    pub agent_listen: Option<SocketAddr>,
    /// Bearer token of the agent API (without one, the agent API is off).
    #[arg(long, env = "WASMSWAP_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
    /// This node's id.
    #[arg(long, env = "WASMSWAP_NODE_ID")]
    pub node_id: Option<String>,
    /// Where versions and routes are kept across restarts.
    #[arg(long, env = "WASMSWAP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where compiled code is cached.
    #[arg(long, env = "WASMSWAP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Header carrying the sticky key.
    #[arg(long, env = "WASMSWAP_STICKY_HEADER")]
    pub sticky_header: Option<String>,
    /// Cookie carrying the sticky key (instead of a header).
    #[arg(long, env = "WASMSWAP_STICKY_COOKIE")]
    pub sticky_cookie: Option<String>,
    /// `text` or `json` logs.
    #[arg(long, env = "WASMSWAP_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Control plane to register with (`http://host:port`); needs the agent token.
    #[arg(long, env = "WASMSWAP_CONTROL_PLANE")]
    pub control_plane: Option<String>,
    /// Region reported to the control plane.
    #[arg(long, env = "WASMSWAP_REGION")]
    pub region: Option<String>,
    /// Zone reported to the control plane.
    #[arg(long, env = "WASMSWAP_ZONE")]
    pub zone: Option<String>,
}

/// The TOML file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    region: Option<String>,
    zone: Option<String>,
    listen: Option<SocketAddr>,
    agent_listen: Option<SocketAddr>,
    agent_token: Option<String>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    max_instances: Option<u32>,
    sticky_header: Option<String>,
    sticky_cookie: Option<String>,
    log_format: Option<String>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    epoch_tick_us: Option<u64>,
    keep_resident_mib: Option<u64>,
    low_priority_lane: Option<bool>,
    low_priority_window_ms: Option<u64>,
    isolate_memory_hogs: Option<bool>,
    isolation_window_ms: Option<u64>,
    isolation_cpu_share: Option<f64>,
    max_invoke_body_bytes: Option<usize>,
    max_modules: Option<u32>,
    control_plane: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    advertise_agent_url: Option<String>,
    advertise_data_url: Option<String>,
    #[serde(default)]
    hosts: HashMap<String, String>,
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    path: PathBuf,
}

/// Logs as text or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// This node's id.
    pub node_id: String,
    /// Region and zone (reported to a control plane).
    pub region: String,
    /// Zone within the region.
    pub zone: String,
    /// Data-plane address.
    pub listen: SocketAddr,
    /// Agent API address and token; `None`: no agent API.
    pub agent: Option<(SocketAddr, String)>,
    /// Versions and routes across restarts.
    pub state_dir: Option<PathBuf>,
    /// Compiled-code cache.
    pub cache_dir: Option<PathBuf>,
    /// Pooling allocator size.
    pub max_instances: u32,
    /// Sticky key source.
    pub sticky: crate::data::StickyKey,
    /// `Host` → service.
    pub hosts: HashMap<String, String>,
    /// Standalone services: name and file.
    pub services: Vec<(String, PathBuf)>,
    /// Logs.
    pub log_format: LogFormat,
    /// Slow-loris guard: a request's headers must arrive within this of
    /// their first byte (and a new connection's first byte within this).
    pub header_read_timeout: Duration,
    /// A kept-alive HTTP/1 connection idle this long between requests is
    /// closed; above clients' pool idle timeouts (90 s for reqwest).
    pub idle_timeout: Duration,
    /// How long a stop waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long an unload waits for calls to finish.
    pub drain_timeout: Duration,
    /// The runtime's epoch tick: how long a computing guest may hold an
    /// executor thread before other requests get it (and the granularity
    /// of timeouts and CPU shares).
    pub epoch_tick: Duration,
    /// Bytes of each pooled linear memory kept resident between instances
    /// (see `RuntimeConfig::memory_keep_resident`).
    pub keep_resident: u64,
    /// Whether calls that compute for long run on idle-priority threads of
    /// their own (see `RuntimeConfig::low_priority_lane`).
    pub low_priority_lane: bool,
    /// How long a version's calls start there after one of them computed
    /// for long or hit a limit (see `RuntimeConfig::low_priority_window`).
    pub low_priority_window: Duration,
    /// Whether a version whose call hit its memory limit runs its JSON
    /// calls in a worker process for [`isolation_window`](Self::isolation_window)
    /// (see [`crate::isolate`]). The worker is this executable again, which
    /// must call [`run_if_worker`](crate::worker::run_if_worker) first thing
    /// in `main` (`wasmswap-host` does; set
    /// [`isolation_worker`](Self::isolation_worker) otherwise). On in the
    /// binary's config file unless `isolate_memory_hogs = false`; off in
    /// `HostConfig::default()`, for embedders.
    pub isolation: bool,
    /// How long a version stays isolated after its last memory-limit hit
    /// (see `RuntimeConfig::isolation_window`).
    pub isolation_window: Duration,
    /// The executable started as the isolation worker; `None`: this one.
    pub isolation_worker: Option<PathBuf>,
    /// The share of one core that the isolation worker's calls of versions
    /// that hit a limit there within the last 10 s may use together,
    /// averaged over time, while the host serves calls of its own (see
    /// `cpu_budget`; on an idle host they run unpaced). By default 0.01;
    /// 1 is a whole core (no cap: the worker runs calls on one thread);
    /// `None`: no budget at all.
    pub isolation_cpu_share: Option<f64>,
    /// Largest `/_invoke` body.
    pub max_invoke_body: usize,
    /// Versions this node holds at most.
    pub max_modules: u32,
    /// Control plane base URL.
    pub control_plane: Option<String>,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Agent URL told to the control plane (default: the bound address).
    pub advertise_agent_url: Option<String>,
    /// Data-plane URL told to the control plane (default: the bound address).
    pub advertise_data_url: Option<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            node_id: "local".into(),
            region: "local".into(),
            zone: "local".into(),
            listen: ([127, 0, 0, 1], 8080).into(),
            agent: None,
            state_dir: None,
            cache_dir: None,
            max_instances: 1000,
            sticky: crate::data::StickyKey::Header(http::HeaderName::from_static("x-wasmswap-key")),
            hosts: HashMap::new(),
            services: Vec::new(),
            log_format: LogFormat::Text,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            epoch_tick: Duration::from_micros(500),
            keep_resident: 64 << 20,
            low_priority_lane: false,
            low_priority_window: Duration::from_secs(10),
            isolation: false,
            isolation_window: Duration::from_secs(60),
            isolation_worker: None,
            isolation_cpu_share: Some(0.01),
            max_invoke_body: 1 << 20,
            max_modules: 1000,
            control_plane: None,
            heartbeat_interval: Duration::from_secs(10),
            advertise_agent_url: None,
            advertise_data_url: None,
        }
    }
}

impl HostConfig {
    /// Resolves flags over the file over the defaults.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Self> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid configuration", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = HostConfig::default();
        let token = cli.agent_token.or(file.agent_token);
        let agent_addr = cli.agent_listen.or(file.agent_listen);
        let agent = match (agent_addr, token) {
            (addr, Some(t)) => {
                if t.len() < 16 {
                    bail!("the agent token must be at least 16 characters");
                }
                Some((addr.unwrap_or(([127, 0, 0, 1], 9090).into()), t))
            }
            (Some(a), None) => {
                bail!("the agent API on {a} needs a token (--agent-token or WASMSWAP_AGENT_TOKEN)")
            }
            (None, None) => None,
        };
        let sticky = match (
            cli.sticky_cookie.or(file.sticky_cookie),
            cli.sticky_header.or(file.sticky_header),
        ) {
            (Some(c), _) => crate::data::StickyKey::Cookie(c),
            (None, Some(h)) => crate::data::StickyKey::Header(
                http::HeaderName::try_from(h.as_str())
                    .with_context(|| format!("{h:?} is not a header name"))?,
            ),
            (None, None) => d.sticky,
        };
        let log_format = match cli.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log format {other:?}: use text or json"),
        };
        let mut services: Vec<(String, PathBuf)> =
            file.service.into_iter().map(|s| (s.name, s.path)).collect();
        for s in &cli.services {
            let (name, path) = s
                .split_once('=')
                .with_context(|| format!("--service {s:?}: use NAME=PATH"))?;
            crate::node::check_name("service", name)
                .map_err(|e| anyhow::anyhow!("--service: {}", e.message))?;
            services.push((name.to_string(), PathBuf::from(path)));
        }
        let ms = |v: Option<u64>, def: Duration| v.map_or(def, Duration::from_millis);
        let control_plane = cli.control_plane.or(file.control_plane);
        if let Some(cp) = &control_plane {
            if !cp.starts_with("http://") {
                bail!("control plane {cp:?}: use an http:// URL");
            }
            if agent.is_none() {
                bail!(
                    "a control plane needs the agent API: set --agent-token (shared with the control plane)"
                );
            }
        }
        Ok(HostConfig {
            node_id: cli.node_id.or(file.node_id).unwrap_or(d.node_id),
            region: cli.region.or(file.region).unwrap_or(d.region),
            zone: cli.zone.or(file.zone).unwrap_or(d.zone),
            listen: cli.listen.or(file.listen).unwrap_or(d.listen),
            agent,
            state_dir: cli.state_dir.or(file.state_dir),
            cache_dir: cli.cache_dir.or(file.cache_dir),
            max_instances: file.max_instances.unwrap_or(d.max_instances),
            sticky,
            hosts: file
                .hosts
                .into_iter()
                .map(|(h, s)| (h.to_ascii_lowercase(), s))
                .collect(),
            services,
            log_format,
            header_read_timeout: ms(file.header_read_timeout_ms, d.header_read_timeout),
            idle_timeout: match file.idle_timeout_ms {
                None => d.idle_timeout,
                Some(ms @ 1_000..=86_400_000) => Duration::from_millis(ms),
                Some(ms) => bail!(
                    "idle_timeout_ms = {ms}: use 1000 to 86400000 (a second to a day; above clients' pool idle timeouts, 90 s for reqwest)"
                ),
            },
            shutdown_grace: ms(file.shutdown_grace_ms, d.shutdown_grace),
            drain_timeout: ms(file.drain_timeout_ms, d.drain_timeout),
            epoch_tick: match file.epoch_tick_us {
                None => d.epoch_tick,
                Some(us @ 100..=1_000_000) => Duration::from_micros(us),
                Some(us) => bail!("epoch_tick_us = {us}: use 100 to 1000000 (100 µs to 1 s)"),
            },
            keep_resident: match file.keep_resident_mib {
                None => d.keep_resident,
                Some(mib @ 0..=4096) => mib << 20,
                Some(mib) => bail!("keep_resident_mib = {mib}: use 0 to 4096"),
            },
            low_priority_lane: file.low_priority_lane.unwrap_or(d.low_priority_lane),
            low_priority_window: match file.low_priority_window_ms {
                None => d.low_priority_window,
                Some(ms @ 0..=3_600_000) => Duration::from_millis(ms),
                Some(ms) => {
                    bail!("low_priority_window_ms = {ms}: use 0 to 3600000 (up to an hour)")
                }
            },
            // The binary's `main` starts the worker, so on by default here.
            isolation: file.isolate_memory_hogs.unwrap_or(true),
            isolation_window: match file.isolation_window_ms {
                None => d.isolation_window,
                Some(ms @ 1000..=3_600_000) => Duration::from_millis(ms),
                Some(ms) => {
                    bail!("isolation_window_ms = {ms}: use 1000 to 3600000 (1 s to an hour)")
                }
            },
            isolation_worker: None,
            isolation_cpu_share: match file.isolation_cpu_share {
                None => d.isolation_cpu_share,
                Some(share) if (0.01..=1.0).contains(&share) => Some(share),
                Some(share) => {
                    bail!("isolation_cpu_share = {share}: use 0.01 to 1 (a share of one core)")
                }
            },
            max_invoke_body: file.max_invoke_body_bytes.unwrap_or(d.max_invoke_body),
            max_modules: file.max_modules.unwrap_or(d.max_modules),
            control_plane,
            heartbeat_interval: ms(file.heartbeat_interval_ms, d.heartbeat_interval),
            advertise_agent_url: file.advertise_agent_url,
            advertise_data_url: file.advertise_data_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_flags_override_it() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/host.toml");
        let cli = Cli {
            config: Some(path.clone()),
            agent_token: Some("a-long-enough-token".into()),
            listen: Some(([127, 0, 0, 1], 18080).into()),
            ..Cli::default()
        };
        let c = HostConfig::from_cli(cli).unwrap();
        assert_eq!(
            (c.node_id.as_str(), c.region.as_str()),
            ("edge-1", "eu-west")
        );
        assert_eq!(c.listen, ([127, 0, 0, 1], 18080).into(), "the flag wins");
        assert_eq!(c.agent.as_ref().unwrap().0, ([127, 0, 0, 1], 9090).into());
        assert_eq!(
            c.hosts.get("hello.example.com").map(String::as_str),
            Some("hello")
        );
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.epoch_tick, Duration::from_micros(500));

        assert_eq!(c.keep_resident, 64 << 20);
        let c = from_file("keep_resident_mib = 0\n").unwrap();
        assert_eq!(c.keep_resident, 0);
        let e = from_file("keep_resident_mib = 5000\n").unwrap_err();
        assert!(format!("{e:#}").contains("keep_resident_mib = 5000: use 0 to 4096"));
        assert!(!from_file("").unwrap().low_priority_lane);
        let c = from_file("low_priority_lane = true\nlow_priority_window_ms = 0\n").unwrap();
        assert!(c.low_priority_lane);
        assert_eq!(c.low_priority_window, Duration::ZERO);
        assert!(from_file("").unwrap().isolation);
        let c = from_file("isolate_memory_hogs = false\nisolation_window_ms = 1000\n").unwrap();
        assert!(!c.isolation);
        assert_eq!(c.isolation_window, Duration::from_secs(1));
        assert_eq!(from_file("").unwrap().isolation_cpu_share, Some(0.01));
        let c = from_file("isolation_cpu_share = 0.25\n").unwrap();
        assert_eq!(c.isolation_cpu_share, Some(0.25));
        for bad in ["0", "1.5", "-0.5"] {
            let e = from_file(&format!("isolation_cpu_share = {bad}\n")).unwrap_err();
            assert!(format!("{e:#}").contains("isolation_cpu_share"), "{e:#}");
        }
        let e = from_file("isolation_window_ms = 999\n").unwrap_err();
        assert!(format!("{e:#}").contains("isolation_window_ms = 999: use 1000 to 3600000"));
        let e = from_file("low_priority_window_ms = 3600001\n").unwrap_err();
        assert!(format!("{e:#}").contains("low_priority_window_ms = 3600001: use 0 to 3600000"));
        assert_eq!(
            from_file("").unwrap().idle_timeout,
            Duration::from_secs(120)
        );
        let c = from_file("idle_timeout_ms = 300000\n").unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        let e = from_file("idle_timeout_ms = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("idle_timeout_ms = 0: use 1000 to 86400000"));
        let c = from_file("epoch_tick_us = 200\n").unwrap();
        assert_eq!(c.epoch_tick, Duration::from_micros(200));
        let e = from_file("epoch_tick_us = 20\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("epoch_tick_us = 20: use 100 to 1000000"),
            "{e:#}"
        );

        let e = from_file("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown field `listen_port`"),
            "{e:#}"
        );
    }

    /// The configuration from a file holding `text`, with no flags.
    fn from_file(text: &str) -> anyhow::Result<HostConfig> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        HostConfig::from_cli(Cli {
            config: Some(file.path().into()),
            ..Cli::default()
        })
    }
}
