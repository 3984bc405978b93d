//! wasi-http: serve an `http::Request` with a component that exports
//! `wasi:http/incoming-handler` (the `wasi:http/proxy` world that
//! `wasmtime serve` and Spin run), under the version's limits, with outbound
//! requests allowed only to the version's granted hosts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::error::{Error, ErrorKind, Result};
use crate::store::P2State;

pub(crate) type Proxy = ProxyPre<P2State>;

/// The response a wasi-http guest produced; its body streams while the guest
/// keeps writing.
pub type Response = http::Response<HyperOutgoingBody>;

/// Why a wasi-http guest's response body ended with an error: the guest
/// failed after sending its response head. The body's error carries it
/// (see [`of`](Self::of)), so that whoever relays the body from another
/// process (an [`Isolator`](crate::Isolator)) can tell the kind of the
/// failure there, and the runtime counts the call by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyFailure {
    /// The failure's kind: `memory_limit` for a guest that ran out of
    /// memory while writing, `trap` for one that panicked, …
    pub kind: ErrorKind,
    /// The failure's own message.
    pub message: String,
}

/// How a [`BodyFailure`]'s error text begins (and, in its log lines and
/// the relayed error, how a reader sees it).
const BODY_FAILED: &str = "the guest failed while writing its response body";

impl BodyFailure {
    /// The failure a response body's error carries, if it carries one (it
    /// was made from a [`BodyFailure`]).
    pub fn of(error: &wasmtime_wasi_http::Error) -> Option<Self> {
        let wasmtime_wasi_http::Error::InternalError(Some(text)) = error else {
            return None;
        };
        let (kind, message) = text
            .strip_prefix(BODY_FAILED)?
            .strip_prefix(" (")?
            .split_once("): ")?;
        Some(Self {
            kind: ErrorKind::from_name(kind)?,
            message: message.to_string(),
        })
    }
}

impl From<&Error> for BodyFailure {
    fn from(e: &Error) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<BodyFailure> for wasmtime_wasi_http::Error {
    fn from(f: BodyFailure) -> Self {
        // wasi-http's error has no room for ours but a message: the kind
        // goes into it in a form `BodyFailure::of` reads back.
        Self::InternalError(Some(format!(
            "{BODY_FAILED} ({}): {}",
            f.kind.as_str(),
            f.message
        )))
    }
}

/// Refuses outbound requests to hosts the version was not granted.
#[derive(Debug, Default)]
pub(crate) struct OutboundPolicy {
    pub allowed_hosts: Vec<String>,
}

impl OutboundPolicy {
    fn allows(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(&host_without_port(host))
        })
    }
}

fn host_without_port(authority: &str) -> String {
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_string()
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        if !self.allows(&host) {
            tracing::debug!(%host, "outbound HTTP request denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}

/// Where a request's guest task runs: here, or on the runtime's
/// low-priority lane from the start or from the tick where it computed past
/// its CPU burst (see [`crate::lane`]).
pub(crate) struct Placement {
    pub runtime: crate::Runtime,
    pub penalized: bool,
    pub clock: Arc<crate::store::ClockShared>,
    /// The request's lease on its version, held by the guest task until the
    /// guest is done — past an early answer or a client that hung up — and
    /// leased again for a guest given up on while on the lane (see
    /// [`crate::lane::Lane::run`]).
    pub lease: crate::version::Lease,
}

/// The response body of a wasi-http call run by the runtime's isolator:
/// holds the call's lease until it ends, and counts the call then — a
/// body that failed as the guest's failure there, one dropped before its
/// end as a client that hung up, one not done by `deadline` (the call's
/// backstop and grace, whatever the isolator does) as a timeout.
pub(crate) struct Counted {
    pub body: HyperOutgoingBody,
    pub version: crate::Version,
    pub started: std::time::Instant,
    pub lease: Option<crate::version::Lease>,
    pub deadline: Pin<Box<tokio::time::Sleep>>,
    pub timeout: std::time::Duration,
}

impl Counted {
    fn finish(&mut self, failed: Option<Error>) {
        // The lease is let go after the call is counted: a drain that sees
        // nothing in flight sees every call counted.
        if let Some(_lease) = self.lease.take() {
            self.version.record_isolated_http(self.started, failed);
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.lease.is_none() {
            // Counted already: ended, failed or timed out.
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_pending() && self.deadline.as_mut().poll(cx).is_ready() {
            let timeout = self.timeout;
            self.finish(Some(Error::Timeout(timeout)));
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                format!(
                    "the response body was not done within the call's time limit ({timeout:?})"
                ),
            )))));
        }
        match &polled {
            // Trailers are a body's last frame (a server stops polling
            // after them).
            Poll::Ready(None) => self.finish(None),
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.finish(None),
            Poll::Ready(Some(Err(e))) => {
                // The isolator relays the guest's failure with its kind if
                // it can; a body that broke off otherwise is the guest's.
                let failed = match BodyFailure::of(e) {
                    Some(f) => Error::Isolated {
                        kind: f.kind,
                        message: f.message,
                    },
                    None => Error::Isolated {
                        kind: ErrorKind::Trap,
                        message: format!("the response body failed: {e}"),
                    },
                };
                self.finish(Some(failed));
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none() || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // A server may stop polling once the body says it has ended.
        let failed = (!self.body.is_end_stream())
            .then(|| Error::ClientClosed("the client stopped reading the response".into()));
        self.finish(failed);
    }
}

/// Whether the component exports the wasi-http handler.
pub(crate) fn proxy_pre(pre: &wasmtime::component::InstancePre<P2State>) -> Option<Proxy> {
    ProxyPre::new(pre.clone()).ok()
}

/// Runs one request through a fresh instance. The guest runs in its own task
/// so it can keep streaming the body after the head is returned; the task
/// yields the call's outcome and its memory high-water mark.
pub(crate) async fn handle<B>(
    proxy: &Proxy,
    mut store: wasmtime::Store<P2State>,
    request: http::Request<B>,
    limits: crate::limits::Limits,
    placement: Placement,
) -> (
    Result<Response, Option<Error>>,
    tokio::task::JoinHandle<(Result<()>, u64)>,
)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let prepared = (|| {
        let mut view = wasmtime_wasi_http::WasiHttpView::http(store.data_mut());
        let req = view.new_incoming_request(Scheme::Http, request)?;
        let out = view.new_response_outparam(sender)?;
        Ok::<_, wasmtime::Error>((req, out))
    })();
    let (req, out) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let err = Error::BadArgument {
                param: "request".into(),
                expected: "an HTTP request with an authority".into(),
                problem: format!("{e:#}"),
            };
            return (Err(Some(err)), tokio::spawn(async { (Ok(()), 0) }));
        }
    };
    let proxy = proxy.clone();
    let abandoned = Arc::new(AtomicBool::new(false));
    // How the guest ended, for its response body's end: wasi-http ends a
    // body cleanly when the guest's side is dropped, trap or not.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<Option<BodyFailure>>();
    let client_left = abandoned.clone();
    let (backstop, timeout) = (limits.backstop(), limits.timeout());
    let guest = Box::pin(async move {
        // CPU time counts from the first poll: a wait for the lane is not
        // the guest's.
        store.data_mut().clock.restart();
        let call = async {
            let instance = proxy.instantiate_async(&mut store).await?;
            instance
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        };
        // As for JSON calls: a guest blocked in a host call (reading a body
        // that never comes) is past epoch interruption's reach.
        let result = match tokio::time::timeout(limits.backstop(), call).await {
            Ok(r) => r.map_err(|e| crate::store::classify(e, &mut store, &limits)),
            Err(_) => Err(Error::Timeout(limits.timeout())),
        };
        // Read while the store still holds the guest's end of the body: the
        // client's side can only have gone first, so a trap now is the
        // guest failing to write to nobody (limits and timeouts stay its own).
        let result = match result {
            Err(e @ Error::Trap { .. }) if client_left.load(Ordering::Acquire) => {
                Err(Error::ClientClosed(e.to_string()))
            }
            r => r,
        };
        let _ = ended_tx.send(result.as_ref().err().map(BodyFailure::from));
        (result, store.data().limiter.memory_high_water)
    });
    let task = tokio::spawn(async move {
        let Placement {
            runtime,
            penalized,
            clock,
            // Held to the end of this task: until the guest is done,
            // whichever way it ends.
            lease,
        } = placement;
        match runtime.lane() {
            Some(lane) => {
                let deadline = tokio::time::Instant::now() + backstop + crate::version::LANE_GRACE;
                let version = lease.version().clone();
                lane.run(penalized, &clock, deadline, guest, move || version.lease())
                    .await
                    .unwrap_or((Err(Error::Timeout(timeout)), 0))
            }
            None => guest.await,
        }
    });
    let response = match receiver.await {
        Ok(Ok(resp)) => Ok(resp.map(|body| {
            UnsyncBoxBody::new(Watched {
                inner: body,
                inner_done: false,
                guest_ended: ended_rx,
                ended: false,
                abandoned,
            })
        })),
        Ok(Err(code)) => Err(Some(Error::Trap {
            code: None,
            message: format!("guest answered with an error: {code:?}"),
        })),
        // The guest never set a response: it trapped, timed out or returned
        // without answering. The task says which.
        Err(_) => Err(None),
    };
    (response, task)
}

/// A guest's response body that notes when it is dropped before its end
/// (the client hung up: hyper drops the body with the connection), and that
/// ends only once the guest has: with an error if the guest failed. A guest
/// that traps midway through its body drops its end of it, which wasi-http
/// reports as a clean end — a truncated response the client would take for
/// whole.
struct Watched {
    inner: HyperOutgoingBody,
    /// The guest's body has no more frames.
    inner_done: bool,
    /// How the guest ended (`Some` its failure); a dropped sender is a
    /// guest given up on.
    guest_ended: tokio::sync::oneshot::Receiver<Option<BodyFailure>>,
    ended: bool,
    abandoned: Arc<AtomicBool>,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            // Its outcome was taken; a oneshot must not be polled again.
            return Poll::Ready(None);
        }
        if !self.inner_done {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(None) => self.inner_done = true,
                polled @ Poll::Ready(Some(Err(_))) => {
                    // An error frame ends it too: the guest failed first.
                    self.ended = true;
                    return polled;
                }
                polled => return polled,
            }
        }
        let failure = match Pin::new(&mut self.guest_ended).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(failure)) => failure,
            // Its task was dropped: given up on at its deadline (the lane
            // does so), or the runtime is going away.
            Poll::Ready(Err(_)) => Some(BodyFailure {
                kind: ErrorKind::Timeout,
                message: "the guest was stopped before it ended".into(),
            }),
        };
        self.ended = true;
        Poll::Ready(failure.map(|f| Err(f.into())))
    }

    fn is_end_stream(&self) -> bool {
        // Not before the guest's end is known (see `poll_frame`).
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.abandoned.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyFailure, ErrorKind};

    #[test]
    fn a_body_failure_survives_the_body_error_it_becomes() {
        for kind in ErrorKind::ALL {
            let failure = BodyFailure {
                kind,
                message: "memory limit (4194304 bytes): grow refused (a): b".into(),
            };
            let error = wasmtime_wasi_http::Error::from(failure.clone());
            assert_eq!(BodyFailure::of(&error), Some(failure));
        }
        // Other body errors are not one, whatever they say.
        for text in [
            "the guest failed while writing its response body: no kind",
            "the guest failed while writing its response body (no_such_kind): x",
            "connection reset",
        ] {
            let error = wasmtime_wasi_http::Error::InternalError(Some(text.into()));
            assert_eq!(BodyFailure::of(&error), None, "{text}");
        }
        assert_eq!(
            BodyFailure::of(&wasmtime_wasi_http::Error::HttpResponseIncomplete),
            None
        );
    }
}
