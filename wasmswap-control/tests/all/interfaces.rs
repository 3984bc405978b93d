//! Interface endpoints: register with review, semver gate, approval,
//! deprecation, validation of a module against an interface.

use axum::http::StatusCode;
use serde_json::json;

use wasmswap_control::auth::Role;

use super::common::TestApp;

const V1: &str =
    "package acme:kv@1.0.0;\ninterface store {\n  get: func(key: string) -> option<string>;\n}\n";
const V1_1: &str = "package acme:kv@1.1.0;\ninterface store {\n  get: func(key: string) -> option<string>;\n  len: func() -> u64;\n}\n";
const V2: &str = "package acme:kv@2.0.0;\ninterface store {\n  get: func(key: string, ns: string) -> option<string>;\n}\n";
const V1_2_BREAKING: &str = "package acme:kv@1.2.0;\ninterface store {\n  len: func() -> u64;\n}\n";

fn reg(version: &str, wit: &str) -> serde_json::Value {
    json!({"namespace": "acme", "name": "kv", "version": version, "wit": wit})
}

#[tokio::test]
async fn register_review_approve_deprecate() {
    let app = TestApp::new().await;
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg("1.0.0", V1),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["interfaceId"], "acme/kv@1.0.0");
    assert_eq!(r.json["status"], "draft");
    assert_eq!(r.json["cleared"], true, "a first version breaks nobody");
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg("1.1.0", V1_1),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        r.json["cleared"], true,
        "adding a function is compatible for callers"
    );
    assert_eq!(r.json["review"]["previous"], "acme:kv/store@1.0.0");

    // A minor bump that breaks callers is refused by the semver gate.
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg("1.2.0", V1_2_BREAKING),
        )
        .await;
    let r = r.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "semver_violation");
    assert!(
        r.json["error"]["details"]["breaking"].as_bool().unwrap(),
        "{}",
        r.json
    );
    // A major bump may break, but needs an admin's approval.
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg("2.0.0", V2),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["cleared"], false);
    assert_eq!(r.json["review"]["needsApproval"], true);
    let id = "acme%2Fkv%402.0.0";
    // A module cannot require it yet.
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({
                "name": "kv", "version": "2.0.0", "requiredInterfaces": ["acme/kv@2.0.0"],
                "wasmBinary": "AGFzbQEAAAA=",
            }),
        )
        .await;
    r.expect_error(StatusCode::CONFLICT, "conflict");
    app.post(
        &format!("/api/v1/wasm/interfaces/{id}/approve"),
        Role::Developer,
        &json!({}),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let r = app
        .post(
            &format!("/api/v1/wasm/interfaces/{id}/approve"),
            Role::Admin,
            &json!({}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["status"], "approved");
    assert_eq!(r.json["cleared"], true);
    assert_eq!(r.json["approvedBy"], "admin");
    app.post(
        &format!("/api/v1/wasm/interfaces/{id}/approve"),
        Role::Admin,
        &json!({}),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "conflict");
    app.post("/api/v1/wasm/modules", Role::Developer, &json!({
        "name": "kv", "version": "2.0.0", "requiredInterfaces": ["acme/kv@2.0.0"], "wasmBinary": "AGFzbQEAAAA=",
    })).await.expect(StatusCode::CREATED);

    let r = app
        .post(
            "/api/v1/wasm/interfaces/acme%2Fkv%401.0.0/deprecate",
            Role::Admin,
            &json!({}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["status"], "deprecated");
    app.post(
        "/api/v1/wasm/interfaces/acme%2Fkv%409.0.0/deprecate",
        Role::Admin,
        &json!({}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    let r = app
        .get("/api/v1/wasm/interfaces?namespace=acme", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json.as_array().unwrap().len(), 3);
    let r = app
        .get("/api/v1/wasm/interfaces/acme%2Fkv%401.1.0", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["wit"], V1_1);
    app.get("/api/v1/wasm/interfaces/acme%2Fkv%401.9.0", Role::Viewer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Errors: duplicate, bad WIT (with its line), mismatched package, fields.
    app.post(
        "/api/v1/wasm/interfaces",
        Role::Developer,
        &reg("1.0.0", V1),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "conflict");
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg(
                "3.0.0",
                "package acme:kv@3.0.0;\ninterface store {\n  get: func(key: strin) -> u8;\n}\n",
            ),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_wit");
    assert_eq!(r.json["error"]["details"]["line"], 3, "{}", r.json);
    let r = app
        .post(
            "/api/v1/wasm/interfaces",
            Role::Developer,
            &reg("3.0.0", V1),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme:kv@1.0.0"),
        "{}",
        r.json
    );
    for (field, value) in [
        ("namespace", "Acme"),
        ("version", "three"),
        ("compatibility", "everyone"),
    ] {
        let mut body = reg("3.0.0", V1);
        body[field] = json!(value);
        let r = app
            .post("/api/v1/wasm/interfaces", Role::Developer, &body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(r.json["error"]["details"]["field"], field, "{}", r.json);
    }
    app.post("/api/v1/wasm/interfaces", Role::Viewer, &reg("3.0.0", V1))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn validate_a_module_against_an_interface() {
    let app = TestApp::new().await;
    let types = test_programs::bytes(test_programs::TYPES_COMPONENT);
    app.register("types", "1.0.0", &types)
        .await
        .expect(StatusCode::CREATED);
    app.register("calc", "1.0.0", &super::common::module_returning(1))
        .await
        .expect(StatusCode::CREATED);
    // The guest's own exported interface, registered as a contract.
    let wit = app
        .get("/api/v1/wasm/modules/types-v1.0.0/wit", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let wit = String::from_utf8(wit.body).unwrap();
    assert!(wit.contains("wasmswap:guests/api@0.1.0"), "{wit}");
    let api = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/guests/types/wit/types.wit"
    ))
    .unwrap();
    let r = app
        .post("/api/v1/wasm/interfaces", Role::Developer, &json!({
            "namespace": "wasmswap", "name": "guests", "version": "0.1.0", "wit": api, "interface": "api",
        }))
        .await
        .expect(StatusCode::CREATED);
    let id = r.json["interfaceId"]
        .as_str()
        .unwrap()
        .replace('/', "%2F")
        .replace('@', "%40");
    let r = app
        .post(
            &format!("/api/v1/wasm/interfaces/{id}/validate"),
            Role::Viewer,
            &json!({"moduleId": "types-v1.0.0"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["satisfied"], true, "{}", r.json);
    app.post(
        &format!("/api/v1/wasm/interfaces/{id}/validate"),
        Role::Viewer,
        &json!({"moduleId": "calc-v1.0.0"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    app.post(
        &format!("/api/v1/wasm/interfaces/{id}/validate"),
        Role::Viewer,
        &json!({"moduleId": "ghost-v1.0.0"}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.post(
        &format!("/api/v1/wasm/interfaces/{id}/validate"),
        Role::Viewer,
        &json!({}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Contracts the guest does not meet: an extra function on the same
    // semver track, and the next incompatible track.
    for (version, expect) in [("0.1.1", "missing-fn"), ("0.2.0", "not semver-compatible")] {
        let stricter = api
            .replace(
                "package wasmswap:guests@0.1.0;",
                &format!("package wasmswap:guests@{version};"),
            )
            .replacen(
                "interface api {",
                "interface api {\n  missing-fn: func() -> u32;",
                1,
            );
        let r = app
            .post("/api/v1/wasm/interfaces", Role::Developer, &json!({
                "namespace": "wasmswap", "name": "guests", "version": version, "wit": stricter, "interface": "api",
            }))
            .await
            .expect(StatusCode::CREATED);
        let id = r.json["interfaceId"]
            .as_str()
            .unwrap()
            .replace('/', "%2F")
            .replace('@', "%40");
        let r = app
            .post(
                &format!("/api/v1/wasm/interfaces/{id}/validate"),
                Role::Viewer,
                &json!({"moduleId": "types-v1.0.0"}),
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(r.json["satisfied"], false, "{}", r.json);
        assert!(
            r.json["problems"].to_string().contains(expect),
            "{version}: {}",
            r.json
        );
    }
}
