//! The HTTP listener shared by the edge node's two listeners and the control
//! plane: HTTP/1.1 and HTTP/2 on one port, a limit on how long request
//! headers may take from their first byte (slow-loris guard, also for a
//! client that connects and sends nothing), a longer idle timeout between
//! requests on a kept-alive connection, a cap on open connections, and a
//! graceful stop.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use wasmswap_server::{serve, ServerLimits};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let handler = |_req: http::Request<wasmswap_server::Incoming>, _peer| async {
//!     http::Response::new(String::from("hello"))
//! };
//! serve(listener, handler, ServerLimits::default(), std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use deadlines::Tracked;

/// A request's body as handlers get it: hyper's, counted as part of its
/// exchange until read to the end or dropped (see [`ServerLimits`]), and
/// over HTTP/1 drained in the background if dropped early ([`Lingering`]).
pub type Incoming = Tracked<Lingering>;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

mod deadlines;
mod linger;
use deadlines::{Activity, Deadlines};
pub use linger::Lingering;

/// Connection settings of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must send a request's headers within this of their first
    /// byte, and the first byte of a new connection within this of
    /// connecting (slow-loris guard).
    pub header_read_timeout: Duration,
    /// A connection idle this long between requests is closed (HTTP/2: with
    /// no stream open, pings aside, it is sent away with a GOAWAY). Keep
    /// it above clients' pool idle timeouts (reqwest's and hyper's are 90 s):
    /// a client that sends a request on a kept-alive connection just as the
    /// server closes it sees that request fail. HTTP/1.1 responses carry a
    /// `Keep-Alive: timeout=` of nine tenths of it, for clients that read
    /// it to close first. Neither deadline applies while a request is being
    /// answered (its body read or its response sent), nor to an upgraded
    /// connection or a tunnel.
    pub idle_timeout: Duration,
    /// A connection whose writes make no progress this long (a client that
    /// stopped reading its response, HTTP/1 or HTTP/2), or with an HTTP/2
    /// stream whose client has granted it no flow-control window for this
    /// long, is closed, and the responses it held are dropped. Not for
    /// upgraded connections.
    pub write_timeout: Duration,
    /// After a stop signal, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Open connections at most; the listener waits for one to close.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves; then stops
/// accepting, lets open requests finish (up to the grace period) and returns.
/// The handler gets each request and the address of the peer that sent it.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Not hyper's header timeout: it also runs while a kept-alive
    // connection waits for its next request (see `deadlines`).
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    // Told a little short of the real timeout: a client that obeys counts
    // from when it read the answer, after our last write, and must not
    // reuse the connection as we close it.
    let advertised = (limits.idle_timeout * 9 / 10).as_secs();
    let keep_alive = (advertised > 0)
        .then(|| http::HeaderValue::from_str(&format!("timeout={advertised}")).ok())
        .flatten();
    // Connections watch for the stop; once they have all ended (dropped
    // their receivers), the stop is complete.
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let activity = std::sync::Arc::new(Activity::default());
                let keep_alive = keep_alive.clone();
                let svc = {
                    let activity = activity.clone();
                    service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let activity = activity.clone();
                        let answering = activity.begin();
                        let (parts, body) = req.into_parts();
                        let http1 = parts.version <= http::Version::HTTP_11;
                        let body = Lingering::new(body, http1);
                        let (body, unread) = Tracked::request(body, &answering);
                        let req = http::Request::from_parts(parts, body);
                        let tunnel = req.method() == http::Method::CONNECT;
                        let keep_alive = keep_alive
                            .clone()
                            .filter(|_| req.version() == http::Version::HTTP_11);
                        async move {
                            let mut resp = handler(req, peer).await;
                            let status = resp.status();
                            if status == http::StatusCode::SWITCHING_PROTOCOLS
                                || (tunnel && status.is_success())
                            {
                                answering.hand_over();
                                return Ok::<_, Infallible>(resp.map(Tracked::untracked));
                            }
                            if http1
                                && (status.is_client_error() || status.is_server_error())
                                && unread
                                    .is_some_and(|u| u.load(std::sync::atomic::Ordering::Acquire))
                            {
                                // Refused before its upload was read (too
                                // large, bad, or the handler failed): the
                                // rest will not be read, so hyper closes the
                                // connection after this answer. Said here, so
                                // that the client does not send its next
                                // request on it as it closes.
                                resp.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            let closes = resp
                                .headers()
                                .get(http::header::CONNECTION)
                                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                            if let Some(v) = keep_alive.filter(|_| !closes) {
                                // Ours, not one a handler passed on from upstream.
                                resp.headers_mut().insert(KEEP_ALIVE, v);
                            }
                            // HTTP/2 streams' stalls are judged per stream.
                            let stall = (!http1).then(|| activity.stall_clock());
                            Ok::<_, Infallible>(resp.map(|b| Tracked::new(b, answering, stall)))
                        }
                    })
                };
                let builder = builder.clone();
                let mut stop = stop_seen.clone();
                let (header_timeout, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
                let write_timeout = limits.write_timeout;
                tokio::spawn(async move {
                    let _permit = permit;
                    // hyper-util reads the first bytes to tell HTTP/1 from
                    // HTTP/2 with no deadline of its own: a client that
                    // connects and stalls must not hold the slot forever.
                    let Some(protocol) = first_bytes_within(&stream, header_timeout).await else {
                        tracing::debug!(%peer, "no request within the header timeout; closed");
                        return;
                    };
                    let http2 = protocol == Protocol::Http2;
                    let limits = (!http2).then_some((header_timeout, idle_timeout));
                    let io = TokioIo::new(Deadlines::new(stream, activity.clone(), limits, write_timeout));
                    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                    tokio::pin!(conn);
                    let mut watchdog = http2.then(|| Http2Watchdog::new(idle_timeout, write_timeout));
                    let mut closing = false;
                    loop {
                        tokio::select! {
                            ended = conn.as_mut() => {
                                if let Err(e) = ended {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                                break;
                            }
                            _ = stop.wait_for(|stop| *stop), if !closing => {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                            verdict = async { watchdog.as_mut()?.check(&activity).await }, if watchdog.is_some() => {
                                match verdict {
                                    Some(Http2Verdict::Idle) if !closing => {
                                        tracing::debug!(%peer, ?idle_timeout, "idle HTTP/2 connection; going away");
                                        conn.as_mut().graceful_shutdown();
                                        closing = true;
                                    }
                                    Some(Http2Verdict::Stalled(waited)) => {
                                        // Dropped: every stream of it ends.
                                        tracing::debug!(%peer, ?waited, "an HTTP/2 stream's client took nothing for the write timeout; closing");
                                        break;
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    drop(stop);
                });
            }
        }
    }
    drop(listener);
    drop(stop_seen);
    let _ = stopping.send(true);
    tokio::select! {
        () = stopping.closed() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the grace period");
        }
    }
}

/// What the watchdog of an HTTP/2 connection found.
#[derive(Debug)]
enum Http2Verdict {
    /// No stream for the idle timeout: the connection goes away (GOAWAY,
    /// then closed once the client has seen it).
    Idle,
    /// A stream has waited this long (past the write timeout) for the
    /// client to grant it flow-control window: the connection is closed.
    Stalled(Duration),
}

/// Looks at an HTTP/2 connection every so often. Its socket-level
/// deadlines do not fit HTTP/2 (`deadlines`): pings and control frames
/// are traffic but not use, and a stream starved of flow-control window
/// leaves no bytes due on the socket at all.
struct Http2Watchdog {
    idle_timeout: Duration,
    write_timeout: Duration,
    tick: tokio::time::Interval,
    begun_seen: u64,
    // A stream was seen at the last look.
    active: bool,
    quiet_since: tokio::time::Instant,
}

impl Http2Watchdog {
    fn new(idle_timeout: Duration, write_timeout: Duration) -> Self {
        // Each deadline is judged at most a quarter late.
        let period = (idle_timeout.min(write_timeout) / 4).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Http2Watchdog {
            idle_timeout,
            write_timeout,
            tick,
            begun_seen: 0,
            active: false,
            quiet_since: tokio::time::Instant::now(),
        }
    }

    /// Waits for the next look; `None` if all is well.
    async fn check(&mut self, activity: &Activity) -> Option<Http2Verdict> {
        let now = self.tick.tick().await;
        if let Some(waited) = activity.longest_stall()
            && waited >= self.write_timeout
        {
            return Some(Http2Verdict::Stalled(waited));
        }
        let begun = activity.begun();
        if begun != self.begun_seen || activity.busy() {
            self.begun_seen = begun;
            self.active = true;
            return None;
        }
        if self.active {
            // The first look since the last stream ended: quiet from about
            // now (never earlier, so never closed early).
            self.active = false;
            self.quiet_since = now;
            return None;
        }
        (now.duration_since(self.quiet_since) >= self.idle_timeout).then_some(Http2Verdict::Idle)
    }
}

/// `Keep-Alive: timeout=N` tells HTTP/1.1 clients that read it when an idle
/// connection will be closed.
const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// The HTTP/2 client preface; a connection that has sent a prefix of it has
/// not yet told HTTP/2 from HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP a connection speaks, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Waits (up to `timeout`) until the client has sent enough to choose a
/// protocol: any byte that is not a prefix of the HTTP/2 preface, or all of
/// it. `None` if it has not, or closed.
async fn first_bytes_within(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => {
                if !H2_PREFACE.starts_with(&buf[..n]) {
                    return Some(Protocol::Http1);
                }
                if n == H2_PREFACE.len() {
                    return Some(Protocol::Http2);
                }
                // A partial preface: wait for more (peek returns at once
                // while bytes are buffered, so pause between looks).
                if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(10)))
                    .await
                    .is_err()
                {
                    return None;
                }
            }
        }
    }
}
