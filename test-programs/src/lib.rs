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

/// A valid core module that is slow to compile: `functions` functions, each
/// a long chain of dependent arithmetic on its locals (about 40 KB of code
/// apiece), and the exports `run` and `health_check`, which return 1.
pub fn slow_to_compile(functions: usize) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut wat = String::from("(module\n");
    for f in 0..functions {
        let _ = writeln!(
            wat,
            "(func $f{f} (param i32) (result i32) (local i32 i32 i32)"
        );
        for i in 0..2_000 {
            let (a, b) = (i % 4, (i + 1) % 4);
            let _ = writeln!(
                wat,
                "local.get {a} local.get {b} i32.mul i32.const {i} i32.xor local.set {b}"
            );
        }
        wat.push_str("local.get 1)\n");
    }
    wat.push_str("(func (export \"run\") (result i32) i32.const 1)\n");
    wat.push_str("(func (export \"health_check\") (result i32) i32.const 1))\n");
    wat::parse_str(&wat).expect("generated WAT assembles")
}
