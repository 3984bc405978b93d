//! One request's trace, end to end: a client sends a W3C `traceparent` to
//! the control plane's execute endpoint; the control plane calls a node's
//! agent, which runs the guest. A test OTLP/HTTP collector receives the
//! spans `wasmswap up` exports (because `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set) and the test checks they form one trace across the three; the JSON
//! logs carry the same trace id.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};
use wasmswap_cli::client::Api;

/// Kills the child if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A collector: keeps every `POST /v1/traces` body (OTLP JSON).
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                sink.lock().push(v);
                ([("content-type", "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

/// Every span in the collected exports: (name, kind, spanId, parentSpanId, traceId, service).
fn spans(exports: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for e in exports {
        for rs in e["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone())
                .unwrap_or(Value::Null);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let mut s = s.clone();
                    s["service"] = service.clone();
                    out.push(s);
                }
            }
        }
    }
    out
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_traced_across_control_plane_node_and_guest() {
    let (endpoint, exports) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_wasmswap"))
            .args([
                "up",
                "--port",
                "0",
                "--log-json",
                "--nodes-per-region",
                "1",
                "--data-dir",
            ])
            .arg(&data)
            .env("WASMSWAP_CREDENTIALS", dir.path().join("creds.json"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("RUST_LOG", "warn,wasmswap_control::api=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("control plane") {
                let _ = url_tx.send(rest.trim().trim_end_matches("/api/v1").to_string());
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(120)))
        .await
        .unwrap()
        .expect("`wasmswap up` printed its control plane URL");

    let password = std::fs::read_to_string(data.join("control/admin-password")).unwrap();
    let creds = Api::new(&url, None)
        .login("admin", password.trim())
        .await
        .unwrap();
    let api = Api::new(&url, Some(creds.token.clone()));
    let wasm = wat::parse_str(
        r#"(module
            (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
            (func (export "health_check") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    api.post_bytes(
        "/wasm/modules?name=calc&version=1.0.0",
        "application/wasm",
        wasm,
    )
    .await
    .unwrap();
    let d = wasmswap_cli::deployments::deploy(
        &api,
        &json!({"moduleId": "calc-v1.0.0", "strategy": "rolling", "replicas": "all",
                "strategyConfig": {"batchSize": 2}, "healthCheck": {"intervalMs": 50}}),
        true,
    )
    .await
    .unwrap();
    let id = d["deploymentId"].as_str().unwrap();
    let mut status = Value::Null;
    for _ in 0..400 {
        status = api.get(&format!("/wasm/deployments/{id}")).await.unwrap()["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed", "calc is deployed");

    // The client's own trace: everything below must join it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/wasm/execute"))
        .bearer_auth(&creds.token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"moduleId": "calc-v1.0.0", "functionName": "add", "parameters": [2, 3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["returnValue"], 5, "{body}");

    // Ctrl-C: the cluster stops and the exporter flushes.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-s", "INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit after Ctrl-C: {status}");
    let logs = logs.join().unwrap();

    let all = spans(&exports.lock());
    let ours: Vec<&Value> = all.iter().filter(|s| s["traceId"] == trace_id).collect();
    let by_name = |name: &str| -> Vec<&Value> {
        ours.iter().copied().filter(|s| s["name"] == name).collect()
    };
    let names: Vec<&str> = ours.iter().filter_map(|s| s["name"].as_str()).collect();
    // Control plane: the HTTP server span continues the client's span.
    let server = by_name("POST /api/v1/wasm/execute");
    assert_eq!(server.len(), 1, "control plane request span in {names:?}");
    assert_eq!(server[0]["parentSpanId"], client_span);
    assert_eq!(
        attr(server[0], "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    let execute = by_name("wasm.deployment.execute");
    assert_eq!(execute.len(), 1, "{names:?}");
    assert_eq!(execute[0]["parentSpanId"], server[0]["spanId"]);
    // Control plane → node: a client span, and the node's server span is
    // its child — joined only through the `traceparent` header.
    let path = "/v1/services/calc/versions/1.0.0/invoke/add";
    let calls: Vec<&Value> = by_name(&format!("POST {path}"));
    let client = calls
        .iter()
        .find(|s| attr(s, "wasm.node.id").is_some())
        .unwrap_or_else(|| panic!("the control plane's agent call span in {names:?}"));
    let node = calls
        .iter()
        .find(|s| attr(s, "wasm.node.plane").is_some_and(|p| p["stringValue"] == "agent"))
        .expect("the node's agent request span");
    assert_eq!(node["parentSpanId"], client["spanId"]);
    assert_eq!(attr(node, "url.path").unwrap()["stringValue"], path);
    // Node → guest call.
    let invoke = by_name("wasm.function.invoke");
    assert_eq!(invoke.len(), 1, "{names:?}");
    assert_eq!(invoke[0]["parentSpanId"], node["spanId"]);
    assert_eq!(
        attr(invoke[0], "wasm.function.name").unwrap()["stringValue"],
        "add"
    );
    assert!(
        ours.iter().all(|s| s["service"] == "wasmswap-local"),
        "resource names the service"
    );

    // The JSON log line of the request carries the trace id.
    let line = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "served" && l.to_string().contains("/api/v1/wasm/execute")
        })
        .unwrap_or_else(|| panic!("a JSON log line for the request in {logs:#?}"));
    assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
}
