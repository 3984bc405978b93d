//! Hostile guests end with their own error within their limit, while a
//! well-behaved guest on the same runtime keeps being served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmswap_core::{Capabilities, Error, Limits, RuntimeConfig, Version};

use crate::{GENEROUS, runtime, short_limits, version_of, version_with};

/// Calls a well-behaved guest in a loop until stopped; returns (ok, failed).
fn bystander() -> (Arc<AtomicBool>, tokio::task::JoinHandle<(u64, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let v = version_of(test_programs::NUMERIC_MODULE);
    let s = stop.clone();
    let handle = tokio::spawn(async move {
        let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        while !s.load(Ordering::Relaxed) {
            match v.invoke_json("add", &json!([1, 2])).await {
                Ok(r) if r == json!(3) => ok.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            tokio::task::yield_now().await;
        }
        (ok.into_inner(), failed.into_inner())
    });
    (stop, handle)
}

async fn hostile(path: &str, func: &str, limits: Limits) -> (Error, Duration) {
    let v = version_with(path, limits, Capabilities::none());
    let started = Instant::now();
    let err = v
        .invoke_json(func, &json!([]))
        .await
        .expect_err("hostile call must fail");
    (err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_guest_is_contained_while_others_are_served() {
    let (stop, served) = bystander();
    let limits = short_limits();

    let (e, took) = hostile(
        test_programs::HOSTILE_MODULE,
        "infinite_loop",
        limits.clone(),
    )
    .await;
    assert!(
        matches!(e, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < GENEROUS,
        "{took:?}"
    );

    let (e, _) = hostile(test_programs::HOSTILE_MODULE, "memory_bomb", limits.clone()).await;
    assert!(
        matches!(e, Error::MemoryLimit { limit_bytes } if limit_bytes == 32 << 20),
        "{e:?}"
    );

    let (e, _) = hostile(
        test_programs::HOSTILE_MODULE,
        "deep_recursion",
        limits.clone(),
    )
    .await;
    assert!(matches!(e, Error::StackOverflow), "{e:?}");

    let cpu = Limits {
        cpu_time_ms: Some(100),
        timeout_ms: 20_000,
        ..limits.clone()
    };
    let v = version_with(test_programs::HOSTILE_MODULE, cpu, Capabilities::none());
    let started = Instant::now();
    let e = v
        .invoke_json("cpu_hog", &json!([1_000_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::CpuLimit(d) if d == Duration::from_millis(100)),
        "{e:?}"
    );
    assert!(started.elapsed() < GENEROUS);

    let rt = runtime();
    let start_loop = rt.load(&test_programs::wat("start-loop")).unwrap();
    let v = Version::new(
        &rt,
        &start_loop,
        "start",
        limits.clone(),
        Capabilities::none(),
    )
    .unwrap();
    let e = v
        .invoke_json("never_reached", &json!([]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");

    let e = rt.load(&test_programs::wat("huge-table")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Load(wasmswap_core::LoadError::TableTooLarge { .. })
        ),
        "{e:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = served.await.unwrap();
    assert_eq!(failed, 0);
    assert!(ok > 0, "the bystander was starved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_in_start_function_times_out_at_instantiation() {
    let rt = runtime();
    let a = rt.load(&test_programs::wat("start-loop")).unwrap();
    let v = Version::new(&rt, &a, "start", short_limits(), Capabilities::none()).unwrap();
    let started = Instant::now();
    let e = v
        .invoke_json("never_reached", &json!([]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(v.counters().errors_of(wasmswap_core::ErrorKind::Timeout), 1);
}

#[tokio::test]
async fn memory_grow_past_the_limit_is_refused() {
    let rt = runtime();
    let a = rt.load(&test_programs::wat("grow-bomb")).unwrap();
    let limits = Limits {
        max_memory_mb: 2,
        ..short_limits()
    };
    let v = Version::new(&rt, &a, "grow", limits, Capabilities::none()).unwrap();
    let e = v.invoke_json("run", &json!([])).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::MemoryLimit {
                limit_bytes: 2097152
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        v.counters()
            .errors_of(wasmswap_core::ErrorKind::MemoryLimit),
        1
    );
}

#[tokio::test]
async fn table_growth_past_the_limit_is_refused() {
    let wasm = wat::parse_str(
        r#"(module (table 1 funcref)
            (func (export "run") (result i32)
              (loop $l (br_if $l (i32.ne (table.grow (ref.null func) (i32.const 100)) (i32.const -1))))
              unreachable))"#,
    )
    .unwrap();
    let rt = runtime();
    let a = rt.load(&wasm).unwrap();
    let limits = Limits {
        max_table_elements: 1000,
        ..short_limits()
    };
    let v = Version::new(&rt, &a, "tables", limits, Capabilities::none()).unwrap();
    let e = v.invoke_json("run", &json!([])).await.unwrap_err();
    assert!(matches!(e, Error::TableLimit { limit: 1000 }), "{e:?}");
}

#[tokio::test]
async fn instance_count_limit_applies_to_components() {
    // A Rust component instantiates several core instances; one is not enough.
    let limits = Limits {
        max_instances: 1,
        ..short_limits()
    };
    let v = version_with(test_programs::TYPES_COMPONENT, limits, Capabilities::none());
    let e = v.invoke_json("negate", &json!([true])).await.unwrap_err();
    assert!(matches!(e, Error::ResourceLimit(_)), "{e:?}");
}

#[tokio::test]
async fn fuel_budget_ends_a_loop() {
    let rt = RuntimeConfig::new().fuel(true).build().unwrap();
    let a = rt
        .load(&test_programs::bytes(test_programs::HOSTILE_MODULE))
        .unwrap();
    let limits = Limits {
        fuel: Some(5_000_000),
        timeout_ms: 20_000,
        ..short_limits()
    };
    let v = Version::new(&rt, &a, "fuel", limits.clone(), Capabilities::none()).unwrap();
    let e = v
        .invoke_json("infinite_loop", &json!([]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::FuelExhausted), "{e:?}");
    // Finite work within budget succeeds and reports its fuel.
    let ok = v.invoke_json("cpu_hog", &json!([0])).await.unwrap();
    assert!(ok.is_i64());
    assert!(v.counters().fuel_consumed > 0);
    // A runtime without fuel refuses a fuel limit up front.
    let plain = runtime();
    let a = plain.load(&test_programs::wat("add")).unwrap();
    assert!(matches!(
        Version::new(&plain, &a, "x", limits, Capabilities::none()).unwrap_err(),
        Error::InvalidConfig(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_share_slows_a_hog_down() {
    // The same work at 100 % and at 20 % of a core: throttled, it must take
    // about 5x longer — not less (2.5x leaves room for a busy machine), and
    // not much more: when late timer wake-ups counted as CPU time, a 20 %
    // guest got a fraction of its share and took 20x longer.
    let run = |percent: u8| async move {
        let limits = Limits {
            max_cpu_percent: percent,
            timeout_ms: 60_000,
            ..Limits::default()
        };
        let v = version_with(test_programs::HOSTILE_MODULE, limits, Capabilities::none());
        let started = Instant::now();
        v.invoke_json("cpu_hog", &json!([60])).await.unwrap();
        started.elapsed()
    };
    let full = run(100).await;
    let throttled = run(20).await;
    let ratio = throttled.as_secs_f64() / full.as_secs_f64();
    assert!(
        (2.5..8.0).contains(&ratio),
        "100%: {full:?}, 20%: {throttled:?} ({ratio:.1}x)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_a_host_call_still_times_out() {
    // Sleeping is a WASI clock subscription: the guest waits inside the host,
    // where epoch interruption never fires.
    let v = version_with(
        test_programs::SANDBOX_PROBE_COMPONENT,
        short_limits(),
        Capabilities::none(),
    );
    let started = Instant::now();
    let e = v
        .invoke_json("sleep-ms", &json!([60_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v.counters().errors_of(wasmswap_core::ErrorKind::Timeout), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_inside_host_calls_is_not_cpu_time() {
    // A 300 ms WASI sleep under a 50 ms CPU budget and a 10 % share: the
    // guest runs for microseconds, so neither may stop or pause it. Counted
    // as CPU time, the sleep would exceed the budget (`CpuLimit`) or call
    // for a 3 s pause (past the 2 s timeout).
    let limits = Limits {
        cpu_time_ms: Some(50),
        max_cpu_percent: 10,
        timeout_ms: 2_000,
        ..short_limits()
    };
    let v = version_with(
        test_programs::SANDBOX_PROBE_COMPONENT,
        limits,
        Capabilities::none(),
    );
    for _ in 0..3 {
        let started = Instant::now();
        v.invoke_json("sleep-ms", &json!([300])).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1_500),
            "{took:?}"
        );
    }
}
