//! Valid modules from `wasm-smith` into `Runtime::load`: each either loads
//! or is refused with a typed error naming a limit or an unsupported
//! feature — never a panic or a crash. Arbitrary bytes rarely get past the
//! header; these reach the compiler and wasmswap's own limit checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmswap_core::Error;

fuzz_target!(|module: wasm_smith::Module| {
    let rt = wasmswap_fuzz::runtime();
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
