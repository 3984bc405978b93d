//! `wasmswap-host`: the edge node.
//!
//! One process per node, embedding `wasmswap-core`:
//! - a **data plane** (HTTP/1.1 and HTTP/2, hyper) that routes requests to
//!   services by `Host` or by path prefix `/{service}/…` (the guest sees the
//!   rest of the path), serves them with wasi-http components, answers
//!   `POST /_invoke/{service}/{function}` JSON calls, and names the version
//!   that answered in `x-wasmswap-version`;
//! - a **node agent API** on its own listener, behind a bearer token: load a
//!   version by SHA-256 (fetched from a URL, verified, compiled or taken
//!   from the cache, kept warm), set a route (stable, candidate with a
//!   weight, split or mirror), roll back, unload after drain, health-check
//!   one version, status, and Prometheus `GET /metrics`;
//! - local **state** (versions, routes, binaries) so a restarted node serves
//!   its last routes before any control plane is reachable;
//! - a **standalone mode** (`--service name=path`) that serves component
//!   files and hot-reloads them when they change.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = wasmswap_host::HostConfig {
//!     services: vec![("hello".into(), "hello.wasm".into())],
//!     ..Default::default()
//! };
//! let host = wasmswap_host::Host::start(config).await?;
//! println!("serving on http://{}", host.data_addr());
//! host.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod agent;
pub mod body;
pub mod config;
pub mod control;
mod cpu_budget;
pub mod data;
pub mod fetch;
pub mod isolate;
pub mod metrics;
pub mod node;
mod relay;
pub mod standalone;
mod trace;
pub mod worker;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmswap_core::Runtime;

pub use agent::{Agent, AgentConfig};
pub use config::{Cli, HostConfig, LogFormat};
pub use data::{DataPlane, DataPlaneConfig, StickyKey, VERSION_HEADER};
pub use node::{HealthSpec, Node, NodeOptions, RouteMode, RouteSpec, VersionSpec};
pub use wasmswap_server::ServerLimits;

/// Runs `work` until it ends or `stop` resolves.
async fn until(work: impl Future<Output = ()>, stop: impl Future<Output = ()>) {
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

/// A running host: its listeners and the tasks serving them.
#[derive(Debug)]
pub struct Host {
    node: Node,
    data_addr: SocketAddr,
    agent_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Host {
    /// Builds the runtime and node, restores saved state, loads standalone
    /// services, binds the listeners and starts serving.
    pub async fn start(config: HostConfig) -> anyhow::Result<Host> {
        let mut rc = Runtime::builder();
        rc.max_instances(config.max_instances);
        rc.epoch_tick(config.epoch_tick);
        rc.memory_keep_resident(config.keep_resident);
        rc.low_priority_lane(config.low_priority_lane);
        rc.low_priority_window(config.low_priority_window);
        if let Some(dir) = &config.cache_dir {
            rc.cache_dir(dir);
        }
        let defaults = NodeOptions::default();
        let isolator = config.isolation.then(|| {
            isolate::WorkerProcess::new(isolate::WorkerConfig {
                program: config.isolation_worker.clone(),
                settings: worker::WorkerSettings {
                    token: String::new(),
                    max_instances: config.max_instances,
                    epoch_tick_us: config.epoch_tick.as_micros() as u64,
                    keep_resident: config.keep_resident,
                    cache_dir: config.cache_dir.clone(),
                    max_binary_bytes: defaults.max_binary_bytes,
                    cpu_share: config.isolation_cpu_share,
                },
            })
        });
        if let Some(isolator) = &isolator {
            rc.isolator(std::sync::Arc::new(isolator.clone()));
            rc.isolation_window(config.isolation_window);
        }
        let runtime = rc.build().context("building the runtime")?;
        let node = Node::new(
            runtime,
            NodeOptions {
                state_dir: config.state_dir.clone(),
                max_modules: config.max_modules as usize,
                // The control plane's binary downloads take the token the
                // node registers with.
                fetch_token: config
                    .control_plane
                    .as_ref()
                    .and(config.agent.as_ref())
                    .map(|(_, token)| token.clone()),
                isolator,
                ..defaults
            },
        )?;
        // Saved routes first: the node serves what it served before any
        // control plane answers.
        node.restore().await.context("restoring node state")?;
        let mut next = Vec::new();
        for (name, path) in &config.services {
            next.push(standalone::serve_file(&node, name, path).await?);
        }
        let limits = ServerLimits {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            shutdown_grace: config.shutdown_grace,
            ..ServerLimits::default()
        };
        let (stop, _) = watch::channel(false);
        let stopped = |stop: &watch::Sender<bool>| {
            let mut rx = stop.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the data plane to {}", config.listen))?;
        let data_addr = listener.local_addr()?;
        let data = DataPlane::new(
            node.clone(),
            DataPlaneConfig {
                sticky: config.sticky.clone(),
                hosts: config.hosts.clone(),
                max_invoke_body: config.max_invoke_body,
            },
        );
        let handler = move |req, _peer| {
            let data = data.clone();
            async move { data.handle(req).await }
        };
        tasks.push(tokio::spawn(wasmswap_server::serve(
            listener,
            handler,
            limits,
            stopped(&stop),
        )));

        let mut agent_addr = None;
        if let Some((addr, token)) = &config.agent {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the agent API to {addr}"))?;
            agent_addr = Some(listener.local_addr()?);
            let agent = Agent::new(
                node.clone(),
                AgentConfig {
                    token: token.clone(),
                    drain_timeout: config.drain_timeout,
                    max_body: 1 << 20,
                },
            );
            let handler = move |req, _peer| {
                let agent = agent.clone();
                async move { agent.handle(req).await }
            };
            tasks.push(tokio::spawn(wasmswap_server::serve(
                listener,
                handler,
                limits,
                stopped(&stop),
            )));
        }

        for ((name, path), first) in config.services.iter().zip(next) {
            let watcher = standalone::watch(
                node.clone(),
                name.clone(),
                path.clone(),
                first,
                Duration::from_millis(250),
                config.drain_timeout,
            );
            tasks.push(tokio::spawn(until(watcher, stopped(&stop))));
        }
        if let (Some(base_url), Some((_, token)), Some(agent)) =
            (&config.control_plane, &config.agent, agent_addr)
        {
            let registration = control::Registration {
                node_id: config.node_id.clone(),
                region: config.region.clone(),
                zone: config.zone.clone(),
                capacity: control::Capacity {
                    max_modules: config.max_modules,
                    max_instances: config.max_instances,
                },
                runtime_version: format!(
                    "wasmswap-host {} (wasmtime 48)",
                    env!("CARGO_PKG_VERSION")
                ),
                wasi_support: vec!["preview1".into(), "preview2".into(), "http".into()],
                agent_url: config
                    .advertise_agent_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{agent}")),
                data_url: config
                    .advertise_data_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{data_addr}")),
            };
            let cp = control::ControlPlane {
                base_url: base_url.clone(),
                token: token.clone(),
                heartbeat_every: config.heartbeat_interval,
            };
            let client = control::run(node.clone(), cp, registration);
            tasks.push(tokio::spawn(until(client, stopped(&stop))));
        }
        tracing::info!(node = %config.node_id, data = %data_addr, agent = ?agent_addr, "host serving");
        Ok(Host {
            node,
            data_addr,
            agent_addr,
            stop,
            tasks,
        })
    }

    /// The node (services, versions, routes).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Where the data plane listens.
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// Where the agent API listens, if enabled.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
