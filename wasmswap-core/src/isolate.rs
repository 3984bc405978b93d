//! Isolation: running the calls of a version that keeps hitting its memory
//! limit somewhere else — in practice another process, with a memory map
//! of its own.
//!
//! A guest that grows its memory to the limit, call after call, makes the
//! kernel change the process's memory map at every grow (`mprotect`), and
//! each change takes the map's lock for writing. Every other tenant's
//! instance reset needs that lock too, so the well-behaved wait behind the
//! bomb: measured, up to 1.2 ms at a time, twice their unloaded p99
//! (RELIABILITY.md). No amount of CPU priority helps with that; a separate
//! address space does. So once a version's call hits its memory limit, the
//! runtime hands its calls to an [`Isolator`] for
//! [`isolation_window`](crate::RuntimeConfig::isolation_window), and every
//! memory-limit hit there extends the window. `wasmswap-host` implements it
//! with a worker process; an embedder can bring its own.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value as Json;

use crate::sandbox::Capabilities;
use crate::version::Version;

/// A JSON call's answer, as an isolator returns it.
pub type IsolatedCall = Pin<Box<dyn Future<Output = crate::Result<Json>> + Send + 'static>>;

/// An isolator getting ready to run a version's calls.
pub type IsolatedReady = Pin<Box<dyn Future<Output = crate::Result<()>> + Send + 'static>>;

/// A request body handed to an isolator.
#[cfg(feature = "http")]
pub type IsolatedBody =
    http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, wasmtime_wasi_http::Error>;

/// A wasi-http response, as an isolator returns it.
#[cfg(feature = "http")]
pub type IsolatedResponse =
    Pin<Box<dyn Future<Output = crate::Result<crate::HttpResponse>> + Send + 'static>>;

/// Runs a version's calls elsewhere (see the [module docs](self)).
///
/// The runtime keeps everything else: the route's pick and a version lease
/// for the whole call (so drains wait for isolated calls, a wasi-http
/// response's body included), the version's counters (an isolated call is
/// counted like any other, under the error kind the isolator returns), and
/// the decision to isolate.
pub trait Isolator: Send + Sync + std::fmt::Debug + 'static {
    /// Gets ready to run `version`'s calls (starts a worker, loads the
    /// version there). The runtime calls it before each isolated call and
    /// runs the call in its own process if it fails, so nothing is lost to
    /// an isolator that cannot run it. Should be cheap once ready.
    fn prepare(&self, version: &Version) -> IsolatedReady;

    /// Calls `function` of `version` with `args` elsewhere, with `caps`
    /// instead of the version's own grants if given (mirrored calls run
    /// without side effects). An error should carry the kind the call's
    /// failure had there (see [`Error::Isolated`](crate::Error::Isolated)),
    /// so that a memory-limit hit keeps the version isolated.
    fn invoke_json(
        &self,
        version: &Version,
        function: &str,
        args: &Json,
        caps: Option<&Capabilities>,
    ) -> IsolatedCall;

    /// Serves one wasi-http request with `version` elsewhere. The request's
    /// URI is the one the guest sees. A failure before the response head
    /// should be an [`Error::Isolated`](crate::Error::Isolated) with the
    /// kind it had there; once the head is back, the call counts as done
    /// when its body ends.
    ///
    /// By default it refuses: an isolator that serves only JSON calls
    /// fails an isolated version's wasi-http requests (`internal`).
    #[cfg(feature = "http")]
    fn handle(&self, version: &Version, request: http::Request<IsolatedBody>) -> IsolatedResponse {
        let _ = (version, request);
        Box::pin(std::future::ready(Err(crate::Error::Isolated {
            kind: crate::ErrorKind::Internal,
            message: "this isolator does not serve wasi-http requests".into(),
        })))
    }

    /// Whether calls may go to the isolator now (cheap, checked before
    /// [`prepare`](Self::prepare)). While not (its worker could not be
    /// started lately, say), isolated versions run their calls in the
    /// runtime's own process, as without an isolator.
    fn available(&self) -> bool {
        true
    }
}
