//! Arbitrary bytes into `Runtime::load`: a typed error or a loaded artifact,
//! never a panic, a hang past the compile timeout, or a crash.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmswap_core::Runtime;

fuzz_target!(|data: &[u8]| {
    static RT: OnceLock<Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        Runtime::builder()
            .max_instances(4)
            .compile_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("runtime")
    });
    if let Ok(artifact) = rt.load(data) {
        // What loading recorded must agree with the bytes.
        assert_eq!(artifact.id(), wasmswap_core::ContentId::of(data));
        assert_eq!(artifact.info().size_bytes, data.len());
    }
});
