//! Say what changed between two versions of a WIT package, world or
//! component, and whom it breaks.
//!
//! ```text
//! cargo run --example wit_diff -- OLD NEW [--world NAME] [--policy P] [--json]
//! cargo run --example wit_diff -- old/wit new/wit                 # packages
//! cargo run --example wit_diff -- v1.wasm v2.wasm                 # components
//! cargo run --example wit_diff -- a.wit b.wit --world proxy --json
//! ```
//!
//! OLD and NEW are each a `.wit` file, a WIT directory (with `deps/`), or a
//! component binary. `--policy` (callers, implementers, both, none; default
//! callers) picks whose breakage fails the check and the semver gate.
//! Exits 0 when nothing breaks under the policy and the version bump (if
//! both sides have one) permits the changes, 1 otherwise, 2 on bad input.

// A command-line program: its output is the point.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match wasmswap_examples::wit_diff::run(std::env::args().skip(1)) {
        Ok((report, pass)) => {
            print!("{report}");
            if pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("wit_diff: {e:#}");
            ExitCode::from(2)
        }
    }
}
