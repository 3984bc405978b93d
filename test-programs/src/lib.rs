//! Guest programs for wasmswap's tests, benches and examples.
//!
//! The Rust guests under `examples/guests` are compiled by this crate's build
//! script (components for `wasm32-wasip2`, core modules for `wasm32-wasip1`);
//! the constants below are the paths of the built `.wasm` files. WAT fixtures
//! live in `examples/guests/wat` and are assembled by [`wat`].

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Reads a built guest's bytes.
///
/// # Panics
/// If the file is missing, which means the build script did not run.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading guest {path}: {e}"))
}

/// Assembles `examples/guests/wat/{name}.wat` into a binary module.
///
/// # Panics
/// If the fixture is missing or not valid WAT.
pub fn wat(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../examples/guests/wat/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(&path).unwrap_or_else(|e| panic!("assembling {path}: {e}"))
}
