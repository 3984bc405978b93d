//! Module endpoints through the router: every success and error path.

use axum::http::{Method, StatusCode};
use serde_json::json;

use wasmswap_control::auth::Role;
use wasmswap_control::model::{Actor, ModuleStatus};

use super::common::{TestApp, module_returning};

fn numeric() -> Vec<u8> {
    test_programs::bytes(test_programs::NUMERIC_MODULE)
}

#[tokio::test]
async fn register_json_raw_and_multipart() {
    let app = TestApp::new().await;
    let bytes = numeric();
    let r = app
        .register("calc", "1.0.0", &bytes)
        .await
        .expect(StatusCode::CREATED);
    let m = &r.json;
    assert_eq!(m["moduleId"], "calc-v1.0.0");
    assert_eq!(m["checksum"], wasmswap_control::store::checksum(&bytes));
    assert_eq!(m["sizeBytes"], bytes.len());
    assert_eq!(m["status"], "registered");
    assert_eq!(m["kind"], "module");
    assert_eq!(m["wasiVersion"], "preview1");
    assert_eq!(
        m["limits"],
        json!({"maxMemoryMB": 128, "maxCpuPercent": 50, "maxExecutionTimeSeconds": 30})
    );
    let names: Vec<&str> = m["exportedFunctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"add") && names.contains(&"health_check"),
        "{names:?}"
    );
    assert_eq!(r.headers["location"], "/api/v1/wasm/modules/calc-v1.0.0");

    // Raw body, metadata in the query.
    let r = app
        .call(
            Method::POST,
            "/api/v1/wasm/modules?name=calc&version=1.1.0&maxMemoryMB=64&description=raw",
            Some(app.token(Role::Developer)),
            Some("application/wasm"),
            module_returning(7),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["limits"]["maxMemoryMB"], 64);
    assert_eq!(r.json["description"], "raw");
    assert_eq!(r.json["exportedFunctions"][0]["signature"], "() -> (i64)");

    // Multipart: a metadata part and a file part.
    let boundary = "XBOUNDARYX";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n").as_bytes());
    body.extend_from_slice(br#"{"name":"calc","version":"1.2.0","metadata":{"team":"edge"}}"#);
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes());
    body.extend_from_slice(&module_returning(8));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = app
        .call(
            Method::POST,
            "/api/v1/wasm/modules",
            Some(app.token(Role::Admin)),
            Some(&format!("multipart/form-data; boundary={boundary}")),
            body,
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["metadata"]["team"], "edge");
    assert_eq!(r.json["createdBy"], "admin");

    // A component: WIT available.
    let comp = test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT);
    let r = app
        .register("hello", "1.0.0", &comp)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["kind"], "component");
    assert_eq!(r.json["wasiVersion"], "preview2");
    assert_eq!(r.json["hasWit"], true);
}

#[tokio::test]
async fn registration_errors_name_the_problem() {
    let app = TestApp::new().await;
    app.register("calc", "1.0.0", &module_returning(1))
        .await
        .expect(StatusCode::CREATED);

    // Duplicate version.
    let r = app.register("calc", "1.0.0", &module_returning(2)).await;
    assert!(
        r.expect_error(StatusCode::CONFLICT, "conflict").json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("calc-v1.0.0")
    );

    // Malformed wasm: the validator's offset comes back.
    let mut broken = module_returning(3);
    broken.truncate(broken.len() - 3);
    let r = app
        .register("calc", "1.0.1", &broken)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_wasm");
    assert!(
        r.json["error"]["details"]["offset"].is_number(),
        "{}",
        r.json
    );
    let r = app
        .register("calc", "1.0.2", b"\x7fELF not wasm")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_wasm");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("magic"),
        "{}",
        r.json
    );
    // Imports outside the capability set.
    let sneaky =
        wat::parse_str(r#"(module (import "env" "system" (func)) (func (export "f")))"#).unwrap();
    let r = app
        .register("calc", "1.0.3", &sneaky)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_wasm");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("env::system"),
        "{}",
        r.json
    );

    // Fields.
    for (name, version, field) in [
        ("Calc", "1.0.0", "name"),
        ("", "1.0.0", "name"),
        ("calc/../x", "1.0.0", "name"),
        ("calc", "1.0", "version"),
        ("calc", "1.0.0+build.5", "version"),
    ] {
        let r = app
            .register(name, version, &module_returning(4))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
        assert_eq!(
            r.json["error"]["details"]["field"], field,
            "{name} {version}: {}",
            r.json
        );
    }
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({"name": "calc", "version": "2.0.0", "wasmBinary": "***"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(r.json["error"]["details"]["field"], "wasmBinary");
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({"name": "calc", "version": "2.0.0"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(r.json["error"]["details"]["field"], "wasmBinary");
    let r = app
        .post("/api/v1/wasm/modules", Role::Developer, &json!({"name": "calc", "version": "2.0.0", "wasmBinary": "", "limits": {"maxMemoryMB": 4096}}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxMemoryMB"),
        "{}",
        r.json
    );
    // Wrong types and unknown fields name themselves.
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({"name": 5, "version": "2.0.0"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("name"),
        "{}",
        r.json
    );
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({"name": "calc", "version": "2.0.0", "colour": "red"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        r.json
    );
    let r = app
        .call(
            Method::POST,
            "/api/v1/wasm/modules",
            Some(app.token(Role::Developer)),
            Some("application/json"),
            b"{\"name\": ".to_vec(),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{}",
        r.json
    );
    // WASI version that does not match the binary.
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({
                "name": "calc", "version": "2.0.0", "wasiVersion": "preview2",
                "wasmBinary": base64_of(&module_returning(5)),
            }),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(r.json["error"]["details"]["field"], "wasiVersion");
    // Unknown required interface.
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({
                "name": "calc", "version": "2.0.0", "requiredInterfaces": ["acme/kv@1.0.0"],
                "wasmBinary": base64_of(&module_returning(5)),
            }),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(r.json["error"]["details"]["field"], "requiredInterfaces");
    // Content types.
    app.call(
        Method::POST,
        "/api/v1/wasm/modules",
        Some(app.token(Role::Developer)),
        Some("text/plain"),
        b"hi".to_vec(),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let r = app
        .call(
            Method::POST,
            "/api/v1/wasm/modules?name=calc",
            Some(app.token(Role::Developer)),
            Some("application/wasm"),
            module_returning(6),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version"),
        "{}",
        r.json
    );

    // Nothing of the above was stored.
    let r = app
        .get("/api/v1/wasm/modules", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 1);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn over_fifty_mib_is_413_in_every_form() {
    let app = TestApp::new().await;
    let big = vec![0u8; (50 << 20) + 1];
    let r = app
        .call(
            Method::POST,
            "/api/v1/wasm/modules?name=big&version=1.0.0",
            Some(app.token(Role::Developer)),
            Some("application/wasm"),
            big.clone(),
        )
        .await;
    r.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = app
        .post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &json!({"name": "big", "version": "1.0.0", "wasmBinary": base64_of(&big)}),
        )
        .await;
    let r = r.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(r.json["error"]["details"]["limitBytes"], 50 << 20);
    // Bodies far over the limit are cut off while reading.
    let huge = vec![b'a'; 80 << 20];
    app.call(
        Method::POST,
        "/api/v1/wasm/modules",
        Some(app.token(Role::Developer)),
        Some("application/json"),
        huge,
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Other endpoints take 1 MiB.
    app.call(
        Method::POST,
        "/api/v1/wasm/execute",
        Some(app.token(Role::Developer)),
        Some("application/json"),
        vec![b' '; 2 << 20],
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn list_get_delete_binary_wit_diff() {
    let app = TestApp::new().await;
    for (i, v) in ["1.0.0", "1.1.0", "2.0.0"].iter().enumerate() {
        app.register("calc", v, &module_returning(i as i64))
            .await
            .expect(StatusCode::CREATED);
    }
    app.register("other", "0.1.0", &module_returning(9))
        .await
        .expect(StatusCode::CREATED);

    let r = app
        .get(
            "/api/v1/wasm/modules?name=calc&limit=2&offset=1",
            Role::Viewer,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 3);
    let ids: Vec<&str> = r.json["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["calc-v1.1.0", "calc-v2.0.0"]);
    let r = app
        .get("/api/v1/wasm/modules?status=registered", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 4);
    for bad in [
        "limit=0",
        "limit=101",
        "offset=-1",
        "status=sleeping",
        "limit=ten",
        "sort=name",
    ] {
        app.get(&format!("/api/v1/wasm/modules?{bad}"), Role::Viewer)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    }

    let r = app
        .get("/api/v1/wasm/modules/calc-v1.1.0", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let checksum = r.json["checksum"].as_str().unwrap().to_string();
    app.get("/api/v1/wasm/modules/calc-v9.9.9", Role::Viewer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Download by checksum: the exact bytes, for users and nodes.
    let r = app
        .get(&format!("/api/v1/wasm/binaries/{checksum}"), Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body, module_returning(1));
    assert_eq!(r.headers["content-type"], "application/wasm");
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/wasm/binaries/{checksum}"),
            Some(super::common::NODE_TOKEN),
            None,
            vec![],
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.body, module_returning(1));
    app.get("/api/v1/wasm/binaries/xyz", Role::Viewer)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    app.get(
        &format!("/api/v1/wasm/binaries/{}", "0".repeat(64)),
        Role::Viewer,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    // WIT: components only.
    app.get("/api/v1/wasm/modules/calc-v1.0.0/wit", Role::Viewer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.register(
        "hello",
        "1.0.0",
        &test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT),
    )
    .await
    .expect(StatusCode::CREATED);
    app.register(
        "hello",
        "2.0.0",
        &test_programs::bytes(test_programs::HTTP_HELLO_V2_COMPONENT),
    )
    .await
    .expect(StatusCode::CREATED);
    let r = app
        .get("/api/v1/wasm/modules/hello-v1.0.0/wit", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let wit = String::from_utf8(r.body).unwrap();
    assert!(wit.contains("wasi:http/incoming-handler"), "{wit}");
    // Diff of two versions of the same world: nothing breaks.
    let r = app
        .get(
            "/api/v1/wasm/modules/hello-v1.0.0/diff/hello-v2.0.0",
            Role::Viewer,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["breaksCallers"], false, "{}", r.json);
    assert!(r.json["diff"]["changes"].is_array());
    // A different world: the types guest exports functions hello does not.
    app.register(
        "types",
        "1.0.0",
        &test_programs::bytes(test_programs::TYPES_COMPONENT),
    )
    .await
    .expect(StatusCode::CREATED);
    let r = app
        .get(
            "/api/v1/wasm/modules/types-v1.0.0/diff/hello-v1.0.0",
            Role::Viewer,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["breaksCallers"], true, "{}", r.json);
    assert!(
        r.json["text"].as_str().unwrap().contains("removed"),
        "{}",
        r.json
    );
    app.get(
        "/api/v1/wasm/modules/calc-v1.0.0/diff/hello-v1.0.0",
        Role::Viewer,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    app.get(
        "/api/v1/wasm/modules/nope-v1.0.0/diff/hello-v1.0.0",
        Role::Viewer,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Delete: 204, then 404; deployed versions are refused with 409.
    app.delete("/api/v1/wasm/modules/calc-v1.0.0", Role::Admin)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.delete("/api/v1/wasm/modules/calc-v1.0.0", Role::Admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.state
        .store()
        .set_module_status("calc-v2.0.0", ModuleStatus::Deployed, &Actor::default())
        .await
        .unwrap();
    let r = app
        .delete("/api/v1/wasm/modules/calc-v2.0.0", Role::Admin)
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deployed")
    );
    let r = app
        .get("/api/v1/wasm/modules?status=deployed", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 1);
}

#[tokio::test]
async fn retention_keeps_the_last_five() {
    let app = TestApp::new().await;
    for i in 0..7 {
        app.register("svc", &format!("1.{i}.0"), &module_returning(i))
            .await
            .expect(StatusCode::CREATED);
    }
    let r = app
        .get("/api/v1/wasm/modules?name=svc", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let versions: Vec<&str> = r.json["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0"]);
    let r = app
        .get("/api/v1/audit?action=module.prune", Role::Admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(r.json["total"], 2);
}
