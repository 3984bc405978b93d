//! What the fuzz targets share.

use std::sync::OnceLock;

use wasmswap_core::Runtime;

/// One runtime per fuzzing process, for the targets that load modules: a
/// few instances and a 5 s compile timeout, so a slow input is an error
/// rather than a hang.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::builder()
            .max_instances(4)
            .compile_timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("runtime")
    })
}
