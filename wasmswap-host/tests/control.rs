//! The control-plane client against a recording HTTP server on 127.0.0.1:
//! registration, heartbeats with counters, serving on while the control
//! plane is down, and registering again when it comes back without the node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wasmswap_host::body::json as json_resp;
use wasmswap_host::{Host, HostConfig};
use wasmswap_server as server;

const TOKEN: &str = "control-token-0123456789";

/// A request as recorded: path, `Authorization` header, JSON body.
type Seen = (String, Option<String>, Value);

/// Records every request; forgets registered nodes when restarted.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Serves on `addr` until `stop` is set. Heartbeats from nodes it has
    /// not seen register are answered 404, as a restarted control plane would.
    async fn serve(&self, listener: TcpListener, stop: tokio::sync::watch::Receiver<bool>) {
        let seen = self.seen.clone();
        let known: Arc<Mutex<Vec<String>>> = Arc::default();
        let handler = move |req: http::Request<wasmswap_server::Incoming>, _peer| {
            let (seen, known) = (seen.clone(), known.clone());
            async move {
                use http_body_util::BodyExt;
                let path = req.uri().path().to_string();
                let auth = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().push((path.clone(), auth, body.clone()));
                if path == "/api/v1/wasm/nodes" {
                    known
                        .lock()
                        .push(body["nodeId"].as_str().unwrap().to_string());
                    return json_resp(http::StatusCode::CREATED, &json!({"ok": true}));
                }
                let id = path
                    .trim_start_matches("/api/v1/wasm/nodes/")
                    .trim_end_matches("/heartbeat");
                if known.lock().iter().any(|k| k == id) {
                    json_resp(http::StatusCode::OK, &json!({"ok": true}))
                } else {
                    json_resp(
                        http::StatusCode::NOT_FOUND,
                        &json!({"error": "unknown node"}),
                    )
                }
            }
        };
        let mut stop = stop;
        server::serve(listener, handler, Default::default(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    }

    fn count(&self, path_suffix: &str) -> usize {
        self.seen
            .lock()
            .iter()
            .filter(|(p, ..)| p.ends_with(path_suffix))
            .count()
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_heartbeats_and_serves_on_while_the_control_plane_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_addr: SocketAddr = listener.local_addr().unwrap();
    let rec = Recorder::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let first = tokio::spawn({
        let rec = rec.clone();
        async move { rec.serve(listener, rx).await }
    });

    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("hello.wasm");
    std::fs::copy(test_programs::HTTP_HELLO_V1_COMPONENT, &app).unwrap();
    let host = Host::start(HostConfig {
        node_id: "edge-7".into(),
        region: "eu-west".into(),
        zone: "eu-west-1b".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        services: vec![("hello".into(), app)],
        control_plane: Some(format!("http://{cp_addr}")),
        heartbeat_interval: Duration::from_millis(100),
        max_modules: 50,
        ..Default::default()
    })
    .await
    .unwrap();

    wait_for("two heartbeats", || rec.count("/heartbeat") >= 2).await;
    {
        let seen = rec.seen.lock();
        let (path, auth, reg) = &seen[0];
        assert_eq!(path, "/api/v1/wasm/nodes");
        assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(reg["nodeId"], "edge-7");
        assert_eq!(
            (reg["region"].as_str(), reg["zone"].as_str()),
            (Some("eu-west"), Some("eu-west-1b"))
        );
        assert_eq!(reg["capacity"]["maxModules"], 50);
        assert_eq!(reg["wasiSupport"], json!(["preview1", "preview2", "http"]));
        assert_eq!(
            reg["agentUrl"],
            format!("http://{}", host.agent_addr().unwrap())
        );
        let beat = &seen
            .iter()
            .find(|(p, ..)| p.ends_with("/heartbeat"))
            .unwrap()
            .2;
        assert_eq!(beat["nodeId"], "edge-7");
        assert_eq!(beat["loadedModules"], 1);
        assert_eq!(beat["services"][0]["name"], "hello");
        assert_eq!(beat["services"][0]["route"]["stable"], "v1");
        assert!(
            beat["services"][0]["versions"][0]["counters"]["calls"].is_u64(),
            "{beat}"
        );
    }

    // The control plane goes away: the node keeps serving.
    let _ = stop.send(true);
    first.await.unwrap();
    let url = format!("http://{}/hello/while-down", host.data_addr());
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // It comes back on the same address, having forgotten the node: the
    // first heartbeat gets a 404 and the node registers again, with the
    // calls it served meanwhile in its next heartbeat.
    let registrations = rec.count("/api/v1/wasm/nodes");
    let listener = TcpListener::bind(cp_addr).await.unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let second = tokio::spawn({
        let rec = rec.clone();
        async move { rec.serve(listener, rx).await }
    });
    wait_for("a second registration", || {
        rec.count("/api/v1/wasm/nodes") > registrations
    })
    .await;
    let beats = rec.count("/heartbeat");
    wait_for("a heartbeat after it", || rec.count("/heartbeat") > beats).await;
    let calls = {
        let seen = rec.seen.lock();
        let beat = &seen
            .iter()
            .rev()
            .find(|(p, ..)| p.ends_with("/heartbeat"))
            .unwrap()
            .2;
        beat["services"][0]["versions"][0]["counters"]["calls"]
            .as_u64()
            .unwrap()
    };
    assert!(calls >= 20, "{calls}");
    let _ = stop.send(true);
    second.await.unwrap();
    host.shutdown().await;
}
