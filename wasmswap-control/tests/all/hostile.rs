#![allow(clippy::print_stderr)]
//! Hostile guests through the whole stack: registered over REST, deployed
//! by the rollout engine to a real node, then called on the node's data
//! plane. Each ends with its own error, and a well-behaved service on the
//! same node answers throughout. (The latency figure under attack is a
//! benchmark: `benches/benches/hostile.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use wasmswap_control::api::ApiSettings;
use wasmswap_control::auth::Role;

use super::common::{OnSocket, TestApp, start_deployment, start_node, wait_nodes, wait_settled};

/// Tight limits for the hostile modules: 1 s per call, 32 MiB.
fn tight() -> Value {
    json!({"maxMemoryMB": 32, "maxExecutionTimeSeconds": 1, "maxCpuPercent": 50})
}

async fn register(app: &TestApp, name: &str, bytes: &[u8]) -> super::common::Resp {
    let body = json!({
        "name": name, "version": "1.0.0", "limits": tight(),
        "wasmBinary": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
    });
    app.post("/api/v1/wasm/modules", Role::Developer, &body)
        .await
}

/// Deploys `{name}-v1.0.0` to every node and waits for the outcome.
async fn deploy(app: &TestApp, name: &str) -> Value {
    let spec =
        json!({"moduleId": format!("{name}-v1.0.0"), "strategy": "rolling", "strategyConfig": {}});
    let id = start_deployment(app, &spec).await;
    wait_settled(app, &id).await
}

/// Calls answered, calls failed, and the first failure.
type Served = (u64, u64, Option<String>);

/// Calls the well-behaved service in a loop until stopped.
fn bystander(data: String) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Served>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (mut ok, mut failed, mut first) = (0, 0, None);
        while !s.load(Ordering::Relaxed) {
            let r = http
                .post(format!("{data}/_invoke/calc/add"))
                .json(&json!([40, 2]))
                .send()
                .await;
            let outcome = match r {
                Ok(r) => match r.json::<Value>().await {
                    Ok(v) if v == json!(42) => Ok(()),
                    Ok(v) => Err(format!("answered {v}")),
                    Err(e) => Err(format!("reading the answer: {e}")),
                },
                Err(e) => Err(format!("sending: {e}")),
            };
            match outcome {
                Ok(()) => ok += 1,
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
            // At a steady rate, not flat out: a bystander that keeps both
            // cores busy leaves the low-priority lane, where the hostile
            // calls run once they have computed for 10 ms, no CPU to reach
            // their limits.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed, first)
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_through_the_whole_stack() {
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            engine_tick: Duration::from_millis(50),
            ..Default::default()
        },
        None,
    )
    .await;
    let (app, cp) = (&cp_.app, cp_.url.clone());
    let node = start_node("edge-1", "eu", &cp).await;
    wait_nodes(app, 1).await;
    let data = format!("http://{}", node.data_addr());

    register(
        app,
        "calc",
        &test_programs::bytes(test_programs::NUMERIC_MODULE),
    )
    .await
    .expect(StatusCode::CREATED);
    let d = deploy(app, "calc").await;
    assert_eq!(d["status"], "completed", "{d:#}");
    let (stop, served) = bystander(data.clone());

    // Each export of the hostile module: its own status and error code.
    register(
        app,
        "bad",
        &test_programs::bytes(test_programs::HOSTILE_MODULE),
    )
    .await
    .expect(StatusCode::CREATED);
    let d = deploy(app, "bad").await;
    assert_eq!(d["status"], "completed", "{d:#}");
    let http = reqwest::Client::new();
    let call = |service: &'static str, func: &'static str, args: Value| {
        let (http, data) = (http.clone(), data.clone());
        async move {
            let started = Instant::now();
            let r = http
                .post(format!("{data}/_invoke/{service}/{func}"))
                .json(&args)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body, started.elapsed())
        }
    };
    for (func, args, status, code) in [
        ("infinite_loop", json!([]), 504, "timeout"),
        ("memory_bomb", json!([]), 500, "memory_limit"),
        ("deep_recursion", json!([]), 500, "stack_overflow"),
        ("cpu_hog", json!([1_000_000]), 504, "timeout"),
    ] {
        let (s, body, took) = call("bad", func, args).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{func}: {body}"
        );
        assert!(took < Duration::from_secs(5), "{func} took {took:?}");
    }

    // A component that floods stdout, and one that opens 100,000 host
    // resources (the node's default cap is 10,000).
    register(
        app,
        "probe",
        &test_programs::bytes(test_programs::SANDBOX_PROBE_COMPONENT),
    )
    .await
    .expect(StatusCode::CREATED);
    let d = deploy(app, "probe").await;
    assert_eq!(d["status"], "completed", "{d:#}");
    let (s, body, _) = call("probe", "flood-stdout", json!([])).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    let (s, body, _) = call("probe", "hold-resources", json!([100])).await;
    assert_eq!((s, &body), (200, &json!(100)), "a few resources are fine");
    let (s, body, _) = call("probe", "hold-resources", json!([100_000])).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (500, Some("resource_limit")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10000 host resources"),
        "{body}"
    );

    // An infinite loop in the start function: the rollout's health check
    // instantiates it, times out, and the deployment does not complete.
    register(app, "startloop", &test_programs::wat("start-loop"))
        .await
        .expect(StatusCode::CREATED);
    let d = deploy(app, "startloop").await;
    assert_ne!(d["status"], "completed", "{d:#}");
    assert!(d.to_string().contains("timeout"), "{d:#}");

    // A table of a billion elements is refused at registration.
    let r = register(app, "table", &test_programs::wat("huge-table"))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(r.json.to_string().contains("table"), "{}", r.json);

    // A module that is slow to compile: the node compiles it off the
    // request path, and the deployment completes.
    let slow = test_programs::slow_to_compile(200);
    register(app, "slow", &slow)
        .await
        .expect(StatusCode::CREATED);
    let started = Instant::now();
    let d = deploy(app, "slow").await;
    assert_eq!(d["status"], "completed", "{d:#}");
    let compile = started.elapsed();
    let (s, body, _) = call("slow", "run", json!([])).await;
    assert_eq!((s, &body), (200, &json!(1)));

    stop.store(true, Ordering::Relaxed);
    let (ok, failed, first) = served.await.unwrap();
    assert_eq!(
        failed, 0,
        "the bystander failed {failed} times ({ok} ok), first: {first:?}"
    );
    assert!(ok > 100, "the bystander was starved: {ok} calls");
    eprintln!(
        "bystander: {ok} calls, 0 failed; slow module ({} KiB) deployed in {compile:?}",
        slow.len() / 1024
    );
    node.shutdown().await;
    cp_.stop().await;
}
