//! WIT: the semantic diff of the `wasi:http` proxy world (0.2.0 → 0.2.12,
//! every imported package included) beside the time to parse it, with
//! wit-parser's own directory parse as the baseline.

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmswap_core::wit::{self, WitPackage};

fn wasi(release: &str) -> PathBuf {
    let core = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmswap-core");
    match release {
        "0.2.0" => core.join("tests/wit/wasi-0.2.0"),
        _ => core.join("wit/wasi-0.2.12"),
    }
}

fn wit_diff(c: &mut Criterion) {
    let mut g = c.benchmark_group("wit");
    let param = "wasi:http";
    g.bench_function(BenchmarkId::new("baseline-wit-parser-parse", param), |b| {
        b.iter(|| {
            let mut r = wit_parser::Resolve::new();
            r.push_path(wasi("0.2.12")).unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("wasmswap-parse", param), |b| {
        b.iter(|| WitPackage::from_path(wasi("0.2.12")).unwrap())
    });
    let old = WitPackage::from_path(wasi("0.2.0")).unwrap();
    let new = WitPackage::from_path(wasi("0.2.12")).unwrap();
    let (ow, nw) = (old.world("proxy").unwrap(), new.world("proxy").unwrap());
    assert!(!wit::diff_worlds(&ow, &nw).is_empty());
    g.bench_function(BenchmarkId::new("wasmswap-diff-proxy-world", param), |b| {
        b.iter(|| wit::diff_worlds(&ow, &nw))
    });
    g.bench_function(BenchmarkId::new("wasmswap-diff-package", param), |b| {
        b.iter(|| wit::diff_packages(&old, &new))
    });
    g.bench_function(
        BenchmarkId::new("wasmswap-diff-proxy-world-with-itself", param),
        |b| b.iter(|| wit::diff_worlds(&nw, &nw)),
    );
    g.finish();
}

criterion_group!(benches, wit_diff);
criterion_main!(benches);
