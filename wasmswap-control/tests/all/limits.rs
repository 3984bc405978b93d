//! Rate limits, request ids, the error shape, and what a failing store
//! looks like to a client.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use wasmswap_control::auth::Role;
use wasmswap_control::rate::RateLimits;

use super::common::{TestApp, generous, module_returning};

#[tokio::test]
async fn budgets_per_user_and_class_with_headers() {
    let app = TestApp::with_limits(RateLimits {
        read: 3,
        register: 2,
        login: 2,
        ..generous()
    })
    .await;
    let r = app
        .get("/api/v1/wasm/modules", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.headers["x-ratelimit-limit"], "3");
    assert_eq!(r.headers["x-ratelimit-remaining"], "2");
    assert!(r.headers.contains_key("x-ratelimit-reset"));
    app.get("/api/v1/wasm/nodes", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    app.get("/api/v1/wasm/interfaces", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let r = app
        .get("/api/v1/wasm/modules", Role::Viewer)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry),
        "one read comes back every 20 s: {retry}"
    );
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    assert_eq!(r.json["error"]["details"]["class"], "read");
    // Another user has their own budget; the same user has another class.
    app.get("/api/v1/wasm/modules", Role::Operator)
        .await
        .expect(StatusCode::OK);
    app.register("a", "1.0.0", &module_returning(1))
        .await
        .expect(StatusCode::CREATED);
    app.register("a", "1.0.1", &module_returning(2))
        .await
        .expect(StatusCode::CREATED);
    app.register("a", "1.0.2", &module_returning(3))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Logins are limited per client address.
    for _ in 0..2 {
        app.call(
            Method::POST,
            "/api/v1/authentication/login",
            None,
            Some("application/json"),
            serde_json::to_vec(&json!({"username": "admin", "password": "nope"})).unwrap(),
        )
        .await
        .expect(StatusCode::UNAUTHORIZED);
    }
    let r = app
        .call(
            Method::POST,
            "/api/v1/authentication/login",
            None,
            Some("application/json"),
            serde_json::to_vec(&json!({"username": "admin", "password": "secret-pw"})).unwrap(),
        )
        .await;
    let r = r.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    let r = app
        .get("/api/v1/metrics", Role::Admin)
        .await
        .expect(StatusCode::OK);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("wasmswap_control_rate_limited_total 3"),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_and_error_shape() {
    let app = TestApp::new().await;
    // A client's well-formed id is kept; every answer carries one.
    let req = Request::get("/api/v1/wasm/modules/nope-v1.0.0")
        .header(
            "authorization",
            format!("Bearer {}", app.token(Role::Viewer)),
        )
        .header("x-request-id", "trace-me-123")
        .body(Body::empty())
        .unwrap();
    let r = app
        .send(req)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(r.json["error"]["requestId"], "trace-me-123");
    let r = app
        .call(Method::GET, "/api/v1/nowhere", None, None, vec![])
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(r.headers["x-request-id"].len(), 36, "a generated UUID");
    app.call(
        Method::PATCH,
        "/api/v1/wasm/modules",
        Some(app.token(Role::Admin)),
        None,
        vec![],
    )
    .await
    .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.call(
        Method::GET,
        "/api/v1/wasm/modules",
        Some(app.token(Role::Admin)),
        None,
        vec![],
    )
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_dead_store_is_a_500_that_leaks_nothing() {
    let app = TestApp::new().await;
    app.register("a", "1.0.0", &module_returning(1))
        .await
        .expect(StatusCode::CREATED);
    app.state.store().close().await;
    let r = app
        .get("/api/v1/wasm/modules", Role::Viewer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let text = String::from_utf8_lossy(&r.body).to_lowercase();
    for leak in ["sqlx", "pool", "sqlite", "closed", "database"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    let r = app
        .call(Method::GET, "/api/v1/health", None, None, vec![])
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["status"], "degraded");
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = TestApp::new().await;
    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None, vec![])
        .await
        .expect(StatusCode::OK);
    let doc = r.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/authentication/login", &["post"][..]),
        ("/api/v1/wasm/modules", &["post", "get"]),
        ("/api/v1/wasm/modules/{id}", &["get", "delete"]),
        ("/api/v1/wasm/modules/{id}/wit", &["get"]),
        ("/api/v1/wasm/modules/{id}/diff/{other}", &["get"]),
        ("/api/v1/wasm/binaries/{checksum}", &["get"]),
        ("/api/v1/wasm/nodes", &["post", "get"]),
        ("/api/v1/wasm/nodes/{id}", &["get", "delete"]),
        ("/api/v1/wasm/nodes/{id}/health", &["get"]),
        ("/api/v1/wasm/nodes/{id}/heartbeat", &["post"]),
        ("/api/v1/wasm/interfaces", &["post", "get"]),
        ("/api/v1/wasm/interfaces/{id}", &["get"]),
        ("/api/v1/wasm/interfaces/{id}/validate", &["post"]),
        ("/api/v1/wasm/interfaces/{id}/approve", &["post"]),
        ("/api/v1/wasm/interfaces/{id}/deprecate", &["post"]),
        ("/api/v1/wasm/execute", &["post"]),
        ("/api/v1/wasm/deployments", &["post", "get"]),
        ("/api/v1/wasm/deployments/{id}", &["get"]),
        ("/api/v1/wasm/deployments/{id}/events", &["get"]),
        ("/api/v1/wasm/deployments/{id}/execute", &["post"]),
        ("/api/v1/wasm/deployments/{id}/approve", &["post"]),
        ("/api/v1/wasm/deployments/{id}/pause", &["post"]),
        ("/api/v1/wasm/deployments/{id}/resume", &["post"]),
        ("/api/v1/wasm/deployments/{id}/promote", &["post"]),
        ("/api/v1/wasm/deployments/{id}/abort", &["post"]),
        ("/api/v1/wasm/deployments/{id}/rollback", &["post"]),
        ("/api/v1/wasm/services/{service}/pins", &["get"]),
        (
            "/api/v1/wasm/services/{service}/pins/{scope}/{target}",
            &["put", "delete"],
        ),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/health", &["get"]),
        ("/api/v1/metrics", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing from the OpenAPI document"
            );
        }
    }
    assert_eq!(paths.len(), 31, "{:?}", paths.keys().collect::<Vec<_>>());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}
