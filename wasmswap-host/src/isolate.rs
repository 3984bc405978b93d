//! The host's [`Isolator`]: a worker process (see [`crate::worker`]) that
//! runs the JSON calls of versions that keep hitting their memory limit,
//! so that their memory-map churn — an `mprotect` for every grow, each
//! taking the process's map lock for writing — no longer stalls every other
//! tenant's instance resets (RELIABILITY.md). The worker also runs at the
//! OS's idle priority (`SCHED_IDLE`), and if a tenant takes it down (the kernel's OOM killer, say), only
//! that tenant's calls fail.
//!
//! One worker per host, started at the first isolated call and again after
//! it dies. A version is loaded there on its first isolated call, from the
//! binary the host keeps for it (compiled once: the worker shares the
//! host's artifact cache), under the same label, limits and grants.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::Value as Json;
use sha2::Digest as _;
use tokio::io::AsyncBufReadExt as _;
use wasmswap_core::{Capabilities, Error, ErrorKind, IsolatedCall, Isolator, Version};

use crate::worker::{
    CallAnswer, CallRequest, SPEC_HEADER, Spec, WORKER_ARG, WORKER_ENV, WorkerSettings,
};

/// How long a starting worker may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// After a worker failed to start, how long isolated versions run their
/// calls in the host's own process before the next attempt.
const START_BACKOFF: Duration = Duration::from_secs(30);

/// How the host starts its worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The executable to start; it must call
    /// [`run_if_worker`](crate::worker::run_if_worker) first thing. By
    /// default this process's own.
    pub program: Option<PathBuf>,
    /// The worker's runtime and limits (its token is made at each start).
    pub settings: WorkerSettings,
}

/// Runs isolated calls in a worker process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerProcess {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: WorkerConfig,
    /// The worker now, if started and not known dead.
    running: tokio::sync::Mutex<Option<Arc<Running>>>,
    /// The binaries of the host's loaded versions, by SHA-256: what a
    /// version is loaded into the worker from.
    binaries: Mutex<HashMap<String, Bytes>>,
    /// When a worker last failed to start.
    start_failed: Mutex<Option<std::time::Instant>>,
}

#[derive(Debug)]
struct Running {
    /// Killed when dropped; its stdin closing also ends it.
    _child: tokio::process::Child,
    base: String,
    auth: http::HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Version keys loaded there.
    loaded: Mutex<HashSet<String>>,
}

/// Why an isolated call could not be made: the worker's failure, not the
/// guest's.
fn worker_failed(what: impl std::fmt::Display) -> Error {
    Error::Isolated {
        kind: ErrorKind::Internal,
        message: format!("the isolation worker failed: {what}"),
    }
}

impl WorkerProcess {
    /// A worker, started at the first isolated call.
    pub fn new(config: WorkerConfig) -> Self {
        WorkerProcess {
            inner: Arc::new(Inner {
                config,
                running: tokio::sync::Mutex::new(None),
                binaries: Mutex::new(HashMap::new()),
                start_failed: Mutex::new(None),
            }),
        }
    }

    /// Keeps a loaded version's binary, to load it into the worker from.
    pub fn keep_binary(&self, sha256: &str, bytes: Bytes) {
        self.inner
            .binaries
            .lock()
            .insert(sha256.to_ascii_lowercase(), bytes);
    }

    /// Forgets a binary no loaded version uses any more.
    pub fn forget_binary(&self, sha256: &str) {
        self.inner
            .binaries
            .lock()
            .remove(&sha256.to_ascii_lowercase());
    }

    /// Unloads a version from the worker, if it is there.
    pub async fn unload(&self, version: &Version) {
        let Some(running) = self.inner.running.lock().await.clone() else {
            return;
        };
        let key = version_key(version);
        if running.loaded.lock().remove(&key) {
            let _ = running
                .send(
                    Method::DELETE,
                    &format!("/versions/{key}"),
                    None,
                    Bytes::new(),
                )
                .await;
        }
    }

    /// The worker's process ID, if it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.inner.running.lock().await.as_ref()?._child.id()
    }

    /// The running worker, started now if there is none.
    async fn running(&self) -> Result<Arc<Running>, Error> {
        let mut running = self.inner.running.lock().await;
        if let Some(r) = running.as_ref() {
            return Ok(r.clone());
        }
        match self.start().await {
            Ok(started) => {
                let started = Arc::new(started);
                *running = Some(started.clone());
                Ok(started)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot start the isolation worker; isolated calls run in this process for {START_BACKOFF:?}");
                *self.inner.start_failed.lock() = Some(std::time::Instant::now());
                Err(worker_failed(format!("{e:#}")))
            }
        }
    }

    async fn start(&self) -> anyhow::Result<Running> {
        let config = &self.inner.config;
        let program = match &config.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("finding this executable")?,
        };
        let mut settings = config.settings.clone();
        settings.token = random_token();
        let mut child = tokio::process::Command::new(&program)
            .arg(WORKER_ARG)
            .env(WORKER_ENV, serde_json::to_string(&settings)?)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            START_TIMEOUT,
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .with_context(|| format!("it did not start within {START_TIMEOUT:?}"))??;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("it said {line:?} instead of where it listens"))?;
        tracing::info!(pid = ?child.id(), %addr, "isolation worker started");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Running {
            _child: child,
            base: format!("http://{addr}"),
            auth: http::HeaderValue::try_from(format!("Bearer {}", settings.token))?,
            client: Client::builder(TokioExecutor::new()).build(connector),
            loaded: Mutex::new(HashSet::new()),
        })
    }

    /// Forgets `dead` (if it is still the worker): the next call starts another.
    async fn forget(&self, dead: &Arc<Running>) {
        let mut running = self.inner.running.lock().await;
        if running.as_ref().is_some_and(|r| Arc::ptr_eq(r, dead)) {
            tracing::warn!("isolation worker lost; the next isolated call starts another");
            *running = None;
        }
    }

    async fn load(&self, running: &Running, version: &Version, key: &str) -> Result<(), Error> {
        let sha = version.artifact().id().to_string();
        let binary = self
            .inner
            .binaries
            .lock()
            .get(&sha)
            .cloned()
            .ok_or_else(|| worker_failed(format!("the host does not hold binary {sha}")))?;
        let spec = Spec {
            label: version.label().to_string(),
            limits: version.limits().clone(),
            capabilities: version.capabilities().clone(),
        };
        let spec = serde_json::to_string(&spec).map_err(worker_failed)?;
        let (status, body) = running
            .send(Method::PUT, &format!("/versions/{key}"), Some(spec), binary)
            .await?;
        if status != StatusCode::OK {
            return Err(worker_failed(format!(
                "loading {}: {status} {}",
                version.label(),
                String::from_utf8_lossy(&body)
            )));
        }
        running.loaded.lock().insert(key.to_string());
        Ok(())
    }

    async fn call(self, version: Version, call: CallRequest) -> Result<Json, Error> {
        let running = self.running().await?;
        let key = version_key(&version);
        let body = Bytes::from(serde_json::to_vec(&call).map_err(worker_failed)?);
        let path = format!("/versions/{key}/call");
        let mut loaded = running.loaded.lock().contains(&key);
        loop {
            if !loaded {
                self.load(&running, &version, &key).await?;
            }
            let sent = running.send(Method::POST, &path, None, body.clone()).await;
            let (status, answer) = match sent {
                Ok(answer) => answer,
                Err(e) => {
                    // The worker died (or stopped answering): start another
                    // next time. This call fails: it may have been what
                    // killed it.
                    self.forget(&running).await;
                    return Err(e);
                }
            };
            if status == StatusCode::NOT_FOUND && loaded {
                // Loaded once but gone (unloaded meanwhile): load it again.
                running.loaded.lock().remove(&key);
                loaded = false;
                continue;
            }
            if status != StatusCode::OK {
                return Err(worker_failed(format!(
                    "{status} {}",
                    String::from_utf8_lossy(&answer)
                )));
            }
            return match serde_json::from_slice(&answer).map_err(worker_failed)? {
                CallAnswer::Value(v) => Ok(v),
                CallAnswer::Error {
                    missing_function: Some(name),
                    ..
                } => Err(Error::NoSuchFunction(name)),
                CallAnswer::Error { kind, message, .. } => Err(Error::Isolated {
                    kind: ErrorKind::from_name(&kind).unwrap_or(ErrorKind::Internal),
                    message,
                }),
            };
        }
    }
}

impl Running {
    async fn send(
        &self,
        method: Method,
        path: &str,
        spec: Option<String>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Error> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::AUTHORIZATION, self.auth.clone());
        if let Some(spec) = spec {
            req = req.header(SPEC_HEADER, spec);
        }
        let req = req.body(Full::new(body)).map_err(worker_failed)?;
        let resp = self.client.request(req).await.map_err(worker_failed)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(worker_failed)?
            .to_bytes();
        Ok((status, body))
    }
}

impl Isolator for WorkerProcess {
    fn available(&self) -> bool {
        self.inner
            .start_failed
            .lock()
            .is_none_or(|at| at.elapsed() >= START_BACKOFF)
    }

    fn invoke_json(
        &self,
        version: &Version,
        function: &str,
        args: &Json,
        caps: Option<&Capabilities>,
    ) -> IsolatedCall {
        let call = CallRequest {
            function: function.to_string(),
            args: args.clone(),
            caps: caps.cloned(),
        };
        Box::pin(self.clone().call(version.clone(), call))
    }
}

/// A version's name in the worker: its binary, label, limits and grants,
/// hashed — the same version gets the same key, and two versions that
/// differ in any of them never share one.
fn version_key(version: &Version) -> String {
    let mut h = sha2::Sha256::new();
    h.update(version.artifact().id().as_bytes());
    h.update(version.label().as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(version.limits()).unwrap_or_default());
    h.update([0]);
    h.update(serde_json::to_vec(version.capabilities()).unwrap_or_default());
    hex::encode(h.finalize())
}

/// A token only the host and its worker know.
fn random_token() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}
