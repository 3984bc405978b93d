//! The isolation worker: a child process of the host that runs the calls
//! (JSON and wasi-http) of versions that keep hitting their memory limit (see
//! [`crate::isolate`]), with a memory map of its own and at the OS's idle
//! priority.
//!
//! The host starts it as its own executable with [`WORKER_ENV`] set to the
//! worker's settings; `main` calls [`run_if_worker`] before anything else.
//! It listens on 127.0.0.1 (a port of its own choosing, printed on its
//! stdout as `listening ADDR`), takes requests only with the token it was
//! given, and exits when its stdin closes — when the host is gone, however
//! it died.
//!
//! Its API, for the host only:
//! - `PUT /versions/{key}`: the binary as the body, `x-wasmswap-spec` a
//!   JSON [`Spec`]; loads the version (idempotent).
//! - `POST /versions/{key}/call`: a JSON [`CallRequest`]; answers 200 with
//!   a JSON [`CallAnswer`] (the guest's failure is an answer, not an HTTP
//!   error), 404 `unknown_version` if the key is not loaded.
//! - `{any method} /versions/{key}/http/{path}`: serves a wasi-http
//!   request with the version, the guest seeing `/{path}` and the
//!   authority and scheme of [`AUTHORITY_HEADER`] and [`SCHEME_HEADER`];
//!   a failure before the response head is the usual JSON error with its
//!   kind in [`ERROR_KIND_HEADER`]; one after it ends the body with
//!   trailers that say how it failed, where the host asked for them
//!   (`TE: trailers`; see [`crate::relay`]).
//! - `DELETE /versions/{key}`: forgets the version.
//!
//! Every request carries the token in [`TOKEN_HEADER`]; calls and
//! forwarded requests also say, in [`HOST_IDLE_HEADER`], how long the host
//! has gone without a call of its own, which decides whether the CPU
//! budget holds offending tenants back (see [`crate::cpu_budget`]).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, StatusCode};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::io::AsyncReadExt as _;
use wasmswap_core::{Capabilities, ErrorKind, Limits, Runtime, Version};
use wasmswap_server::Incoming;

use crate::body::{ApiError, Response, json};

/// The environment variable carrying the worker's JSON [`WorkerSettings`].
pub const WORKER_ENV: &str = "WASMSWAP_HOST_WORKER";

/// The one argument a worker is started with. An executable that does not
/// call [`run_if_worker`] (a test harness, say) refuses it as an unknown
/// option and exits, rather than running as something else.
pub const WORKER_ARG: &str = "--isolation-worker";

/// The header carrying a load's [`Spec`].
pub(crate) const SPEC_HEADER: &str = "x-wasmswap-spec";

/// The header carrying the worker's token (not `Authorization`, which a
/// forwarded wasi-http request may carry for its guest).
pub(crate) const TOKEN_HEADER: &str = "x-wasmswap-worker-token";

/// On a forwarded wasi-http request: the authority and scheme of the URI
/// the guest sees.
pub(crate) const AUTHORITY_HEADER: &str = "x-wasmswap-authority";
pub(crate) const SCHEME_HEADER: &str = "x-wasmswap-scheme";

/// On a call or forwarded request: how long, in milliseconds, since the
/// host last started a call in its own process (`never` if it has not).
/// The CPU budget holds the worker back only while the host is busy.
pub(crate) const HOST_IDLE_HEADER: &str = "x-wasmswap-host-idle-ms";

/// The host counts as busy — its tenants are owed the cores — if it
/// started a call of its own within this long.
const HOST_BUSY_WITHIN: Duration = Duration::from_secs(1);

/// On the answer to a forwarded wasi-http request that failed before its
/// response head: the failure's kind (the body is the usual JSON error).
pub(crate) const ERROR_KIND_HEADER: &str = "x-wasmswap-error-kind";

/// What the host tells its worker at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// The bearer token every request must carry.
    pub token: String,
    /// The runtime's pooled instance slots.
    pub max_instances: u32,
    /// The runtime's epoch tick, in microseconds.
    pub epoch_tick_us: u64,
    /// Bytes of each pooled memory kept resident.
    pub keep_resident: u64,
    /// The host's compiled-artifact cache, shared: a version compiled by
    /// the host loads here without compiling again.
    pub cache_dir: Option<PathBuf>,
    /// The largest binary a load may send.
    pub max_binary_bytes: usize,
    /// The share of one core its calls may use together (see
    /// `cpu_budget`); `None`: no budget.
    #[serde(default)]
    pub cpu_share: Option<f64>,
}

/// A version to load: what the host's own [`Version`] was made with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub label: String,
    pub limits: Limits,
    pub capabilities: Capabilities,
}

/// One JSON call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub function: String,
    pub args: Json,
    /// Grants instead of the version's own (a mirrored call's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Capabilities>,
}

/// A call's outcome: its value, or the kind and message of its failure.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallAnswer {
    Value(Json),
    Error {
        kind: String,
        message: String,
        /// Set when the function does not exist (a 404, not a 400).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missing_function: Option<String>,
    },
}

/// If this process was started as a worker ([`WORKER_ENV`] is set), runs
/// it until its stdin closes and returns its outcome; otherwise `None`.
/// Call it first thing in `main`, before any async runtime starts: the
/// worker lowers its own priority first, so that every thread it starts
/// inherits it.
pub fn run_if_worker() -> Option<anyhow::Result<()>> {
    if std::env::args_os().nth(1).is_none_or(|a| a != WORKER_ARG) {
        return None;
    }
    let settings = std::env::var(WORKER_ENV).ok()?;
    Some(run(&settings))
}

fn run(settings: &str) -> anyhow::Result<()> {
    let settings: WorkerSettings =
        serde_json::from_str(settings).with_context(|| format!("{WORKER_ENV} is not valid"))?;
    lower_priority();
    // Logs go to stderr, which the host shares; stdout carries the address.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    // One thread, not a multi-threaded executor: that one's idle workers
    // are woken to steal work every time a computing guest yields (each
    // epoch tick), and those wake-ups land on the cores the host's serving
    // threads need — measured, 2.45× the bystander's unloaded p99 against
    // 0.92–1.20× with one thread (BENCHMARKS.md). Calls still interleave
    // at their epoch ticks, and loads compile on blocking threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the worker's async runtime")?
        .block_on(serve(settings))
}

/// Lowers this thread — the worker's first, so every thread it starts —
/// to Linux's `SCHED_IDLE`, below even nice 19: the host's serving threads
/// take a core back from it the moment they wake. Nice 19 is not enough:
/// the scheduler lets a running task finish its slice first (measured, the
/// bystander's p99 4.15× unloaded against a memory bomb at nice 19,
/// BENCHMARKS.md). The price: while every core is busy the worker gets
/// next to no CPU, and the isolated tenant's calls wait, up to their
/// timeout.
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
    if thread_schedule_policy().ok() != Some(idle) {
        tracing::warn!(error = ?set.err(), "the isolation worker cannot lower its priority");
    }
}

async fn serve(settings: WorkerSettings) -> anyhow::Result<()> {
    let mut rc = Runtime::builder();
    rc.max_instances(settings.max_instances);
    rc.epoch_tick(Duration::from_micros(settings.epoch_tick_us));
    rc.memory_keep_resident(settings.keep_resident);
    if let Some(dir) = &settings.cache_dir {
        rc.cache_dir(dir);
    }
    let runtime = rc.build().context("building the worker's runtime")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the worker's listener")?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {addr}")?;
        out.flush()?;
    }
    let worker = Worker {
        runtime,
        token: settings.token,
        max_binary_bytes: settings.max_binary_bytes,
        versions: Arc::new(RwLock::new(HashMap::new())),
        budget: settings
            .cpu_share
            .map(|share| Arc::new(crate::cpu_budget::CpuBudget::new(share))),
        offenders: Arc::default(),
    };
    let handler = move |req, _peer| {
        let worker = worker.clone();
        async move {
            worker.handle(req).await.unwrap_or_else(|e| {
                // Marked, so that a forwarded wasi-http request's host
                // tells the worker's own errors from the guest's answers.
                let mut resp = e.response();
                resp.headers_mut()
                    .insert(ERROR_KIND_HEADER, http::HeaderValue::from_static(e.code));
                resp
            })
        }
    };
    // The host holds our stdin: end of input means it is gone.
    let orphaned = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    wasmswap_server::serve(listener, handler, Default::default(), orphaned).await;
    Ok(())
}

#[derive(Clone)]
struct Worker {
    runtime: Runtime,
    /// What [`TOKEN_HEADER`] must hold.
    token: String,
    max_binary_bytes: usize,
    versions: Arc<RwLock<HashMap<String, Loaded>>>,
    /// Paces the calls of versions that hit a limit here lately, if set.
    budget: Option<Arc<crate::cpu_budget::CpuBudget>>,
    /// When each version (by key) last hit a limit here.
    offenders: Offenders,
}

/// When each version (by key) last hit a limit in the worker.
type Offenders = Arc<parking_lot::Mutex<HashMap<String, std::time::Instant>>>;

/// Notes a call's failure: a limit hit (not a bug of the guest's own, nor
/// a failure of ours) makes its version an offender.
fn note(offenders: &Offenders, key: &str, kind: ErrorKind) {
    if kind.is_limit() {
        let mut offenders = offenders.lock();
        offenders.retain(|_, at| at.elapsed() < OFFENDER_WINDOW);
        offenders.insert(key.to_string(), std::time::Instant::now());
    }
}

/// A version loaded here.
#[derive(Clone)]
struct Loaded {
    version: Version,
    /// The same, each call held to the CPU budget's share of a core (its
    /// `max_cpu_percent` lowered): what an offender's calls run in while
    /// the host is busy. `None` without a budget, or where the version's
    /// own share is as low.
    paced: Option<Version>,
}

/// How long after a version's last limit hit in the worker its calls go
/// through the CPU budget.
const OFFENDER_WINDOW: Duration = Duration::from_secs(10);

impl Worker {
    async fn handle(&self, mut req: http::Request<Incoming>) -> Result<Response, ApiError> {
        let authorized = req
            .headers_mut()
            .remove(TOKEN_HEADER)
            .is_some_and(|v| v.as_bytes() == self.token.as_bytes());
        if !authorized {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the isolation worker answers its host only",
            ));
        }
        let path = req.uri().path().to_string();
        let rest = path
            .strip_prefix("/versions/")
            .ok_or_else(|| ApiError::not_found(format!("no route {path}")))?;
        match (req.method().clone(), rest.split_once('/')) {
            (Method::PUT, None) => self.load(rest, req).await,
            (Method::DELETE, None) => {
                self.versions.write().remove(rest);
                Ok(json(StatusCode::OK, &serde_json::json!({"unloaded": rest})))
            }
            (Method::POST, Some((key, "call"))) => self.call(key, req).await,
            (_, Some((key, rest))) if rest == "http" || rest.starts_with("http/") => {
                let guest_path = match &rest["http".len()..] {
                    "" => "/".to_string(),
                    path => path.to_string(),
                };
                let key = key.to_string();
                self.http(&key, &guest_path, req).await
            }
            _ => Err(ApiError::not_found(format!(
                "no route {} {path}",
                req.method()
            ))),
        }
    }

    async fn load(&self, key: &str, req: http::Request<Incoming>) -> Result<Response, ApiError> {
        if self.versions.read().contains_key(key) {
            return Ok(json(StatusCode::OK, &serde_json::json!({"loaded": key})));
        }
        let spec: Spec = req
            .headers()
            .get(SPEC_HEADER)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
            .ok_or_else(|| ApiError::bad_request(format!("{SPEC_HEADER} is missing or bad")))?;
        let bytes =
            crate::body::read_body(req.into_body(), self.max_binary_bytes, "the binary").await?;
        let runtime = self.runtime.clone();
        let paced_percent = self.budget.as_ref().map(|b| b.call_percent());
        let loaded = tokio::task::spawn_blocking(move || {
            let artifact = runtime.load(&bytes)?;
            let paced = paced_percent
                .filter(|&p| p < spec.limits.max_cpu_percent)
                .map(|max_cpu_percent| {
                    let limits = Limits {
                        max_cpu_percent,
                        ..spec.limits.clone()
                    };
                    let caps = spec.capabilities.clone();
                    Version::new(&runtime, &artifact, spec.label.clone(), limits, caps)
                })
                .transpose()?;
            let version = Version::new(
                &runtime,
                &artifact,
                spec.label,
                spec.limits,
                spec.capabilities,
            )?;
            Ok::<_, wasmswap_core::Error>(Loaded { version, paced })
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("loading: {e}"),
            )
        })?
        .map_err(|e| ApiError::bad_request(format!("loading: {e}")))?;
        self.versions.write().insert(key.to_string(), loaded);
        Ok(json(StatusCode::OK, &serde_json::json!({"loaded": key})))
    }

    fn version(&self, key: &str) -> Result<Loaded, ApiError> {
        self.versions.read().get(key).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_version",
                format!("no version {key}"),
            )
        })
    }

    /// Serves a forwarded wasi-http request: the guest's response, or the
    /// failure's JSON error marked with its kind.
    async fn http(
        &self,
        key: &str,
        guest_path: &str,
        req: http::Request<Incoming>,
    ) -> Result<Response, ApiError> {
        let version = self.version(key)?;
        let (mut parts, body) = req.into_parts();
        let header = |parts: &mut http::request::Parts, name: &str| {
            parts
                .headers
                .remove(name)
                .and_then(|v| v.to_str().ok().map(str::to_string))
        };
        let authority = header(&mut parts, AUTHORITY_HEADER).unwrap_or_else(|| "localhost".into());
        let host_busy = host_busy(header(&mut parts, HOST_IDLE_HEADER).as_deref());
        // The host's, for this hop: not the guest's to see.
        let trailers =
            crate::relay::accepts_trailers(parts.headers.remove(http::header::TE).as_ref());
        let scheme = header(&mut parts, SCHEME_HEADER).unwrap_or_else(|| "http".into());
        let query = parts
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        parts.uri = format!("{scheme}://{authority}{guest_path}{query}")
            .parse()
            .map_err(|e| ApiError::bad_request(format!("bad forwarded URI: {e}")))?;
        let version = self.pace(key, &version, host_busy).await;
        let served = version.handle(http::Request::from_parts(parts, body)).await;
        if let Err(e) = &served {
            note(&self.offenders, key, e.kind());
        }
        match served {
            Ok(mut resp) => {
                use http_body_util::BodyExt as _;
                // The mark is the worker's alone: a guest's answer that
                // carried it would pass for the worker's error.
                resp.headers_mut().remove(ERROR_KIND_HEADER);
                // A length-delimited body has no room for trailers.
                let trailers =
                    trailers && !resp.headers().contains_key(http::header::CONTENT_LENGTH);
                if trailers {
                    crate::relay::declare(resp.headers_mut());
                }
                // A failure midway through the body is noted too, and told
                // to the host in trailers ([`crate::relay`]).
                let (offenders, key) = (self.offenders.clone(), key.to_string());
                Ok(resp.map(|b| {
                    let reporting = crate::relay::Reporting::new(b, trailers, move |kind| {
                        note(&offenders, &key, kind);
                    });
                    FlushFirst {
                        inner: reporting.map_err(|e| -> crate::body::BoxError { Box::new(e) }),
                        failed: None,
                    }
                    .boxed_unsync()
                }))
            }
            Err(e) => {
                let kind = e.kind().as_str();
                let mut resp = ApiError::from(e).response();
                resp.headers_mut()
                    .insert(ERROR_KIND_HEADER, http::HeaderValue::from_static(kind));
                Ok(resp)
            }
        }
    }

    /// Waits for the CPU budget if `key` hit a limit here lately and the
    /// host is busy (`host_busy`), and says which of `loaded`'s versions
    /// the call runs in. A tenant that keeps hitting its limits (a memory
    /// bomb called in a loop) gets the budget's share of a core, each call
    /// held to that share as it runs too ([`Loaded::paced`]): one admitted
    /// call must not burn a core for its whole timeout, as an infinite
    /// loop would. One that hit a limit once (and was isolated for it), or
    /// any on an idle host, runs as fast as idle CPU allows.
    async fn pace<'a>(&self, key: &str, loaded: &'a Loaded, host_busy: bool) -> &'a Version {
        let Some(budget) = &self.budget else {
            return &loaded.version;
        };
        let offending = self
            .offenders
            .lock()
            .get(key)
            .is_some_and(|at| at.elapsed() < OFFENDER_WINDOW);
        if offending {
            budget.admit(host_busy).await;
        }
        match &loaded.paced {
            Some(paced) if offending && host_busy => paced,
            _ => &loaded.version,
        }
    }

    async fn call(&self, key: &str, req: http::Request<Incoming>) -> Result<Response, ApiError> {
        let version = self.version(key)?;
        let host_busy = host_busy(
            req.headers()
                .get(HOST_IDLE_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = crate::body::read_body(req.into_body(), usize::MAX, "the call").await?;
        let call: CallRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the call is not valid: {e}")))?;
        let version = self.pace(key, &version, host_busy).await;
        let _lease = version.lease();
        let outcome = match call.caps {
            None => version.invoke_json(&call.function, &call.args).await,
            Some(caps) => {
                version
                    .invoke_json_with_caps(&call.function, &call.args, caps)
                    .await
            }
        };
        if let Err(e) = &outcome {
            note(&self.offenders, key, e.kind());
        }
        let answer = match outcome {
            Ok(value) => CallAnswer::Value(value),
            Err(e) => CallAnswer::Error {
                kind: e.kind().as_str().to_string(),
                message: e.to_string(),
                missing_function: match e {
                    wasmswap_core::Error::NoSuchFunction(name) => Some(name),
                    _ => None,
                },
            },
        };
        Ok(json(StatusCode::OK, &answer))
    }
}

/// Whether a call's [`HOST_IDLE_HEADER`] says the host is busy; one
/// without it (or with a value not understood) is taken as busy.
fn host_busy(idle_ms: Option<&str>) -> bool {
    match idle_ms {
        Some("never") => false,
        Some(ms) => ms
            .parse::<u64>()
            .map_or(true, |ms| Duration::from_millis(ms) < HOST_BUSY_WITHIN),
        None => true,
    }
}

/// A forwarded response body whose failure waits one turn: hyper drops a
/// connection at once on a body error, buffered head and all, and the host
/// must see the guest's head arrive before the body breaks off — a response
/// that never began looks like a dead worker.
struct FlushFirst<B> {
    inner: B,
    failed: Option<crate::body::BoxError>,
}

impl<B> hyper::body::Body for FlushFirst<B>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = crate::body::BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                // Pending once, so that hyper flushes what it holds first.
                self.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::host_busy;

    #[test]
    fn the_host_is_busy_unless_it_says_it_has_been_idle_a_while() {
        assert!(host_busy(Some("0")));
        assert!(host_busy(Some("999")));
        assert!(!host_busy(Some("1000")));
        assert!(!host_busy(Some("never")));
        // Not understood, or not said: the tenants come first.
        assert!(host_busy(Some("soon")));
        assert!(host_busy(None));
    }
}
