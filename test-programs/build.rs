//! Builds the guest programs in `examples/guests` for wasm32 and writes their
//! paths into `$OUT_DIR/guests.rs` (the pattern of wasmtime's test-programs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// (package, target, constant name)
const GUESTS: &[(&str, &str, &str)] = &[
    ("types", "wasm32-wasip2", "TYPES_COMPONENT"),
    ("sandbox-probe", "wasm32-wasip2", "SANDBOX_PROBE_COMPONENT"),
    ("http-hello", "wasm32-wasip2", "HTTP_HELLO_V1_COMPONENT"),
    ("http-hello-v2", "wasm32-wasip2", "HTTP_HELLO_V2_COMPONENT"),
    ("numeric", "wasm32-wasip1", "NUMERIC_MODULE"),
    ("hostile", "wasm32-wasip1", "HOSTILE_MODULE"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guests = manifest_dir.join("../examples/guests");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // Outside OUT_DIR so that every build profile (test, bench, clippy)
    // shares one guest build instead of compiling the guests again.
    let target_dir = manifest_dir.join("../target/guests");

    println!("cargo:rerun-if-changed={}", guests.display());

    let mut generated = String::new();
    for target in ["wasm32-wasip2", "wasm32-wasip1"] {
        ensure_target(target);
        let packages: Vec<&str> = GUESTS
            .iter()
            .filter(|(_, t, _)| *t == target)
            .map(|(p, _, _)| *p)
            .collect();
        build(&guests, &target_dir, target, &packages);
    }
    for (package, target, constant) in GUESTS {
        let file = package.replace('-', "_") + ".wasm";
        let path = target_dir.join(target).join("release").join(file);
        let path = path.canonicalize().unwrap_or_else(|e| {
            panic!("guest `{package}` was not built at {}: {e}", path.display())
        });
        generated.push_str(&format!(
            "/// `examples/guests/{package}` built for `{target}`.\npub const {constant}: &str = {:?};\n",
            path.display()
        ));
        // The demo's service ships inside the `wasmswap` binary.
        if package.starts_with("http-hello") {
            generated.push_str(&format!(
                "/// The bytes of `examples/guests/{package}`.\npub static {constant}_BYTES: &[u8] = include_bytes!({:?});\n",
                path.display()
            ));
        }
    }
    fs::write(out_dir.join("guests.rs"), generated).unwrap();
}

/// rust-toolchain.toml lists the wasm targets, but rustup only installs them
/// with the toolchain; on a machine that already had the toolchain, add them.
fn ensure_target(target: &str) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.is_dir()) {
        return;
    }
    println!("cargo:warning=installing the {target} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "the {target} target is missing and `rustup target add {target}` failed"
    );
}

fn build(guests: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guests)
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(target)
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    // The outer build's settings (clippy's wrapper, host rustflags, the
    // jobserver, coverage instrumentation) must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().expect("failed to run cargo for the guests");
    assert!(
        status.success(),
        "building guests for {target} failed: {status}"
    );
}
