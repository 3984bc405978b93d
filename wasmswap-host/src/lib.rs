//! `wasmswap-host`: the edge node (hyper data plane and node agent API).
//!
//! Not built yet: this crate only reserves its place in the workspace. Its
//! scope is issue #5 and `DESIGN.md` ("Host"); until then, embed
//! `wasmswap-core` directly.

#![deny(missing_docs)]
