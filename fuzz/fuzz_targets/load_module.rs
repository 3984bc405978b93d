//! Arbitrary bytes into `Runtime::load`: a typed error or a loaded artifact,
//! never a panic, a hang past the compile timeout, or a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = wasmswap_fuzz::runtime();
    if let Ok(artifact) = rt.load(data) {
        // What loading recorded must agree with the bytes.
        assert_eq!(artifact.id(), wasmswap_core::ContentId::of(data));
        assert_eq!(artifact.info().size_bytes, data.len());
    }
});
