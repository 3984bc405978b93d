//! The host's [`Isolator`]: a worker process (see [`crate::worker`]) that
//! runs the calls (JSON and wasi-http) of versions that keep hitting their
//! memory limit,
//! so that their memory-map churn — an `mprotect` for every grow, each
//! taking the process's map lock for writing — no longer stalls every other
//! tenant's instance resets (RELIABILITY.md). The worker also runs at the
//! OS's idle priority (`SCHED_IDLE`), and if a tenant takes it down (the kernel's OOM killer, say), only
//! that tenant's calls fail.
//!
//! One worker per host, started when a version is first isolated and again
//! after it dies. A version is loaded there in the background, from the
//! binary the host keeps for it (compiled once: the worker shares the
//! host's artifact cache), under the same label, limits and grants; its
//! calls run in the host's process until it is ready there, so no call
//! waits for a worker to start.

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
use wasmswap_core::{
    Capabilities, Error, ErrorKind, HttpResponse, IsolatedBody, IsolatedCall, IsolatedReady,
    IsolatedResponse, Isolator, Version,
};

use crate::worker::{
    AUTHORITY_HEADER, CallAnswer, CallRequest, ERROR_KIND_HEADER, HOST_IDLE_HEADER, SCHEME_HEADER,
    SPEC_HEADER, Spec, TOKEN_HEADER, WORKER_ARG, WORKER_ENV, WorkerSettings,
};

/// How long a starting worker may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// After a worker failed to start, how long isolated versions run their
/// calls in the host's own process before the next attempt.
const START_BACKOFF: Duration = Duration::from_secs(30);

/// After a version failed to load into the worker, how long its calls run
/// in the host's own process before the next attempt.
const LOAD_BACKOFF: Duration = Duration::from_secs(30);

/// How many calls in a row may fail to get an answer from a worker that
/// still runs before it is taken for broken, killed and replaced.
const MAX_TRANSPORT_FAILURES: u32 = 3;

/// How much of an error from the worker the host reads.
const MAX_ERROR_BYTES: usize = 64 * 1024;

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
    running: Mutex<Option<Arc<Running>>>,
    /// Held while a worker starts, so only one does.
    starting: tokio::sync::Mutex<()>,
    /// Version keys being loaded into the worker in the background.
    loading: Mutex<HashSet<String>>,
    /// Versions unloaded from the host while loading into the worker.
    cancelled: Mutex<HashSet<String>>,
    /// When a version (by key) last failed to load there.
    load_failed: Mutex<HashMap<String, std::time::Instant>>,
    /// The binaries of the host's loaded versions, by SHA-256: what a
    /// version is loaded into the worker from.
    binaries: Mutex<HashMap<String, Bytes>>,
    /// When a worker last failed to start.
    start_failed: Mutex<Option<std::time::Instant>>,
}

#[derive(Debug)]
struct Running {
    /// Killed when dropped; its stdin closing also ends it.
    child: Mutex<tokio::process::Child>,
    base: String,
    /// What [`TOKEN_HEADER`] must hold.
    token: http::HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Forwards wasi-http requests, their bodies streamed.
    forward: Client<HttpConnector, IsolatedBody>,
    /// Version keys loaded there.
    loaded: Mutex<HashSet<String>>,
    /// Calls in a row that got no answer while it kept running.
    transport_failures: std::sync::atomic::AtomicU32,
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
                running: Mutex::new(None),
                starting: tokio::sync::Mutex::new(()),
                loading: Mutex::new(HashSet::new()),
                load_failed: Mutex::new(HashMap::new()),
                cancelled: Mutex::new(HashSet::new()),
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
        let key = version_key(version);
        if self.inner.loading.lock().contains(&key) {
            // Its load, still under way, unloads it when done.
            self.inner.cancelled.lock().insert(key.clone());
        }
        let Some(running) = self.inner.running.lock().clone() else {
            return;
        };
        running.unload(&key).await;
    }

    /// The worker's process ID, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.inner.running.lock().as_ref()?.child.lock().id()
    }

    /// Whether `version` is loaded in a running worker: its calls go there.
    pub fn ready(&self, version: &Version) -> bool {
        let key = version_key(version);
        self.inner
            .running
            .lock()
            .as_ref()
            .is_some_and(|r| r.loaded.lock().contains(&key))
    }

    /// The running worker, started now if there is none.
    async fn running(&self) -> Result<Arc<Running>, Error> {
        if let Some(r) = self.inner.running.lock().clone() {
            return Ok(r);
        }
        let _starting = self.inner.starting.lock().await;
        if let Some(r) = self.inner.running.lock().clone() {
            return Ok(r);
        }
        match self.start().await {
            Ok(started) => {
                let started = Arc::new(started);
                *self.inner.running.lock() = Some(started.clone());
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
            child: Mutex::new(child),
            base: format!("http://{addr}"),
            token: http::HeaderValue::try_from(settings.token)?,
            client: Client::builder(TokioExecutor::new()).build(connector.clone()),
            forward: Client::builder(TokioExecutor::new()).build(connector),
            loaded: Mutex::new(HashSet::new()),
            transport_failures: Default::default(),
        })
    }

    /// The running worker, without starting one: a call goes there only
    /// once [`Isolator::prepare`] found its version loaded, and if the
    /// worker went away since, the call fails rather than wait for another.
    fn current(&self) -> Result<Arc<Running>, Error> {
        self.inner
            .running
            .lock()
            .clone()
            .ok_or_else(|| worker_failed("the worker went away"))
    }

    /// After a call got no answer: forgets the worker if it died, and kills
    /// and forgets it if it keeps failing to answer while it runs.
    /// Returns whether it had died.
    async fn transport_failed(&self, running: &Arc<Running>) -> bool {
        use std::sync::atomic::Ordering;
        if running.exited().await {
            self.forget(running);
            return true;
        }
        let failures = running.transport_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= MAX_TRANSPORT_FAILURES {
            tracing::error!(
                failures,
                "the isolation worker runs but does not answer; replacing it"
            );
            let _ = running.child.lock().start_kill();
            self.forget(running);
        }
        false
    }

    /// Forgets `dead` (if it is still the worker): the next call starts another.
    fn forget(&self, dead: &Arc<Running>) {
        let mut running = self.inner.running.lock();
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
            .send(
                Method::PUT,
                &format!("/versions/{key}"),
                Some((SPEC_HEADER, spec)),
                binary,
            )
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
        let running = self.current()?;
        let key = version_key(&version);
        let body = Bytes::from(serde_json::to_vec(&call).map_err(worker_failed)?);
        let path = format!("/versions/{key}/call");
        let mut loaded = running.loaded.lock().contains(&key);
        loop {
            if !loaded {
                self.load(&running, &version, &key).await?;
            }
            let idle = host_idle_header(&version);
            let sent = running
                .send(
                    Method::POST,
                    &path,
                    Some((HOST_IDLE_HEADER, idle)),
                    body.clone(),
                )
                .await;
            let (status, answer) = match sent {
                Ok(answer) => answer,
                Err(e) => {
                    // If the worker died, start another next time. This
                    // call fails: it may have been what killed it.
                    self.transport_failed(&running).await;
                    return Err(e);
                }
            };
            running.answered();
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

    /// Starts the worker if need be and loads `version` there, in the
    /// background: its calls run in this process meanwhile.
    fn load_in_background(&self, version: Version, key: String) {
        let failed_lately = self
            .inner
            .load_failed
            .lock()
            .get(&key)
            .is_some_and(|at| at.elapsed() < LOAD_BACKOFF);
        if failed_lately || !self.inner.loading.lock().insert(key.clone()) {
            return;
        }
        self.inner.cancelled.lock().remove(&key);
        let this = self.clone();
        tokio::spawn(async move {
            let loaded = match this.running().await {
                Ok(running) => this.load(&running, &version, &key).await,
                Err(e) => Err(e),
            };
            match loaded {
                Ok(()) => {
                    this.inner.load_failed.lock().remove(&key);
                    tracing::info!(version = %version.label(), "loaded into the isolation worker");
                }
                Err(e) => {
                    this.inner
                        .load_failed
                        .lock()
                        .insert(key.clone(), std::time::Instant::now());
                    tracing::warn!(version = %version.label(), error = %e, "cannot load into the isolation worker; its calls run in this process for {LOAD_BACKOFF:?}");
                }
            }
            this.inner.loading.lock().remove(&key);
            let cancelled = this.inner.cancelled.lock().remove(&key);
            let running = this.inner.running.lock().clone();
            if cancelled && let Some(running) = running {
                // Unloaded from the host meanwhile: not kept there either.
                running.unload(&key).await;
            }
        });
    }

    /// Serves a wasi-http request with `version` in the worker.
    async fn forward(
        self,
        version: Version,
        request: http::Request<IsolatedBody>,
    ) -> Result<HttpResponse, Error> {
        let running = self.current()?;
        let key = version_key(&version);
        let (mut parts, body) = request.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "localhost".into());
        let scheme = parts.uri.scheme_str().unwrap_or("http").to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = format!("{}/versions/{key}/http{path_and_query}", running.base)
            .parse()
            .map_err(worker_failed)?;
        // The worker speaks HTTP/1.1, whatever the client spoke; the
        // client's connection is not the worker's.
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        let header = |v: String| http::HeaderValue::try_from(v).map_err(worker_failed);
        if !parts.headers.contains_key(http::header::HOST) {
            // An HTTP/2 request has none: the guest sees the authority, as
            // here, not the worker's address.
            parts
                .headers
                .insert(http::header::HOST, header(authority.clone())?);
        }
        parts.headers.insert(TOKEN_HEADER, running.token.clone());
        // A body that fails midway there ends with trailers saying how.
        parts
            .headers
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        parts.headers.insert(AUTHORITY_HEADER, header(authority)?);
        parts.headers.insert(SCHEME_HEADER, header(scheme)?);
        parts
            .headers
            .insert(HOST_IDLE_HEADER, header(host_idle_header(&version))?);
        let request = http::Request::from_parts(parts, body);
        let resp = match running.forward.request(request).await {
            Ok(resp) => resp,
            Err(e) if request_body_failed(&e) => {
                // The client's upload broke off: the worker is fine.
                return Err(Error::ClientClosed(format!("the request body failed: {e}")));
            }
            Err(e) => {
                // Perhaps this call's doing, if it died: the next isolated
                // call starts another.
                self.transport_failed(&running).await;
                return Err(worker_failed(e));
            }
        };
        running.answered();
        // The worker marks its own errors (the guest's responses never
        // carry the mark: it removes it from them).
        if let Some(mark) = resp.headers().get(ERROR_KIND_HEADER).cloned() {
            // Failed before the guest's response head: the worker's JSON
            // error, with the failure's kind.
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BYTES)
                .collect()
                .await
                .map_err(|e| worker_failed(format!("reading its error: {e}")))?
                .to_bytes();
            let message = serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let mark = mark.to_str().unwrap_or_default();
            if mark == "unknown_version" {
                // Not loaded there (any more): load it again for later calls.
                running.loaded.lock().remove(&key);
            }
            return Err(Error::Isolated {
                kind: ErrorKind::from_name(mark).unwrap_or(ErrorKind::Internal),
                message,
            });
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(http::Response::from_parts(
            parts,
            crate::relay::Relayed::new(body).boxed_unsync(),
        ))
    }
}

impl Running {
    /// Forgets version `key` here and in the worker, if it is loaded.
    async fn unload(&self, key: &str) {
        if self.loaded.lock().remove(key) {
            let _ = self
                .send(
                    Method::DELETE,
                    &format!("/versions/{key}"),
                    None,
                    Bytes::new(),
                )
                .await;
        }
    }

    /// Notes an answer: the worker works.
    fn answered(&self) {
        self.transport_failures
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the worker process has ended. Waits a little for an answer:
    /// a killed process's connections close before the kernel reaps it.
    async fn exited(&self) -> bool {
        for _ in 0..20 {
            if !matches!(self.child.lock().try_wait(), Ok(None)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, String)>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Error> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(TOKEN_HEADER, self.token.clone());
        if let Some((name, value)) = header {
            req = req.header(name, value);
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
    fn prepare(&self, version: &Version) -> IsolatedReady {
        if self.ready(version) {
            return Box::pin(std::future::ready(Ok(())));
        }
        let this = self.clone();
        let version = version.clone();
        Box::pin(async move {
            let key = version_key(&version);
            this.load_in_background(version, key);
            Err(worker_failed("the version is being loaded into the worker"))
        })
    }

    fn handle(&self, version: &Version, request: http::Request<IsolatedBody>) -> IsolatedResponse {
        Box::pin(self.clone().forward(version.clone(), request))
    }

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

/// What [`HOST_IDLE_HEADER`] says for a call of `version`: how long since
/// its runtime — the host's — last started a call itself.
fn host_idle_header(version: &Version) -> String {
    version
        .runtime()
        .idle_for()
        .map_or_else(|| "never".to_string(), |d| d.as_millis().to_string())
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

/// Whether a forwarded request failed because its own body did (the
/// client's upload broke off), not because the worker did.
fn request_body_failed(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_user();
        }
        source = s.source();
    }
    false
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1),
/// and those the `Connection` header names: a forwarded message gets its
/// own framing and connection.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| http::HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        http::header::CONNECTION,
        http::header::TE,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::TRAILER,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// A token only the host and its worker know.
fn random_token() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}
