//! The cost of the hot-swap machinery beside the arc-swap primitives it is
//! built on: picking a version for a call, and storing a new route.

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use wasmswap_core::{Capabilities, Limits, Route, Runtime, Service, Version, Weight};

fn versions() -> (Version, Version) {
    let rt = Runtime::new().unwrap();
    let a = rt.load(&test_programs::wat("add")).unwrap();
    let mk = |label: &str| {
        Version::new(&rt, &a, label, Limits::default(), Capabilities::none()).unwrap()
    };
    (mk("v1"), mk("v2"))
}

fn pick(c: &mut Criterion) {
    let (v1, v2) = versions();
    let mut g = c.benchmark_group("route-pick");
    // Baseline: what any arc-swap reader pays (load + clone an Arc).
    let raw = ArcSwap::from_pointee(v1.clone());
    g.bench_function("baseline-arcswap-load-clone", |b| {
        b.iter(|| drop(std::hint::black_box(raw.load_full())))
    });
    let stable = Service::new("bench", Route::stable(v1.clone())).unwrap();
    g.bench_function("stable", |b| {
        b.iter(|| drop(std::hint::black_box(stable.pick(None))))
    });
    let split = Service::new(
        "bench",
        Route::split(v1.clone(), v2.clone(), Weight::from_percent(10.0).unwrap()),
    )
    .unwrap();
    g.bench_function("split-unkeyed", |b| {
        b.iter(|| drop(std::hint::black_box(split.pick(None))))
    });
    g.bench_function("split-sticky-key", |b| {
        b.iter(|| drop(std::hint::black_box(split.pick(Some("session=4f1c2a9e")))))
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let (v1, v2) = versions();
    let mut g = c.benchmark_group("route-store");
    let raw = ArcSwap::from_pointee(v1.clone());
    let mut flip = false;
    g.bench_function("baseline-arcswap-store", |b| {
        b.iter(|| {
            flip = !flip;
            raw.store(Arc::new(if flip { v2.clone() } else { v1.clone() }));
        })
    });
    let svc = Service::new("bench", Route::stable(v1.clone())).unwrap();
    g.bench_function("set-route", |b| {
        b.iter(|| {
            flip = !flip;
            let next = if flip { v2.clone() } else { v1.clone() };
            drop(svc.set_route(Route::stable(next)).unwrap());
        })
    });
    g.bench_function("rollback", |b| b.iter(|| drop(svc.rollback().unwrap())));
    g.finish();
}

criterion_group!(benches, pick, store);
criterion_main!(benches);
