//! `/wasm/execute` against real `wasmswap-host` nodes on 127.0.0.1 that
//! register and heartbeat over HTTP with a control plane serving on a
//! socket: placement, failover, guest faults, capacity.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use wasmswap_control::api::ApiSettings;
use wasmswap_control::auth::Role;

use super::common::{OnSocket, start_node, wait_nodes};

#[tokio::test]
async fn runs_on_a_healthy_node_and_fails_over() {
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            ..Default::default()
        },
        None,
    )
    .await;
    let (app, cp) = (&cp_.app, cp_.url.clone());

    let a = start_node("eu-a", "eu", &cp).await;
    let b = start_node("eu-b", "eu", &cp).await;
    let us = start_node("us-a", "us", &cp).await;
    wait_nodes(app, 3).await;
    app.register(
        "calc",
        "1.0.0",
        &test_programs::bytes(test_programs::NUMERIC_MODULE),
    )
    .await
    .expect(StatusCode::CREATED);

    let exec = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.post("/api/v1/wasm/execute", Role::Developer, &body)
                .await
        }
    };
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [2, 3], "targetRegion": "eu"})).await.expect(StatusCode::OK);
    assert_eq!(r.json["success"], true, "{}", r.json);
    assert_eq!(r.json["returnValue"], 5);
    let first = r.json["executedOn"].as_str().unwrap().to_string();
    assert!(first.starts_with("eu-"), "{first}");
    assert!(r.json["durationMs"].as_f64().unwrap() >= 0.0);
    // The node that holds it is preferred.
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "fib", "parameters": [10], "targetRegion": "eu"})).await.expect(StatusCode::OK);
    assert_eq!(r.json["returnValue"], 55);
    assert_eq!(r.json["executedOn"], first.as_str());
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [1, 1], "targetRegion": "us"})).await.expect(StatusCode::OK);
    assert_eq!(r.json["executedOn"], "us-a");

    // Loaded on nodes: not deletable, and not pruned.
    let r = app
        .delete("/api/v1/wasm/modules/calc-v1.0.0", Role::Admin)
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loaded on"),
        "{}",
        r.json
    );
    let r = app
        .get("/api/v1/audit?action=node.load", Role::Admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 2, "one load per node: {}", r.json);
    // A guest fault is an answer, not a failover.
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "div_trap", "parameters": [1, 0], "targetRegion": "eu"})).await.expect(StatusCode::OK);
    assert_eq!(r.json["success"], false, "{}", r.json);
    assert_eq!(r.json["executedOn"], first.as_str());
    assert!(
        r.json["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        r.json
    );
    assert!(r.json["failedOver"].as_array().unwrap().is_empty());
    // Bad arguments and unknown functions are the caller's.
    exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": ["two", 3], "targetRegion": "eu"})).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    exec(json!({"moduleId": "calc-v1.0.0", "functionName": "nope", "targetRegion": "eu"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    exec(json!({"moduleId": "calc-v9.0.0", "functionName": "add", "targetRegion": "eu"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [1, 2], "timeout": 0})).await.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "targetRegion": "mars"}))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");

    // The node that served goes down; it still looks healthy (its last
    // heartbeat is recent), so execute tries it, fails, and moves on.
    let (down, up) = if first == "eu-a" { (a, b) } else { (b, a) };
    down.shutdown().await;
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [20, 22], "targetRegion": "eu"})).await.expect(StatusCode::OK);
    assert_eq!(r.json["success"], true, "{}", r.json);
    assert_eq!(r.json["returnValue"], 42);
    assert_ne!(r.json["executedOn"], first.as_str());
    let failed = r.json["failedOver"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{}", r.json);
    assert_eq!(failed[0]["node"], first.as_str(), "{}", r.json);
    assert_eq!(failed[0]["reason"], "connect_failed", "{}", r.json);

    // Past the heartbeat timeout the dead node is skipped outright; the
    // live ones keep heartbeating.
    app.clock.advance_ms(31_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = app
        .get(
            "/api/v1/wasm/nodes?region=eu&status=unhealthy",
            Role::Viewer,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json.as_array().unwrap().len(), 1, "{}", r.json);
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [1, 2], "targetRegion": "eu"})).await.expect(StatusCode::OK);
    assert!(
        r.json["failedOver"].as_array().unwrap().is_empty(),
        "{}",
        r.json
    );

    // Capacity: a full node is not given another module.
    let full = json!({
        "nodeId": "tiny-1", "region": "tiny", "zone": "z", "capacity": {"maxModules": 1, "maxInstances": 1},
        "agentUrl": "http://127.0.0.1:9", "dataUrl": "http://127.0.0.1:9",
    });
    app.post("/api/v1/wasm/nodes", Role::Admin, &full)
        .await
        .expect(StatusCode::CREATED);
    app.post(
        "/api/v1/wasm/nodes/tiny-1/heartbeat",
        Role::Admin,
        &json!({"nodeId": "tiny-1", "loadedModules": 1}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let r = exec(json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [1, 2], "targetRegion": "tiny"})).await;
    let r = r.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capacity"),
        "{}",
        r.json
    );

    up.shutdown().await;
    us.shutdown().await;
    cp_.stop().await;
}
