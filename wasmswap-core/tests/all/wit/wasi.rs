//! The real WASI packages, as vendored by wasmtime-wasi-http at two releases.

use wasmswap_core::wit::{self, WitPackage};

use super::wasi_dir;

#[test]
fn scratch_print() {
    let old = WitPackage::from_path(wasi_dir("0.2.0")).unwrap_or_else(|e| panic!("{}", e.rendered));
    let new = wit::wasi_0_2_12().unwrap();
    for p in ["wasi:cli", "wasi:io", "wasi:clocks", "wasi:sockets", "wasi:filesystem", "wasi:random"] {
        let d = wit::diff_packages(&old.dependency(p).unwrap(), &new.dependency(p).unwrap());
        println!("{d}");
    }
    let d = wit::diff_worlds(&old.dependency("wasi:cli").unwrap().world("command").unwrap(), &new.dependency("wasi:cli").unwrap().world("command").unwrap());
    println!("{d}");
}
