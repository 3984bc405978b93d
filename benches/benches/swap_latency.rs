//! Call latency with the route swapped every millisecond, beside the same
//! calls with no swaps, in one run: p50, p99 and max, their ratios, and the
//! number of failed calls (must be 0).
//!
//! `cargo bench -p wasmswap-benches --bench swap_latency`

// A report printer: its output is the point.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmswap_core::{Capabilities, Limits, Route, Runtime, Service, Version};

/// Calls per configuration, in `ROUNDS` interleaved rounds so that drift on a
/// shared machine hits every configuration alike.
const CALLS: usize = 60_000;
const ROUNDS: usize = 6;

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn run(svc: &Service, swaps: bool) -> (Vec<Duration>, usize, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = swaps.then(|| {
        let (svc, stop) = (svc.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                drop(svc.rollback().unwrap());
                n += 1;
            }
            n
        })
    });
    let mut latencies = Vec::with_capacity(CALLS / ROUNDS);
    let mut failed = 0;
    for _ in 0..CALLS / ROUNDS {
        let started = Instant::now();
        if svc.invoke_json(None, "add", &json!([1, 2])).await.is_err() {
            failed += 1;
        }
        latencies.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let swaps_done = swapper.map(|h| h.join().unwrap()).unwrap_or(0);
    (latencies, failed, swaps_done)
}

fn row(name: &str, l: &[Duration], failed: usize, swaps: u64) {
    println!(
        "| {name} | {CALLS} | {swaps} | {:.2} µs | {:.2} µs | {:.2} µs | {failed} |",
        percentile(l, 0.5).as_secs_f64() * 1e6,
        percentile(l, 0.99).as_secs_f64() * 1e6,
        l.last().unwrap().as_secs_f64() * 1e6
    );
}

fn ratio(name: &str, l: &[Duration], base: &[Duration]) {
    println!(
        "{name}: p50 {:.2}×, p99 {:.2}×",
        percentile(l, 0.5).as_secs_f64() / percentile(base, 0.5).as_secs_f64(),
        percentile(l, 0.99).as_secs_f64() / percentile(base, 0.99).as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rt = Runtime::new().unwrap();
    let module = |n: u32| {
        let wasm = wat::parse_str(format!(
            "(module (memory 1) (data (i32.const 0) \"v{n}\")
              (func (export \"add\") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"
        ))
        .unwrap();
        rt.load(&wasm).unwrap()
    };
    let version = |a: &wasmswap_core::Artifact, label: &str| {
        Version::new(&rt, a, label, Limits::default(), Capabilities::none()).unwrap()
    };
    // Two different modules: a swap moves calls to another compiled module
    // (another memory image). Two versions of one module: a swap changes
    // nothing the pool sees.
    let (m1, m2) = (module(1), module(2));
    let distinct = Service::new("distinct", Route::stable(version(&m1, "v1"))).unwrap();
    drop(
        distinct
            .set_route(Route::stable(version(&m2, "v2")))
            .unwrap(),
    );
    let same = Service::new("same", Route::stable(version(&m1, "a"))).unwrap();
    drop(same.set_route(Route::stable(version(&m1, "b"))).unwrap());

    // Warm up both versions' pool slots.
    let _ = run(&distinct, false).await;
    let _ = run(&same, false).await;
    let (mut base, mut swapped, mut same_swapped) = (Vec::new(), Vec::new(), Vec::new());
    let (mut base_failed, mut swap_failed, mut same_failed) = (0, 0, 0);
    let (mut swaps, mut same_swaps) = (0, 0);
    for _ in 0..ROUNDS {
        let (l, f, _) = run(&distinct, false).await;
        base.extend(l);
        base_failed += f;
        let (l, f, n) = run(&distinct, true).await;
        swapped.extend(l);
        swap_failed += f;
        swaps += n;
        let (l, f, n) = run(&same, true).await;
        same_swapped.extend(l);
        same_failed += f;
        same_swaps += n;
    }
    for l in [&mut base, &mut swapped, &mut same_swapped] {
        l.sort();
    }
    println!("| run | calls | swaps | p50 | p99 | max | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    row("no swaps (baseline)", &base, base_failed, 0);
    row("swap every 1 ms, two modules", &swapped, swap_failed, swaps);
    row(
        "swap every 1 ms, one module",
        &same_swapped,
        same_failed,
        same_swaps,
    );
    ratio("two modules vs baseline", &swapped, &base);
    ratio("one module vs baseline", &same_swapped, &base);
    assert_eq!(
        base_failed + swap_failed + same_failed,
        0,
        "calls failed during swaps"
    );
}
