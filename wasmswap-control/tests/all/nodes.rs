//! Node endpoints through the router.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use wasmswap_control::auth::Role;

use super::common::{NODE_TOKEN, TestApp};

pub fn registration(id: &str, region: &str) -> Value {
    json!({
        "nodeId": id, "region": region, "zone": format!("{region}-a"),
        "capacity": {"maxModules": 10, "maxInstances": 100},
        "runtimeVersion": "wasmswap-host 0.1.0", "wasiSupport": ["preview1", "preview2", "http"],
        "agentUrl": "http://127.0.0.1:9", "dataUrl": "http://127.0.0.1:10",
    })
}

async fn as_node(app: &TestApp, method: Method, path: &str, body: &Value) -> super::common::Resp {
    app.call(
        method,
        path,
        Some(NODE_TOKEN),
        Some("application/json"),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

#[tokio::test]
async fn register_heartbeat_health_and_delete() {
    let app = TestApp::new().await;
    let r = as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes",
        &registration("edge-1", "eu-west"),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(r.json["created"], true);
    assert_eq!(r.json["node"]["status"], "healthy");
    // A restarted node registers again: 200, not a duplicate.
    let r = as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes",
        &registration("edge-1", "eu-west"),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(r.json["created"], false);
    // An admin may register one by hand.
    app.post(
        "/api/v1/wasm/nodes",
        Role::Admin,
        &registration("edge-2", "us-east"),
    )
    .await
    .expect(StatusCode::CREATED);

    let hb = json!({"nodeId": "edge-1", "loadedModules": 1, "services": [
        {"name": "calc", "route": null, "generation": 1, "versions": [{"version": "1.0.0"}]}]});
    as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes/edge-1/heartbeat",
        &hb,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let r = app
        .get("/api/v1/wasm/nodes/edge-1", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["modules"], json!(["calc-v1.0.0"]));
    assert_eq!(r.json["loadedModules"], 1);
    let r = app
        .get("/api/v1/wasm/nodes/edge-1/health", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["status"], "healthy");
    assert_eq!(r.json["services"][0]["name"], "calc");

    // Silence past the timeout (30 s): unhealthy, in the list too.
    app.clock.advance_ms(31_000);
    as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes/edge-2/heartbeat",
        &json!({"nodeId": "edge-2", "loadedModules": 0}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let r = app
        .get("/api/v1/wasm/nodes/edge-1/health", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["status"], "unhealthy");
    let r = app
        .get("/api/v1/wasm/nodes?status=unhealthy", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let ids: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["edge-1"]);
    let r = app
        .get("/api/v1/wasm/nodes?region=us-east", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert_eq!(r.json[0]["status"], "healthy");

    // Errors.
    as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes/ghost/heartbeat",
        &json!({"nodeId": "ghost", "loadedModules": 0}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes/edge-1/heartbeat",
        &json!({"nodeId": "edge-2", "loadedModules": 0}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    as_node(
        &app,
        Method::POST,
        "/api/v1/wasm/nodes/edge-1/heartbeat",
        &json!({"nodeId": "edge-1", "loadedModules": -1}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    for (field, value) in [
        ("agentUrl", json!("ftp://x")),
        ("nodeId", json!("a b")),
        ("region", json!("")),
        ("capacity", json!({"maxModules": 0, "maxInstances": 1})),
    ] {
        let mut reg = registration("edge-3", "eu-west");
        reg[field] = value;
        let r = as_node(&app, Method::POST, "/api/v1/wasm/nodes", &reg)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert!(
            r.json["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {}",
            r.json
        );
    }
    app.get("/api/v1/wasm/nodes/ghost", Role::Viewer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/wasm/nodes/ghost/health", Role::Viewer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    app.delete("/api/v1/wasm/nodes/edge-2", Role::Admin)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.delete("/api/v1/wasm/nodes/edge-2", Role::Admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // The node's own token cannot delete nodes.
    as_node(
        &app,
        Method::DELETE,
        "/api/v1/wasm/nodes/edge-1",
        &json!({}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Audit: registrations by the node under its own name.
    let r = app
        .get("/api/v1/audit?action=node.", Role::Operator)
        .await
        .expect(StatusCode::OK);
    let actors: Vec<&str> = r.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"node:edge-1") && actors.contains(&"admin"),
        "{actors:?}"
    );
}
