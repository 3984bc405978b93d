//! Per-call cost of a fresh instance + call: raw wasmtime beside wasmswap, on
//! the same guests, sequentially and on 2 threads. Target: wasmswap / raw
//! ≤ 1.25×. `cargo run -p wasmswap-benches --bin bench-report` prints ratios.

use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use wasmswap_benches::{RawComponent, RawModule, raw_engine, run_threads};
use wasmswap_core::wasmtime::Val;
use wasmswap_core::wasmtime::component::Val as CVal;
use wasmswap_core::{Capabilities, Limits, Runtime, Version};

fn version(rt: &Runtime, path: &str) -> Version {
    let a = rt.load(&test_programs::bytes(path)).unwrap();
    Version::new(rt, &a, "bench", Limits::default(), Capabilities::none()).unwrap()
}

/// Benchmarks `call` on `threads` threads, reported per call (wall / calls).
fn bench_calls<F, Fut>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, threads: u64, call: F)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()>,
{
    g.bench_function(BenchmarkId::new(name, threads), |b| {
        b.iter_custom(|iters| run_threads(threads, iters, call.clone()))
    });
}

fn core_module(c: &mut Criterion) {
    let bytes = test_programs::bytes(test_programs::NUMERIC_MODULE);
    let raw = Arc::new(RawModule::new(&raw_engine(), &bytes));
    let rt = Runtime::new().unwrap();
    let v = version(&rt, test_programs::NUMERIC_MODULE);

    let mut g = c.benchmark_group("invoke/core-module");
    for threads in [1u64, 2] {
        let r = raw.clone();
        bench_calls(&mut g, "raw-wasmtime", threads, move || {
            let r = r.clone();
            async move { assert_eq!(r.call_add(1, 2).await, 3) }
        });
        let vv = v.clone();
        bench_calls(&mut g, "wasmswap", threads, move || {
            let v = vv.clone();
            async move {
                let out = v
                    .invoke_core("add", &[Val::I32(1), Val::I32(2)])
                    .await
                    .unwrap();
                assert_eq!(out[0].unwrap_i32(), 3);
            }
        });
        let vv = v.clone();
        bench_calls(&mut g, "wasmswap-json", threads, move || {
            let v = vv.clone();
            async move {
                assert_eq!(
                    v.invoke_json("add", &json!([1, 2])).await.unwrap(),
                    json!(3)
                )
            }
        });
    }
    g.finish();
}

fn component(c: &mut Criterion) {
    let bytes = test_programs::bytes(test_programs::TYPES_COMPONENT);
    let raw = Arc::new(RawComponent::new(&raw_engine(), &bytes));
    let rt = Runtime::new().unwrap();
    let v = version(&rt, test_programs::TYPES_COMPONENT);

    let mut g = c.benchmark_group("invoke/component");
    for threads in [1u64, 2] {
        let r = raw.clone();
        bench_calls(&mut g, "raw-wasmtime", threads, move || {
            let r = r.clone();
            async move { assert_eq!(r.call_add(1, 2).await, 3) }
        });
        let vv = v.clone();
        bench_calls(&mut g, "wasmswap", threads, move || {
            let v = vv.clone();
            async move {
                let out = v
                    .invoke_component("add-u32", &[CVal::U32(1), CVal::U32(2)])
                    .await
                    .unwrap();
                assert_eq!(out, vec![CVal::U32(3)]);
            }
        });
        let vv = v.clone();
        bench_calls(&mut g, "wasmswap-json", threads, move || {
            let v = vv.clone();
            async move {
                assert_eq!(
                    v.invoke_json("add-u32", &json!([1, 2])).await.unwrap(),
                    json!(3)
                )
            }
        });
    }
    g.finish();
}

criterion_group!(benches, core_module, component);
criterion_main!(benches);
