//! Authorization, table-driven: every endpoint × every role, and with no
//! token, an expired token and a forged one.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use wasmswap_control::auth::Role;

use super::common::{NODE_TOKEN, TestApp};
use super::jwt::{claims, sign_hs256};

/// Who may call an endpoint.
#[derive(Clone, Copy)]
enum Who {
    All,
    Admin,
    AdminDev,
    AdminOps,
    AdminDevOps,
    /// Admin or a node (with the node token).
    AdminNode,
    /// Every role, and nodes.
    AllNode,
}

impl Who {
    fn allows(self, role: Role) -> bool {
        match self {
            Who::All | Who::AllNode => true,
            Who::Admin | Who::AdminNode => role == Role::Admin,
            Who::AdminDev => matches!(role, Role::Admin | Role::Developer),
            Who::AdminOps => matches!(role, Role::Admin | Role::Operator),
            Who::AdminDevOps => role != Role::Viewer,
        }
    }
    fn allows_node(self) -> bool {
        matches!(self, Who::AdminNode | Who::AllNode)
    }
}

fn table(checksum: &str) -> Vec<(Method, String, Value, Who)> {
    let iface = "acme%2Fkv%401.0.0";
    vec![
        (
            Method::GET,
            "/api/v1/wasm/modules".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::POST,
            "/api/v1/wasm/modules".into(),
            json!({"name": "authz", "version": "1.0.0", "wasmBinary": "AGFzbQEAAAA="}),
            Who::AdminDev,
        ),
        (
            Method::GET,
            "/api/v1/wasm/modules/calc-v1.0.0".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::DELETE,
            "/api/v1/wasm/modules/calc-v9.9.9".into(),
            Value::Null,
            Who::Admin,
        ),
        (
            Method::GET,
            "/api/v1/wasm/modules/calc-v1.0.0/wit".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            "/api/v1/wasm/modules/calc-v1.0.0/diff/calc-v1.0.0".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            format!("/api/v1/wasm/binaries/{checksum}"),
            Value::Null,
            Who::AllNode,
        ),
        (
            Method::POST,
            "/api/v1/wasm/nodes".into(),
            super::nodes::registration("authz-node", "eu"),
            Who::AdminNode,
        ),
        (
            Method::GET,
            "/api/v1/wasm/nodes".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            "/api/v1/wasm/nodes/edge-1".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            "/api/v1/wasm/nodes/edge-1/health".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::POST,
            "/api/v1/wasm/nodes/edge-1/heartbeat".into(),
            json!({"nodeId": "edge-1", "loadedModules": 0}),
            Who::AdminNode,
        ),
        (
            Method::DELETE,
            "/api/v1/wasm/nodes/ghost".into(),
            Value::Null,
            Who::Admin,
        ),
        (
            Method::POST,
            "/api/v1/wasm/interfaces".into(),
            json!({"namespace": "acme", "name": "authz", "version": "1.0.0", "wit": "package acme:authz@1.0.0; interface i { f: func(); }"}),
            Who::AdminDev,
        ),
        (
            Method::GET,
            "/api/v1/wasm/interfaces".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            format!("/api/v1/wasm/interfaces/{iface}"),
            Value::Null,
            Who::All,
        ),
        (
            Method::POST,
            format!("/api/v1/wasm/interfaces/{iface}/validate"),
            json!({"moduleId": "calc-v1.0.0"}),
            Who::All,
        ),
        (
            Method::POST,
            "/api/v1/wasm/interfaces/acme%2Fkv%409.0.0/approve".into(),
            json!({}),
            Who::Admin,
        ),
        (
            Method::POST,
            "/api/v1/wasm/interfaces/acme%2Fkv%409.0.0/deprecate".into(),
            json!({}),
            Who::Admin,
        ),
        (
            Method::POST,
            "/api/v1/wasm/execute".into(),
            json!({"moduleId": "calc-v1.0.0", "functionName": "f", "targetRegion": "nowhere"}),
            Who::AdminDev,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments".into(),
            json!({"moduleId": "calc-v1.0.0", "strategy": "nope"}),
            Who::AdminDev,
        ),
        (
            Method::GET,
            "/api/v1/wasm/deployments".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            "/api/v1/wasm/deployments/dep-nope".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::GET,
            "/api/v1/wasm/deployments/dep-nope/events".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/execute".into(),
            json!({}),
            Who::AdminDev,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/approve".into(),
            json!({}),
            Who::Admin,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/pause".into(),
            json!({}),
            Who::AdminDevOps,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/resume".into(),
            json!({}),
            Who::AdminDevOps,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/promote".into(),
            json!({}),
            Who::AdminDevOps,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/abort".into(),
            json!({}),
            Who::AdminDevOps,
        ),
        (
            Method::POST,
            "/api/v1/wasm/deployments/dep-nope/rollback".into(),
            json!({}),
            Who::AdminOps,
        ),
        (
            Method::PUT,
            "/api/v1/wasm/services/calc/pins/node/edge-1".into(),
            json!({"moduleId": "calc-v1.0.0"}),
            Who::Admin,
        ),
        (
            Method::GET,
            "/api/v1/wasm/services/calc/pins".into(),
            Value::Null,
            Who::All,
        ),
        (
            Method::DELETE,
            "/api/v1/wasm/services/calc/pins/node/edge-1".into(),
            Value::Null,
            Who::Admin,
        ),
        (
            Method::GET,
            "/api/v1/audit".into(),
            Value::Null,
            Who::AdminOps,
        ),
        (Method::GET, "/api/v1/metrics".into(), Value::Null, Who::All),
    ]
}

#[tokio::test]
async fn every_endpoint_every_role_and_bad_tokens() {
    let app = TestApp::new().await;
    let r = app
        .register("calc", "1.0.0", &super::common::module_returning(1))
        .await
        .expect(StatusCode::CREATED);
    let checksum = r.json["checksum"].as_str().unwrap().to_string();
    app.post(
        "/api/v1/wasm/nodes",
        Role::Admin,
        &super::nodes::registration("edge-1", "eu"),
    )
    .await
    .expect(StatusCode::CREATED);
    app.post("/api/v1/wasm/interfaces", Role::Admin, &json!({"namespace": "acme", "name": "kv", "version": "1.0.0", "wit": "package acme:kv@1.0.0; interface store { get: func() -> u8; }"}))
        .await
        .expect(StatusCode::CREATED);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = sign_hs256(
        &claims("admin", now - 3600, now - 120),
        super::common::SECRET,
    );
    let forged = sign_hs256(
        &claims("admin", now, now + 3600),
        b"some-other-secret-of-sufficient-length!!",
    );

    let mut checked = 0;
    for (method, path, body, who) in table(&checksum) {
        let body_bytes = if body.is_null() {
            vec![]
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let ct = (!body.is_null()).then_some("application/json");
        // Without a valid token: 401, whatever the role would be.
        for (what, token) in [
            ("none", None),
            ("expired", Some(expired.as_str())),
            ("forged", Some(forged.as_str())),
            ("garbage", Some("not.a.jwt")),
        ] {
            let r = app
                .call(method.clone(), &path, token, ct, body_bytes.clone())
                .await;
            let r = r.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(
                r.headers["www-authenticate"], "Bearer",
                "{method} {path} with {what}"
            );
            checked += 1;
        }
        for role in Role::ALL {
            let r = app
                .call(
                    method.clone(),
                    &path,
                    Some(app.token(role)),
                    ct,
                    body_bytes.clone(),
                )
                .await;
            if who.allows(role) {
                // Allowed: any answer but 401/403 — and no server error
                // (execute to a region without nodes is a 503 by design).
                let server_error = r.status.is_server_error()
                    && !(r.status == StatusCode::SERVICE_UNAVAILABLE && path.ends_with("/execute"));
                assert!(
                    r.status != StatusCode::FORBIDDEN
                        && r.status != StatusCode::UNAUTHORIZED
                        && !server_error,
                    "{method} {path} as {role:?}: {} {}",
                    r.status,
                    r.json
                );
            } else {
                r.expect_error(StatusCode::FORBIDDEN, "forbidden");
            }
            checked += 1;
        }
        let r = app
            .call(
                method.clone(),
                &path,
                Some(NODE_TOKEN),
                ct,
                body_bytes.clone(),
            )
            .await;
        if who.allows_node() {
            assert!(
                r.status.is_success(),
                "{method} {path} as node: {} {}",
                r.status,
                r.json
            );
        } else {
            r.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
        checked += 1;
    }
    assert_eq!(checked, 36 * 9);

    // Public endpoints need nothing.
    app.call(Method::GET, "/api/v1/health", None, None, vec![])
        .await
        .expect(StatusCode::OK);
    app.call(Method::GET, "/api/v1/openapi.json", None, None, vec![])
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn login_issues_tokens_that_work() {
    let app = TestApp::new().await;
    let login = |user: &str, pw: &str| {
        app.call(
            Method::POST,
            "/api/v1/authentication/login",
            None,
            Some("application/json"),
            serde_json::to_vec(&json!({"username": user, "password": pw})).unwrap(),
        )
    };
    let r = login("developer", "secret-pw").await.expect(StatusCode::OK);
    assert_eq!(
        r.json["user"],
        json!({"username": "developer", "role": "developer"})
    );
    assert!(r.json["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.headers["cache-control"], "no-store");
    let token = r.json["token"].as_str().unwrap().to_string();
    app.call(
        Method::GET,
        "/api/v1/wasm/modules",
        Some(&token),
        None,
        vec![],
    )
    .await
    .expect(StatusCode::OK);
    app.call(Method::GET, "/api/v1/audit", Some(&token), None, vec![])
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Wrong password and unknown user look the same.
    let a = login("developer", "wrong")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let b = login("mallory", "secret-pw")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(a.json["error"]["message"], b.json["error"]["message"]);
    app.call(
        Method::POST,
        "/api/v1/authentication/login",
        None,
        Some("application/json"),
        b"{\"username\":1}".to_vec(),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Both attempts are in the audit log, with the request id.
    let r = app
        .get("/api/v1/audit?action=auth.", Role::Admin)
        .await
        .expect(StatusCode::OK);
    let actions: Vec<&str> = r.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["auth.login_failed", "auth.login_failed", "auth.login"]
    );
    assert_eq!(
        r.json["entries"][0]["requestId"],
        b.headers["x-request-id"].to_str().unwrap()
    );
}
