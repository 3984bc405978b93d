//! A small HTTP proxy that embeds `wasmswap-core`, serves one wasi-http
//! component, and hot-reloads it when its file changes — without dropping a
//! request: the new version is compiled beside the old one, the route is
//! swapped atomically, and requests already running finish on the old version.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wasmswap_core::{Capabilities, Limits, Route, Runtime, Service, Version};

type Body = UnsyncBoxBody<Bytes, anyhow::Error>;

/// The proxy: one service, one watched file.
#[derive(Clone, Debug)]
pub struct Proxy {
    runtime: Runtime,
    service: Service,
    path: PathBuf,
}

impl Proxy {
    /// Loads `path` as version 1.
    pub fn new(runtime: Runtime, name: &str, path: &Path) -> anyhow::Result<Self> {
        let version = load_version(&runtime, path, 1)?;
        anyhow::ensure!(
            version.is_http(),
            "{} does not export wasi:http/incoming-handler",
            path.display()
        );
        let service = Service::new(name, Route::stable(version))?;
        Ok(Self {
            runtime,
            service,
            path: path.to_path_buf(),
        })
    }

    /// The served service (for status and tests).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Accepts connections until `shutdown` resolves; then stops accepting and
    /// lets open connections finish.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let proxy = proxy.clone();
                            async move { Ok::<_, Infallible>(proxy.route(req).await) }
                        });
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
            }
        }
    }

    async fn route(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
        let key = req
            .headers()
            .get("x-session")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match self.service.handle(key.as_deref(), req).await {
            Ok(served) => {
                let (mut parts, body) = served.value.into_parts();
                if let Ok(v) = served.version.parse() {
                    parts.headers.insert("x-wasmswap-version", v);
                }
                hyper::Response::from_parts(parts, body.map_err(anyhow::Error::from).boxed_unsync())
            }
            Err(e) => {
                let status = if e.is_guest_fault() { 500 } else { 502 };
                let mut resp = hyper::Response::new(
                    Full::new(Bytes::from(format!("{e}\n")))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() =
                    hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
                resp
            }
        }
    }

    /// Polls the file every `every`; when its content changes, loads it as the
    /// next version and swaps it in. Bad files are reported and ignored: the
    /// serving version stays.
    pub async fn watch(self, every: Duration) {
        let mut seen = fingerprint(&self.path);
        let mut next_label = 2;
        loop {
            tokio::time::sleep(every).await;
            let now = fingerprint(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            let (runtime, path) = (self.runtime.clone(), self.path.clone());
            let label = next_label;
            let loaded =
                tokio::task::spawn_blocking(move || load_version(&runtime, &path, label)).await;
            match loaded {
                Ok(Ok(version)) if version.is_http() => {
                    match self.service.set_route(Route::stable(version)) {
                        Ok(swap) => {
                            next_label += 1;
                            tracing::info!(version = label, "reloaded");
                            tokio::spawn(async move {
                                let report = swap.drained(Duration::from_secs(30)).await;
                                tracing::info!(?report, "previous version drained");
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "reload refused"),
                    }
                }
                Ok(Ok(_)) => tracing::warn!("reload refused: not a wasi-http component"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reload failed; still serving the previous version")
                }
                Err(e) => tracing::warn!(error = %e, "reload task failed"),
            }
        }
    }
}

/// What identifies a file's version: size and mtime, cheap to poll. A
/// rewrite that keeps both (same size within the clock's granularity) is
/// caught on the next write; the loader dedupes identical content by hash.
fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn load_version(runtime: &Runtime, path: &Path, n: u32) -> anyhow::Result<Version> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let artifact = runtime.load(&bytes)?;
    Ok(Version::new(
        runtime,
        &artifact,
        format!("v{n}"),
        Limits::default(),
        Capabilities::none(),
    )?)
}

/// Binds `addr`, serves, and watches until Ctrl-C.
pub async fn run(addr: SocketAddr, path: &Path) -> anyhow::Result<()> {
    let proxy = Proxy::new(Runtime::new()?, "app", path)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, file = %path.display(), "serving; edit the file to reload");
    tokio::spawn(proxy.clone().watch(Duration::from_millis(250)));
    proxy
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
