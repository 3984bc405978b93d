#![allow(clippy::print_stderr)]
//! Nodes that misbehave on the wire: one accepts connections and never
//! answers, one answers every request with bytes that are not HTTP. Calls
//! to them end at their timeouts with a reason; rollouts to them stop
//! without completing; and a rollout elsewhere goes on at its own pace
//! meanwhile (deployments step independently).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use wasmswap_control::api::ApiSettings;
use wasmswap_control::auth::Role;

use super::common::{
    NodeProcess, OnSocket, TestApp, deployment as status, settled, start_deployment, start_node,
    wait_nodes, wait_settled,
};

/// Accepts connections and holds them open without a byte in reply; its
/// URL, and how many connections it has accepted so far.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{addr}"), accepted)
}

/// Answers anything with bytes that are not an HTTP response.
async fn garbage_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"\x00\xffSSH-2.0-not-http\r\n\r\n{]").await;
            });
        }
    });
    format!("http://{addr}")
}

async fn fake_node(app: &TestApp, id: &str, region: &str, url: &str) {
    let node = json!({
        "nodeId": id, "region": region, "zone": format!("{region}-a"),
        "capacity": {"maxModules": 10, "maxInstances": 10},
        "agentUrl": url, "dataUrl": url,
    });
    app.post("/api/v1/wasm/nodes", Role::Admin, &node)
        .await
        .expect(StatusCode::CREATED);
    app.post(
        &format!("/api/v1/wasm/nodes/{id}/heartbeat"),
        Role::Admin,
        &json!({"nodeId": id, "loadedModules": 0}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

async fn deploy(app: &TestApp, module: &str, region: &str) -> String {
    let spec = json!({"moduleId": module, "strategy": "rolling", "targetRegions": [region],
        "healthCheck": {"failureThreshold": 1, "intervalMs": 20}});
    start_deployment(app, &spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_garbage_nodes_time_out_and_hold_up_nothing_else() {
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            engine_tick: Duration::from_millis(50),
            node_call_timeout: Duration::from_secs(1),
            node_load_timeout: Duration::from_secs(8),
            ..Default::default()
        },
        None,
    )
    .await;
    let (app, cp) = (&cp_.app, cp_.url.clone());
    let real = start_node("real-1", "eu", &cp).await;
    wait_nodes(app, 1).await;
    fake_node(app, "slow-1", "slow", &silent_server().await.0).await;
    fake_node(app, "junk-1", "junk", &garbage_server().await).await;
    let calc = test_programs::bytes(test_programs::NUMERIC_MODULE);
    app.register("calc", "1.0.0", &calc)
        .await
        .expect(StatusCode::CREATED);

    // `execute`: each ends with its reason, within the load timeout (8 s:
    // the first call on a node loads the module there) and the call
    // timeout (1 s).
    for (region, reason) in [("slow", "timeout"), ("junk", "transport_error")] {
        let started = Instant::now();
        let r = app
            .post(
                "/api/v1/wasm/execute",
                Role::Developer,
                &json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [1, 2], "targetRegion": region}),
            )
            .await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(12), "{region}: {took:?}");
        assert!(
            r.status.is_server_error(),
            "{region}: {} {}",
            r.status,
            r.json
        );
        assert!(r.json.to_string().contains(reason), "{region}: {}", r.json);
    }

    // Rollouts: one to the silent node, one to the garbage node, one to
    // the real node. The real one completes while the silent one is still
    // waiting on its load (8 s).
    for name in ["calc2", "calc3"] {
        app.register(name, "1.0.0", &calc)
            .await
            .expect(StatusCode::CREATED);
    }
    let slow = deploy(app, "calc-v1.0.0", "slow").await;
    let good = deploy(app, "calc2-v1.0.0", "eu").await;
    let junk = deploy(app, "calc3-v1.0.0", "junk").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slow_when_good_done = None;
    let (mut good_d, mut slow_d, mut junk_d) = (Value::Null, Value::Null, Value::Null);
    while !(settled(&good_d) && settled(&slow_d) && settled(&junk_d)) {
        assert!(Instant::now() < deadline, "a deployment hangs");
        (good_d, slow_d, junk_d) = (
            status(app, &good).await,
            status(app, &slow).await,
            status(app, &junk).await,
        );
        if settled(&good_d) && slow_when_good_done.is_none() {
            slow_when_good_done = Some(slow_d.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(good_d["status"], "completed", "{good_d:#}");
    let slow_then = slow_when_good_done.unwrap();
    assert!(
        !settled(&slow_then),
        "the healthy rollout waited for the slow one: {slow_then:#}"
    );
    for d in [&slow_d, &junk_d] {
        assert_ne!(d["status"], "completed", "{d:#}");
    }
    assert!(slow_d.to_string().contains("(timeout)"), "{slow_d:#}");
    // The real node serves what it was given.
    let r = reqwest::Client::new()
        .post(format!("http://{}/_invoke/calc2/add", real.data_addr()))
        .json(&json!([2, 3]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!(5));

    real.shutdown().await;
    cp_.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_rollout_stops_it_and_the_rest_keep_serving() {
    // The real clock: a node that stops heartbeating turns unhealthy.
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            engine_tick: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_secs(2),
            node_call_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        Some(wasmswap_control::clock::Clock::system()),
    )
    .await;
    let (app, cp) = (&cp_.app, cp_.url.clone());
    let a = start_node("eu-a", "eu", &cp).await;
    // The node to lose runs in a process of its own, to be SIGKILLed.
    let mut b = NodeProcess::start("eu-b", "eu", &cp).await;
    wait_nodes(app, 2).await;
    let v1 = test_programs::bytes(test_programs::NUMERIC_MODULE);
    // The same code with a custom section: another checksum.
    let mut v2 = v1.clone();
    v2.extend_from_slice(&[0, 3, 2, b'v', b'2']);
    app.register("calc", "1.0.0", &v1)
        .await
        .expect(StatusCode::CREATED);
    app.register("calc", "2.0.0", &v2)
        .await
        .expect(StatusCode::CREATED);
    let first = deploy(app, "calc-v1.0.0", "eu").await;
    assert_eq!(wait_settled(app, &first).await["status"], "completed");
    let deadline = Instant::now() + Duration::from_secs(60);

    // A canary whose first stage holds long enough to lose a node in it.
    let spec = json!({"moduleId": "calc-v2.0.0", "strategy": "canary",
        "strategyConfig": {"stages": [50, 100], "evaluationPeriod": "PT4S"},
        "targetRegions": ["eu"],
        "healthCheck": {"failureThreshold": 1, "intervalMs": 20}});
    let id = start_deployment(app, &spec).await;
    while status(app, &id).await["state"]["applied"] != true {
        assert!(Instant::now() < deadline, "{:#}", status(app, &id).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill();

    // The survivor answers every call while the deployment reacts.
    let http = reqwest::Client::new();
    let survivor = format!("http://{}/_invoke/calc/add", a.data_addr());
    let (mut served, mut d) = (0, Value::Null);
    while !settled(&d) {
        assert!(Instant::now() < deadline, "the rollout hangs: {d:#}");
        let r = http
            .post(&survivor)
            .json(&json!([2, 2]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!(4));
        served += 1;
        d = status(app, &id).await;
    }
    assert_ne!(
        d["status"], "completed",
        "a node was lost mid-rollout: {d:#}"
    );
    // And afterwards the survivor still serves (the stable version, or the
    // candidate where the rollout paused with it).
    let r = http
        .post(&survivor)
        .json(&json!([1, 2]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{d:#}");
    if d["status"] == "rolled_back" {
        assert_eq!(r.headers()["x-wasmswap-version"], "1.0.0", "{d:#}");
    }
    eprintln!(
        "node SIGKILLed mid-rollout: {}; survivor answered {served} calls meanwhile",
        d["status"]
    );

    a.shutdown().await;
    cp_.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_or_an_abort_does_not_wait_for_a_slow_node() {
    // A node load waits up to a minute here: a step waiting on the silent
    // node would hold the deployment's lock that long.
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            engine_tick: Duration::from_millis(50),
            node_call_timeout: Duration::from_secs(1),
            node_load_timeout: Duration::from_secs(60),
            ..Default::default()
        },
        None,
    )
    .await;
    let app = &cp_.app;
    let (silent, accepted) = silent_server().await;
    fake_node(app, "slow-1", "slow", &silent).await;
    let calc = test_programs::bytes(test_programs::NUMERIC_MODULE);
    app.register("calc", "1.0.0", &calc)
        .await
        .expect(StatusCode::CREATED);
    let id = deploy(app, "calc-v1.0.0", "slow").await;

    // Each control once a step waits on the node: answered at once, not
    // when the node's load times out.
    let step_waits_on_the_node = |seen: usize| {
        let accepted = accepted.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while accepted.load(Ordering::SeqCst) <= seen {
                assert!(Instant::now() < deadline, "no step called the node");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Past the connect: the request is out, the answer awaited.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let control = |op: &'static str| {
        let path = format!("/api/v1/wasm/deployments/{id}/{op}");
        async move {
            let started = Instant::now();
            let r = app.post(&path, Role::Admin, &json!({})).await;
            let took = started.elapsed();
            assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.json);
            assert!(
                took < Duration::from_secs(5),
                "{op} waited {took:?} for the step"
            );
            eprintln!("{op} answered in {took:?} while a step waited on the silent node");
            r.json
        }
    };
    step_waits_on_the_node(0).await;
    let d = control("pause").await;
    assert_eq!(d["status"], "paused", "{d:#}");
    // Paused stays paused: no step takes it up again.
    let seen = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(app, &id).await["status"], "paused");
    assert_eq!(accepted.load(Ordering::SeqCst), seen, "a paused step ran");

    control("resume").await;
    step_waits_on_the_node(seen).await;
    // Nothing was placed yet: the abort ends it then and there.
    let d = control("abort").await;
    assert!(settled(&d) || d["state"]["rollingBack"] == true, "{d:#}");
    assert_ne!(d["status"], "completed", "{d:#}");
}
