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
