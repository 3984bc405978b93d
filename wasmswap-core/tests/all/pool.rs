//! The pooling allocator: slots are reused safely, and exhaustion is an error,
//! not a hang.

use std::time::Duration;

use serde_json::json;
use wasmswap_core::{Capabilities, Limits, RuntimeConfig, Version};

#[tokio::test]
async fn a_reused_slot_reads_as_zero() {
    // One slot: every instance reuses the same linear memory.
    let rt = RuntimeConfig::new().max_instances(1).build().unwrap();
    let writer = rt.load(&test_programs::wat("data-segment")).unwrap();
    let reader = rt.load(&test_programs::wat("memory-reader")).unwrap();
    let writer = Version::new(&rt, &writer, "w", Limits::default(), Capabilities::none()).unwrap();
    let reader = Version::new(&rt, &reader, "r", Limits::default(), Capabilities::none()).unwrap();
    for _ in 0..3 {
        assert_eq!(
            writer.invoke_json("scribble", &json!([])).await.unwrap(),
            json!(1)
        );
        // "secr" from the data segment at 0, 0x5ec2e7 stored at 1024.
        assert_eq!(
            reader.invoke_json("load", &json!([0])).await.unwrap(),
            json!(0)
        );
        assert_eq!(
            reader.invoke_json("load", &json!([1024])).await.unwrap(),
            json!(0)
        );
        assert_eq!(
            reader.invoke_json("load", &json!([8])).await.unwrap(),
            json!(0)
        );
    }
}

/// Minor page faults this thread has taken so far.
#[cfg(target_os = "linux")]
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the parenthesised command name start at the third; minflt
    // is the tenth.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(7).unwrap().parse().unwrap()
}

/// One slot, one module that dirties 4 MiB per call (every byte with
/// `stride` 0, else one word every `stride` bytes): every call must see the
/// memory as instantiated (data segment, zeros, size), whether the slot is
/// reset by `memset` of the pages kept resident or by `madvise`. Returns the
/// page faults of calls 2 to 4, taken on this thread (a current-thread
/// runtime runs the guest here), and the bytes the runtime really kept.
#[cfg(target_os = "linux")]
async fn dirty_calls_faults(keep_resident: u64, stride: u32) -> (u64, u64) {
    let rt = RuntimeConfig::new()
        .max_instances(1)
        .memory_keep_resident(keep_resident)
        .build()
        .unwrap();
    let a = rt.load(&test_programs::wat("dirty-memory")).unwrap();
    let v = Version::new(&rt, &a, "dirty", Limits::default(), Capabilities::none()).unwrap();
    let mut before = 0;
    for call in 0..4 {
        if call == 1 {
            before = minor_faults();
        }
        let seen = v
            .invoke_json("check_then_dirty", &json!([64, stride]))
            .await
            .unwrap();
        assert_ne!(seen, json!(-1), "call {call}: memory.grow failed");
        assert_eq!(
            seen,
            json!(1),
            "call {call} (keep_resident {keep_resident}, stride {stride}) saw the last call's memory"
        );
    }
    (minor_faults() - before, rt.memory_kept_resident())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_kept_resident_is_reset_and_not_faulted_in_again() {
    let (given_back, none) = dirty_calls_faults(0, 0).await;
    let (kept, kept_bytes) = dirty_calls_faults(64 << 20, 0).await;
    assert_eq!(none, 0);
    // Given back, each call faults its 4 MiB in again: 1,024 pages or more.
    assert!(
        given_back >= 3 * 1024,
        "{given_back} faults with nothing kept"
    );
    // Kept only where the runtime can (PAGEMAP_SCAN, no swap), and the
    // runtime says which; the machines this project's CI runs on can.
    let can_keep = wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
        && std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() <= 1);
    assert_eq!(kept_bytes, if can_keep { 64 << 20 } else { 0 });
    if can_keep {
        assert!(
            kept < given_back / 10,
            "{kept} faults kept resident vs {given_back} given back"
        );
    }
}

/// The reset stays exact where the kept budget runs out before the written
/// pages do (1 MiB kept, 4 MiB written: the rest is given back), and where
/// the written pages are more separate runs than one scan reports (a word
/// every 8 KiB: over 500 runs).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_partly_kept_is_still_reset() {
    dirty_calls_faults(1 << 20, 0).await;
    dirty_calls_faults(64 << 20, 8192).await;
    dirty_calls_faults(0, 8192).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_is_an_error_not_a_hang() {
    let rt = RuntimeConfig::new().max_instances(2).build().unwrap();
    let hog = rt
        .load(&test_programs::bytes(test_programs::HOSTILE_MODULE))
        .unwrap();
    let limits = Limits {
        timeout_ms: 1500,
        max_cpu_percent: 100,
        ..Limits::default()
    };
    let hog = Version::new(&rt, &hog, "hog", limits, Capabilities::none()).unwrap();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let h = hog.clone();
            tokio::spawn(async move { h.invoke_json("infinite_loop", &json!([])).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        hog.invoke_json("infinite_loop", &json!([])),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(matches!(e, wasmswap_core::Error::PoolExhausted(_)), "{e:?}");
    assert_eq!(e.kind(), wasmswap_core::ErrorKind::Overloaded);
    for b in busy {
        assert!(matches!(
            b.await.unwrap().unwrap_err(),
            wasmswap_core::Error::Timeout(_)
        ));
    }
    // Slots come back once the calls end.
    let ok = rt.load(&test_programs::wat("add")).unwrap();
    let ok = Version::new(&rt, &ok, "ok", Limits::default(), Capabilities::none()).unwrap();
    assert_eq!(
        ok.invoke_json("add", &json!([1, 1])).await.unwrap(),
        json!(2)
    );
}

/// Density: 10,000 distinct modules loaded at once in one runtime. Slow in a
/// debug build; `cargo run --release --example density` reports memory.
#[test]
#[ignore = "loads 10,000 modules; run with --ignored or use the density example"]
fn ten_thousand_modules_stay_loaded() {
    let rt = wasmswap_core::Runtime::new().unwrap();
    let mut loaded = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let wasm = wat::parse_str(format!(
            "(module (memory 1) (data (i32.const 0) \"m{i}\") (func (export \"id\") (result i32) i32.const {i}))"
        ))
        .unwrap();
        loaded.push(rt.load(&wasm).unwrap());
    }
    assert_eq!(rt.loaded_count(), 10_000);
}
