//! `wasmswap-control`: the control plane (REST API, store, auth, rollout
//! engine).
//!
//! Not built yet: this crate only reserves its place in the workspace. Its
//! scope is issues #6 and #7 and `DESIGN.md` ("Control plane").

#![deny(missing_docs)]
