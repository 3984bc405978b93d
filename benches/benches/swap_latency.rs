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

const CALLS: usize = 40_000;

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
    let mut latencies = Vec::with_capacity(CALLS);
    let mut failed = 0;
    for _ in 0..CALLS {
        let started = Instant::now();
        if svc.invoke_json(None, "add", &json!([1, 2])).await.is_err() {
            failed += 1;
        }
        latencies.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let swaps_done = swapper.map(|h| h.join().unwrap()).unwrap_or(0);
    latencies.sort();
    (latencies, failed, swaps_done)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Criterion passes --bench; there is nothing to configure.
    let rt = Runtime::new().unwrap();
    let mk = |n: u32| {
        let wasm = wat::parse_str(format!(
            "(module (func (export \"add\") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
              (func (export \"v{n}\")))"
        ))
        .unwrap();
        Version::new(
            &rt,
            &rt.load(&wasm).unwrap(),
            format!("v{n}"),
            Limits::default(),
            Capabilities::none(),
        )
        .unwrap()
    };
    let svc = Service::new("latency", Route::stable(mk(1))).unwrap();
    drop(svc.set_route(Route::stable(mk(2))).unwrap());
    // Warm up both versions' pool slots.
    let _ = run(&svc, false).await;
    let (base, base_failed, _) = run(&svc, false).await;
    let (swapped, swap_failed, swaps) = run(&svc, true).await;
    println!("| calls | swaps | p50 | p99 | max | failed |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, l, f, s) in [
        ("no swaps (baseline)", &base, base_failed, 0),
        ("swap every 1 ms", &swapped, swap_failed, swaps),
    ] {
        println!(
            "| {name}: {CALLS} | {s} | {:.2} µs | {:.2} µs | {:.2} µs | {f} |",
            percentile(l, 0.5).as_secs_f64() * 1e6,
            percentile(l, 0.99).as_secs_f64() * 1e6,
            l.last().unwrap().as_secs_f64() * 1e6
        );
    }
    println!(
        "ratio with/without swaps: p50 {:.2}×, p99 {:.2}×",
        percentile(&swapped, 0.5).as_secs_f64() / percentile(&base, 0.5).as_secs_f64(),
        percentile(&swapped, 0.99).as_secs_f64() / percentile(&base, 0.99).as_secs_f64()
    );
    assert_eq!(base_failed + swap_failed, 0, "calls failed during swaps");
}
