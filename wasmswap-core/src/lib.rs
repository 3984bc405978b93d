//! Load, validate, compile, sandbox and run WebAssembly modules and
//! components, each call in a fresh pooled instance under memory, time and CPU
//! limits.
//!
//! ```
//! use wasmswap_core::{Capabilities, Limits, Runtime, Version};
//! use serde_json::json;
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let runtime = Runtime::new()?;
//!
//! // Load: validate with wasmparser, compile (or reuse the cached code).
//! let wasm = wat::parse_str(r#"
//!     (module (func (export "add") (param i32 i32) (result i32)
//!         (i32.add (local.get 0) (local.get 1))))
//! "#)?;
//! let artifact = runtime.load(&wasm)?;
//! assert_eq!(artifact.info().exports[0].signature, "(i32, i32) -> (i32)");
//!
//! // A version: the artifact plus its limits and WASI grants (none here).
//! let v1 = Version::new(&runtime, &artifact, "v1", Limits::default(), Capabilities::none())?;
//!
//! // Every call runs in a fresh instance.
//! assert_eq!(v1.invoke_json("add", &json!([2, 40])).await?, json!(42));
//!
//! // Bad arguments name the parameter and the expected type.
//! let err = v1.invoke_json("add", &json!([2, "forty"])).await.unwrap_err();
//! assert_eq!(err.to_string(), r#"bad argument `arg1`: expected i32, got string "forty""#);
//! assert_eq!(v1.counters().calls, 2);
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
//! value), results (`{"ok": v}` / `{"err": e}`) and flags (arrays of names).
//! For core modules: numbers.
//!
//! ## Limits and the sandbox
//!
//! Each [`Version`] carries [`Limits`] (memory, wall-clock timeout, CPU share,
//! optional CPU-time and fuel budgets, table and instance counts) and
//! [`Capabilities`] (preopened directories, environment variables, wall clock,
//! randomness, outbound HTTP hosts). Nothing is inherited from the host.
//! Each violated limit is its own [`Error`] variant.

#![deny(missing_docs)]

mod artifact;
mod cache;
mod config;
mod error;
mod json;
mod limits;
mod metrics;
mod route;
mod runtime;
mod sandbox;
mod service;
mod store;
mod validate;
mod version;

pub use artifact::{Artifact, ArtifactInfo, ArtifactKind, ContentId, ExportInfo, WasiVersion};
pub use config::RuntimeConfig;
pub use error::{Error, ErrorKind, LoadError, Result};
pub use limits::Limits;
pub use metrics::{CounterSnapshot, LATENCY_BUCKETS_US};
pub use route::{Candidate, CandidateMode, Route, RouteSummary, Weight, sticky_bucket};
pub use runtime::{LoadSource, Runtime};
pub use sandbox::{Capabilities, Preopen};
pub use service::{DrainReport, Pick, RouteChange, RouteEvent, Served, Service, Swap};
pub use version::{Lease, Version};

/// Re-exported so embedders use the same wasmtime as this crate.
pub use wasmtime;
