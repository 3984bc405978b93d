//! WIT parsing, the semantic diff, the semver gate, conformance and reports.

mod conformance;
mod corpus;
mod parse;
mod props;
mod registry;
mod report;
mod semver;
mod wasi;

use wasmswap_core::wit::WitPackage;

/// Parses one WIT text, panicking with the rendered error if it is bad.
pub fn pkg(text: &str) -> WitPackage {
    WitPackage::parse("test.wit", text).unwrap_or_else(|e| panic!("{}", e.rendered))
}

/// The packages `wasi:http` depends on.
pub const WASI_DEPS: [&str; 6] = [
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:filesystem",
    "wasi:sockets",
    "wasi:cli",
];

/// The vendored WASI WIT directory of one release.
pub fn wasi_dir(release: &str) -> std::path::PathBuf {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    match release {
        "0.2.0" => base.join("tests/wit/wasi-0.2.0"),
        "0.2.12" => base.join("wit/wasi-0.2.12"),
        other => panic!("no vendored WASI {other}"),
    }
}
