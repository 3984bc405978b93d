//! The low-priority lane: calls that compute for long, and the calls of a
//! version that just hit its limits, run on idle-priority threads of their
//! own instead of the caller's.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use wasmswap_core::{Capabilities, Error, Limits, Runtime, RuntimeConfig, Version};

use crate::this_thread_cpu;

/// A runtime with the lane, shared by these tests.
fn lane_runtime() -> Runtime {
    static RT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| lane().build().expect("runtime with the lane"))
        .clone()
}

fn lane() -> RuntimeConfig {
    let mut config = RuntimeConfig::new();
    config.low_priority_lane(true);
    config
}

fn version_with(path: &str, limits: Limits, caps: Capabilities) -> Version {
    let rt = lane_runtime();
    let artifact = rt.load(&test_programs::bytes(path)).expect("guest loads");
    Version::new(&rt, &artifact, "test", limits, caps).expect("version")
}

fn version_on(rt: &Runtime, path: &str, limits: Limits) -> Version {
    let artifact = rt.load(&test_programs::bytes(path)).expect("guest loads");
    Version::new(rt, &artifact, "test", limits, Capabilities::none()).expect("version")
}

/// The scheduling policy of each of this process's low-priority lane
/// threads (`/proc/self/task/*/stat` field 41; 5 is `SCHED_IDLE`).
fn lane_thread_policies() -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        // Thread names are cut to 15 bytes.
        if comm.trim() != "wasmswap-low-pr" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        policies.push(fields[38].parse().unwrap());
    }
    policies
}

/// A fixed amount of computing (`cpu_hog(120)`: about 200 ms of CPU here),
/// with no CPU limit but the timeout.
async fn hog(v: &Version) -> wasmswap_core::Result<serde_json::Value> {
    v.invoke_json("cpu_hog", &json!([120])).await
}

fn hog_limits() -> Limits {
    Limits {
        timeout_ms: 20_000,
        max_cpu_percent: 100,
        ..Limits::default()
    }
}

// A current-thread runtime: the test's own thread is the caller's, the
// only thread that would run the guest without the lane.
#[tokio::test]
async fn a_call_that_computes_moves_off_the_callers_thread() {
    let v = version_with(
        test_programs::HOSTILE_MODULE,
        hog_limits(),
        Capabilities::none(),
    );
    assert!(!v.penalized());
    let before = this_thread_cpu();
    let out = hog(&v).await;
    let here = this_thread_cpu() - before;
    // Answered — or, on a machine so busy that the lane's idle-priority
    // threads got too little CPU for it, timed out.
    assert!(
        out.is_ok() || matches!(out, Err(Error::Timeout(_))),
        "{out:?}"
    );
    // Of its CPU time only the first 10 ms (the burst, up to the next tick)
    // was on this thread.
    assert!(
        here < Duration::from_millis(100),
        "{here:?} on the caller's thread"
    );
    assert_eq!(v.counters().low_priority_calls, 1);
    // It computed past its burst: the version's next calls start on the
    // lane.
    assert!(v.penalized());
    let policies = lane_thread_policies();
    assert!(!policies.is_empty());
    assert!(
        policies.iter().all(|p| *p == 5),
        "policies {policies:?}: not SCHED_IDLE"
    );
}

#[tokio::test]
async fn without_the_lane_the_callers_thread_does_the_computing() {
    // The same call with the lane off: the check above measures what it
    // claims to.
    let rt = RuntimeConfig::new()
        .low_priority_lane(false)
        .build()
        .unwrap();
    let v = version_on(&rt, test_programs::HOSTILE_MODULE, hog_limits());
    let before = this_thread_cpu();
    hog(&v).await.unwrap();
    let here = this_thread_cpu() - before;
    assert!(
        here >= Duration::from_millis(150),
        "{here:?} on the caller's thread"
    );
    assert_eq!(v.counters().low_priority_calls, 0);
    assert!(!v.penalized());
}

#[tokio::test]
async fn a_version_that_hit_a_limit_starts_its_calls_on_the_lane() {
    let limits = Limits {
        max_memory_mb: 32,
        ..Limits::default()
    };
    let v = version_with(
        test_programs::HOSTILE_MODULE,
        limits.clone(),
        Capabilities::none(),
    );
    // A short call of a version with a clean record runs here.
    assert_eq!(
        v.invoke_json("health_check", &json!([])).await.unwrap(),
        json!(1)
    );
    assert_eq!(v.counters().low_priority_calls, 0);
    let err = v.invoke_json("memory_bomb", &json!([])).await.unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err:?}");
    // The bomb hit a limit (whether or not it also computed past its
    // burst, as it may in an unoptimized build of the runtime).
    assert!(v.penalized());
    // Now even a short call goes to the lane, and is answered.
    let before = v.counters().low_priority_calls;
    assert_eq!(
        v.invoke_json("health_check", &json!([])).await.unwrap(),
        json!(1)
    );
    assert_eq!(v.counters().low_priority_calls, before + 1);

    // Another version of the same binary keeps its own record.
    let other = version_with(
        test_programs::HOSTILE_MODULE,
        limits.clone(),
        Capabilities::none(),
    );
    assert!(!other.penalized());

    // With no window, hitting a limit penalizes nothing.
    let rt = lane().low_priority_window(Duration::ZERO).build().unwrap();
    let v = version_on(&rt, test_programs::HOSTILE_MODULE, limits);
    v.invoke_json("memory_bomb", &json!([])).await.unwrap_err();
    assert!(!v.penalized());
    let before = v.counters().low_priority_calls;
    v.invoke_json("health_check", &json!([])).await.unwrap();
    assert_eq!(v.counters().low_priority_calls, before);
}

#[tokio::test]
async fn time_in_host_calls_does_not_make_a_call_heavy() {
    // No CPU limits, so nothing but the lane needs CPU time measured: a
    // 300 ms WASI sleep, then a loop whose epoch check sees the clock,
    // must not count as computing.
    let limits = Limits {
        max_cpu_percent: 100,
        cpu_time_ms: None,
        ..Limits::default()
    };
    let rt = lane_runtime();
    let artifact = rt.load(&test_programs::wat("sleep-then-count")).unwrap();
    let v = Version::new(&rt, &artifact, "test", limits, Capabilities::none()).unwrap();
    let started = Instant::now();
    let n = v
        .invoke_json("sleep_then_count", &json!([300]))
        .await
        .unwrap();
    assert_eq!(n, json!(1000));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(v.counters().low_priority_calls, 0);
    assert!(!v.penalized());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_the_lane_stops_when_its_caller_stops_waiting() {
    // One pool slot: while the abandoned call runs, nothing else can.
    // A long window: on a loaded machine the lane may be slow to drop a
    // call, and the rounds must still start penalized.
    let rt = lane()
        .max_instances(1)
        .low_priority_window(Duration::from_secs(120))
        .build()
        .unwrap();
    let limits = Limits {
        timeout_ms: 20_000,
        max_cpu_percent: 100,
        ..Limits::default()
    };
    let v = version_on(&rt, test_programs::HOSTILE_MODULE, limits);
    // Loops given up on after they moved to the lane (a few rounds: how
    // fast the lane drops one varies).
    for round in 0..5 {
        let gave_up = tokio::time::timeout(
            Duration::from_millis(300),
            v.invoke_json("infinite_loop", &json!([])),
        )
        .await;
        assert!(gave_up.is_err(), "the loop ended: {gave_up:?}");
        // Never recorded, but it computed past its burst: penalized all the
        // same (so the next rounds start on the lane).
        assert!(v.penalized());
        // The version stays in flight until the lane has dropped the
        // abandoned call's instance, so a drain that ends means its slot is
        // free — long before the loop's 20 s timeout.
        v.drained(Duration::from_secs(10))
            .await
            .expect("the abandoned call is dropped");
        let answer = v.invoke_json("health_check", &json!([])).await;
        assert_eq!(
            answer.unwrap(),
            json!(1),
            "round {round}: its slot is free once drained"
        );
    }
    // Dropping the runtime (and its lane) inside a task does not panic.
    drop(v);
    drop(rt);
}

#[tokio::test]
async fn a_heavy_http_handler_moves_to_the_lane() {
    let v = version_with(
        test_programs::HTTP_HELLO_V1_COMPONENT,
        Limits::default(),
        Capabilities::none(),
    );
    let get = |path: &str| {
        http::Request::get(format!("http://localhost{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // About 100 ms of computing (a xorshift round is a few cycles).
    let resp = v.handle(get("/spin?100000000")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let n: u64 = String::from_utf8(body.to_vec())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(n, 0);
    // Counted once the guest task is done.
    for _ in 0..200 {
        if v.counters().calls == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = v.counters();
    assert_eq!((c.calls, c.errors, c.low_priority_calls), (1, 0, 1));
    assert!(v.penalized());
    // A quick request of the penalized version is served from the lane.
    let resp = v.handle(get("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn a_wasi_http_guest_whose_client_left_stays_in_flight_until_done() {
    let v = version_with(
        test_programs::HTTP_HELLO_V1_COMPONENT,
        Limits::default(),
        Capabilities::none(),
    );
    // About 300 ms of computing before the guest sets its response head;
    // the client hangs up after 20 ms.
    let req = http::Request::get("http://localhost/spin?300000000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let left = tokio::time::timeout(Duration::from_millis(20), v.handle(req)).await;
    assert!(left.is_err(), "answered within 20 ms");
    // The guest still runs, with its instance: a drain must wait for it.
    assert_eq!(v.in_flight(), 1);
    v.drained(Duration::from_secs(30))
        .await
        .expect("the guest ends");
}
