//! Loading a binary: a full compile beside a load from the on-disk cache (the
//! node-restart and rollback path), and beside wasmtime's own `Module::new`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmswap_benches::raw_engine;
use wasmswap_core::{LoadSource, RuntimeConfig};

fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    g.sample_size(20);
    for (name, path) in [
        ("core-module", test_programs::NUMERIC_MODULE),
        ("component", test_programs::TYPES_COMPONENT),
    ] {
        let bytes = test_programs::bytes(path);
        let engine = raw_engine();
        g.bench_function(BenchmarkId::new("raw-wasmtime-compile", name), |b| {
            b.iter(|| match name {
                "component" => drop(wasmtime::component::Component::new(&engine, &bytes).unwrap()),
                _ => drop(wasmtime::Module::new(&engine, &bytes).unwrap()),
            })
        });
        g.bench_function(BenchmarkId::new("wasmswap-compile", name), |b| {
            // No disk cache, and the artifact is dropped each time, so every
            // iteration validates and compiles.
            let rt = RuntimeConfig::new().build().unwrap();
            b.iter(|| {
                let (a, src) = rt.load_traced(&bytes).unwrap();
                assert_eq!(src, LoadSource::Compiled);
                drop(a);
            })
        });
        let dir = tempfile::tempdir().unwrap();
        RuntimeConfig::new()
            .cache_dir(dir.path())
            .build()
            .unwrap()
            .load(&bytes)
            .unwrap();
        let rt = RuntimeConfig::new().cache_dir(dir.path()).build().unwrap();
        g.bench_function(BenchmarkId::new("wasmswap-disk-cache", name), |b| {
            b.iter(|| {
                let (a, src) = rt.load_traced(&bytes).unwrap();
                assert_eq!(src, LoadSource::Disk);
                drop(a);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
