//! Valid modules from `wasm-smith` into `Runtime::load`: each either loads
//! or is refused with a typed error naming a limit or an unsupported
//! feature — never a panic or a crash. Arbitrary bytes rarely get past the
//! header; these reach the compiler and wasmswap's own limit checks.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmswap_core::{Error, Runtime};

fuzz_target!(|module: wasm_smith::Module| {
    static RT: OnceLock<Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        Runtime::builder()
            .max_instances(4)
            .compile_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("runtime")
    });
    let bytes = module.to_bytes();
    match rt.load(&bytes) {
        Ok(artifact) => assert_eq!(artifact.info().size_bytes, bytes.len()),
        // wasm-smith emits only valid modules: a refusal must be a load
        // error (a limit, a feature this runtime leaves off), not an
        // internal failure.
        Err(Error::Load(_)) => {}
        Err(other) => panic!("valid module refused with {other:?}"),
    }
});
