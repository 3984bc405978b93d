//! Load, validate, compile, sandbox and run WebAssembly modules and
//! components, each call in a fresh pooled instance under memory, time and CPU
//! limits — and swap a service's version atomically while it serves.
//!
//! ```
//! use std::time::Duration;
//! use wasmswap_core::{Capabilities, Limits, Route, Runtime, Service, Version};
//! use serde_json::json;
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let runtime = Runtime::new()?;
//!
//! // Load: validate with wasmparser, compile (or reuse the cached code).
//! let v1_wasm = wat::parse_str(r#"
//!     (module (func (export "add") (param i32 i32) (result i32)
//!         (i32.add (local.get 0) (local.get 1))))
//! "#)?;
//! let artifact = runtime.load(&v1_wasm)?;
//! assert_eq!(artifact.info().exports[0].signature, "(i32, i32) -> (i32)");
//!
//! // A version: the artifact plus its limits and WASI grants (none here).
//! let v1 = Version::new(&runtime, &artifact, "v1", Limits::default(), Capabilities::none())?;
//!
//! // A service routes calls to a version; every call runs in a fresh instance.
//! let service = Service::new("adder", Route::stable(v1))?;
//! let served = service.invoke_json(None, "add", &json!([2, 40])).await?;
//! assert_eq!((served.value, served.version.as_str()), (json!(42), "v1"));
//!
//! // Swap in v2 while serving: calls in flight finish on v1, new calls get v2.
//! let v2_wasm = wat::parse_str(r#"
//!     (module (func (export "add") (param i32 i32) (result i32)
//!         (i32.add (i32.add (local.get 0) (local.get 1)) (i32.const 1000))))
//! "#)?;
//! let v2 = Version::new(&runtime, &runtime.load(&v2_wasm)?, "v2", Limits::default(), Capabilities::none())?;
//! let swap = service.set_route(Route::stable(v2))?;
//! assert!(swap.drained(Duration::from_secs(5)).await.is_drained());
//! assert_eq!(service.invoke_json(None, "add", &json!([2, 40])).await?.value, json!(1042));
//!
//! // Rollback is one pointer swap: v1 was kept warm.
//! let _ = service.rollback()?;
//! assert_eq!(service.invoke_json(None, "add", &json!([2, 40])).await?.value, json!(42));
//!
//! // Bad arguments name the parameter and the expected type.
//! let err = service.invoke_json(None, "add", &json!([2, "forty"])).await.unwrap_err();
//! assert_eq!(err.to_string(), r#"bad argument `arg1`: expected i32, got string "forty""#);
//! # Ok(()) }
//! ```
//!
//! ## JSON and WIT types
//!
//! [`Version::invoke_json`] converts arguments and results by the function's
//! own types. For components: `bool`, integers (range-checked; 64-bit ones
//! also as decimal strings), floats (`"NaN"`, `"Infinity"` for non-finite
//! values), `char` (a one-character string), `string`, `list<T>` (an array),
//! records (objects by field name), tuples (arrays), variants
//! (`{"case": payload}` or `"case"`), enums (strings), options (`null` or the
//! value; `{"some": v}` around an inner option, so `some(none)` is
//! `{"some": null}`), results (`{"ok": v}` / `{"err": e}`) and flags (arrays of names).
//! For core modules: numbers.
//!
//! ## Limits and the sandbox
//!
//! Each [`Version`] carries [`Limits`] (memory, wall-clock timeout, CPU share,
//! optional CPU-time and fuel budgets, table and instance counts) and
//! [`Capabilities`] (preopened directories, environment variables, wall clock,
//! randomness, outbound HTTP hosts). Nothing is inherited from the host.
//! Each violated limit is its own [`Error`] variant.
//!
//! ## Services and hot swap
//!
//! A [`Service`] holds an `ArcSwap` of its [`Route`]: a stable version, and
//! optionally a candidate that takes a [`Weight`] of the calls (sticky by a
//! caller-supplied key, the same on every node — see [`sticky_bucket`]) or
//! runs a mirrored copy of them without side-effecting grants. A call loads
//! the route once and holds a [`Lease`] on its version to the end; a route
//! change returns a [`Swap`] whose [`drained`](Swap::drained) resolves once
//! the retired versions are idle. The previous route stays warm, so
//! [`Service::rollback`] is one pointer swap. Route changes are logged with
//! `tracing` and published to [`Service::subscribe`].

#![deny(missing_docs)]

mod artifact;
mod cache;
mod config;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "http")]
mod http;
mod isolate;
mod json;
mod lane;
mod limits;
mod metrics;
mod route;
mod runtime;
mod sandbox;
mod service;
mod store;
mod ticker;
mod validate;
mod version;
pub mod wit;

pub use artifact::{Artifact, ArtifactInfo, ArtifactKind, ContentId, ExportInfo, WasiVersion};
pub use config::RuntimeConfig;
pub use error::{Error, ErrorKind, LoadError, Result};
#[cfg(feature = "http")]
pub use http::{BodyFailure, Response as HttpResponse};
#[cfg(feature = "http")]
pub use isolate::{IsolatedBody, IsolatedResponse};
pub use isolate::{IsolatedCall, IsolatedReady, Isolator};
pub use limits::Limits;
pub use metrics::{CounterSnapshot, LATENCY_BUCKETS_US};
pub use route::{Candidate, CandidateMode, Route, RouteSummary, Weight, sticky_bucket};
pub use runtime::{LoadSource, Runtime};
pub use sandbox::{Capabilities, Preopen};
pub use service::{DrainReport, Pick, RouteChange, RouteEvent, Served, Service, Swap};
pub use version::{Lease, Version};

/// Re-exported so embedders use the same wasmtime as this crate.
pub use wasmtime;
