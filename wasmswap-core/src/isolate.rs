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

/// Runs a version's JSON calls elsewhere (see the [module docs](self)).
///
/// The runtime keeps everything else: the route's pick and the caller's
/// version lease (so drains wait for isolated calls), the version's
/// counters (an isolated call is counted like any other, under the error
/// kind the isolator returns), and the decision to isolate.
pub trait Isolator: Send + Sync + std::fmt::Debug + 'static {
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

    /// Whether calls may go to the isolator now. While not (its worker
    /// could not be started, say), isolated versions run their calls in
    /// the runtime's own process, as without an isolator.
    fn available(&self) -> bool {
        true
    }
}
