//! End-to-end: a real host on 127.0.0.1, driven over HTTP by a real client,
//! serving real guests built from source.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wasmswap_host::body::{full, json as json_resp};
use wasmswap_host::{Host, HostConfig};
use wasmswap_server as server;

const TOKEN: &str = "test-token-0123456789";

fn sha(bytes: &[u8]) -> String {
    wasmswap_host::fetch::sha256_hex(bytes)
}

/// A blob server: serves binaries at `/blobs/{sha}` until dropped.
struct Blobs {
    addr: std::net::SocketAddr,
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Blobs {
    async fn start() -> Blobs {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let served = blobs.clone();
        let handler = move |req: http::Request<wasmswap_server::Incoming>, _peer| {
            let served = served.clone();
            async move {
                let key = req.uri().path().trim_start_matches("/blobs/").to_string();
                match served.lock().get(&key) {
                    Some(b) => http::Response::new(full(b.clone())),
                    None => json_resp(
                        http::StatusCode::NOT_FOUND,
                        &json!({"error": "no such blob"}),
                    ),
                }
            }
        };
        tokio::spawn(server::serve(
            listener,
            handler,
            Default::default(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        Blobs { addr, blobs, stop }
    }

    /// Publishes `bytes` under `key` and returns its URL.
    fn put_as(&self, key: &str, bytes: Vec<u8>) -> String {
        self.blobs.lock().insert(key.to_string(), bytes);
        format!("http://{}/blobs/{key}", self.addr)
    }

    fn put(&self, bytes: Vec<u8>) -> (String, String) {
        let sha = sha(&bytes);
        (sha.clone(), self.put_as(&sha, bytes))
    }
}

impl Drop for Blobs {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(state_dir: Option<&std::path::Path>) -> Host {
    Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        state_dir: state_dir.map(Into::into),
        max_instances: 200,
        ..Default::default()
    })
    .await
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    data: String,
    agent: String,
}

impl Client {
    fn new(host: &Host) -> Client {
        Client {
            http: reqwest::Client::new(),
            data: format!("http://{}", host.data_addr()),
            agent: format!("http://{}", host.agent_addr().unwrap()),
        }
    }

    async fn agent(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.agent))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn load(
        &self,
        service: &str,
        version: &str,
        sha: &str,
        url: &str,
        limits: Value,
    ) -> (u16, Value) {
        let body = json!({"service": service, "version": version, "sha256": sha, "url": url, "limits": limits});
        self.agent(reqwest::Method::POST, "/v1/versions", Some(body))
            .await
    }

    async fn route(&self, service: &str, route: Value) -> (u16, Value) {
        self.agent(
            reqwest::Method::PUT,
            &format!("/v1/services/{service}/route"),
            Some(route),
        )
        .await
    }

    async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Result<(u16, String, String)> {
        let mut req = self.http.get(format!("{}{path}", self.data));
        if let Some(k) = key {
            req = req.header("x-wasmswap-key", k);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let version = resp
            .headers()
            .get("x-wasmswap-version")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Ok((status, version, resp.text().await?))
    }
}

/// Loads http-hello v1 and v2 into `hello` and routes to v1.
async fn hello(c: &Client, blobs: &Blobs) {
    for (label, path) in [
        ("v1", test_programs::HTTP_HELLO_V1_COMPONENT),
        ("v2", test_programs::HTTP_HELLO_V2_COMPONENT),
    ] {
        let (sha, url) = blobs.put(test_programs::bytes(path));
        let (status, body) = c.load("hello", label, &sha, &url, json!({})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = c.route("hello", json!({"stable": "v1"})).await;
    assert_eq!(status, 200, "{body}");
}

/// Loads the `hostile` module (whose `cpu_hog` makes a long call) into
/// `calc` under each label, with a long timeout and the whole CPU, and
/// routes to the first.
async fn calc(c: &Client, blobs: &Blobs, labels: &[&str]) {
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::HOSTILE_MODULE));
    for v in labels {
        let limits = json!({"timeoutMs": 20_000, "maxCpuPercent": 100});
        let (s, b) = c.load("calc", v, &sha, &url, limits).await;
        assert_eq!(s, 201, "{b}");
    }
    c.route("calc", json!({"stable": labels[0]})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_and_rollbacks_under_load_drop_nothing() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Arc::new(Client::new(&host));
    hello(&c, &blobs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for i in 0..4 {
        let (c, stop, ok, bad, errors, seen) = (
            c.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
            errors.clone(),
            seen.clone(),
        );
        let failures = failures.clone();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&format!("/hello/load/{i}"), None).await {
                    Ok((200, version, body)) => {
                        assert!(
                            body.starts_with(&format!("hello from {version} at /load/{i}")),
                            "{body}"
                        );
                        *seen.lock().entry(version).or_default() += 1;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, _, body)) => {
                        failures.lock().push(format!("{status}: {body}"));
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failures.lock().push(format!("connection error: {e}"));
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for _ in 0..200 {
        let (s, b) = c.route("hello", json!({"stable": "v2"})).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = c
            .agent(reqwest::Method::POST, "/v1/services/hello/rollback", None)
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["route"]["stable"], "v1");
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.await.unwrap();
    }
    let seen = seen.lock().clone();
    assert_eq!(
        (bad.load(Ordering::Relaxed), errors.load(Ordering::Relaxed)),
        (0, 0),
        "{:?}",
        failures.lock()
    );
    assert!(
        ok.load(Ordering::Relaxed) > 400,
        "only {} requests ran",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        seen.contains_key("v1") && seen.contains_key("v2"),
        "{seen:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_key_stays_on_one_version() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Client::new(&host);
    hello(&c, &blobs).await;
    let (s, b) = c
        .route(
            "hello",
            json!({"stable": "v1", "candidate": "v2", "weightPercent": 50.0}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut per_version: HashMap<String, u32> = HashMap::new();
    for user in 0..24 {
        let key = format!("user-{user}");
        let (_, first, _) = c.get("/hello/", Some(&key)).await.unwrap();
        for _ in 0..4 {
            let (status, v, _) = c.get("/hello/", Some(&key)).await.unwrap();
            assert_eq!((status, &v), (200, &first), "{key} moved");
        }
        *per_version.entry(first).or_default() += 1;
    }
    assert_eq!(
        per_version.len(),
        2,
        "both sides of a 50% split get keys: {per_version:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_version_drains_then_unloads() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Arc::new(Client::new(&host));
    calc(&c, &blobs, &["v1", "v2"]).await;
    // A long call on v1 …
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            let resp = c
                .http
                .post(format!("{}/_invoke/calc/cpu_hog", c.data))
                .json(&json!([3000]))
                .send()
                .await
                .unwrap();
            let v = resp.headers()["x-wasmswap-version"]
                .to_str()
                .unwrap()
                .to_string();
            (resp.status().as_u16(), v)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // v1 cannot be unloaded while it is routed …
    let (s, b) = c
        .agent(
            reqwest::Method::DELETE,
            "/v1/services/calc/versions/v1",
            None,
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in the current route"),
        "{b}"
    );
    // … so the route moves to v2 while the call still runs on v1.
    c.route("calc", json!({"stable": "v2"})).await;
    let (_, status) = c
        .agent(reqwest::Method::GET, "/v1/services/calc", None)
        .await;
    let v1 = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "v1")
        .unwrap()
        .clone();
    assert_eq!(
        (v1["role"].as_str(), v1["inFlight"].as_u64()),
        (Some("previous"), Some(1)),
        "{status}"
    );
    // An unload that may not wait long enough is refused, and changes nothing …
    let (s, b) = c
        .agent(
            reqwest::Method::DELETE,
            "/v1/services/calc/versions/v1?drainTimeoutMs=50",
            None,
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still has 1 call(s) in flight"),
        "{b}"
    );
    let (_, status) = c
        .agent(reqwest::Method::GET, "/v1/services/calc", None)
        .await;
    assert_eq!(
        status["previousRoute"]["stable"], "v1",
        "the rollback route is kept: {status}"
    );
    // … one that may, waits for the call, which finishes on v1.
    let (s, b) = c
        .agent(
            reqwest::Method::DELETE,
            "/v1/services/calc/versions/v1?drainTimeoutMs=20000",
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(slow.await.unwrap(), (200, "v1".to_string()));
    let (_, status) = c
        .agent(reqwest::Method::GET, "/v1/services/calc", None)
        .await;
    let versions: Vec<&str> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v2"]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_does_not_fail_another_service() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Arc::new(Client::new(&host));
    hello(&c, &blobs).await;
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::HOSTILE_MODULE));
    let (s, b) = c
        .load(
            "bad",
            "v1",
            &sha,
            &url,
            // 1 s, as in the control plane's hostile test: at 300 ms a memory
            // bomb on a loaded 2-vCPU CI machine (debug build, half a core by
            // the default CPU share) once timed out before reaching its limit.
            json!({"timeoutMs": 1000, "maxMemoryMB": 32}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    c.route("bad", json!({"stable": "v1"})).await;
    let attack = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for f in [
                "infinite_loop",
                "memory_bomb",
                "deep_recursion",
                "infinite_loop",
            ] {
                let resp = c
                    .http
                    .post(format!("{}/_invoke/bad/{f}", c.data))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                outcomes.push((
                    f,
                    status,
                    body["error"]["code"].as_str().unwrap().to_string(),
                ));
            }
            outcomes
        })
    };
    let mut good = 0;
    while !attack.is_finished() {
        let (status, version, _) = c.get("/hello/during-attack", None).await.unwrap();
        assert_eq!((status, version.as_str()), (200, "v1"));
        good += 1;
        // At a steady rate, not flat out: a bystander that keeps both cores
        // busy leaves the low-priority lane, where the hostile calls run
        // once they have computed for 10 ms, no CPU to reach its limits.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcomes = attack.await.unwrap();
    assert_eq!(
        outcomes,
        [
            ("infinite_loop", 504, "timeout".to_string()),
            ("memory_bomb", 500, "memory_limit".to_string()),
            ("deep_recursion", 500, "stack_overflow".to_string()),
            ("infinite_loop", 504, "timeout".to_string()),
        ]
    );
    assert!(good > 0);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_agent_requests_get_a_4xx_with_a_reason() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Client::new(&host);
    hello(&c, &blobs).await;
    let agent = |path: &str| format!("{}{path}", c.agent);

    // Missing and wrong tokens.
    let r = c.http.get(agent("/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c
        .http
        .get(agent("/v1/status"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c.http.get(agent("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        c.http.get(agent("/healthz")).send().await.unwrap().status(),
        200
    );

    let post = |path: &str, body: &'static str| {
        c.http
            .post(agent(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (post("/v1/versions", "{not json").await.unwrap(), 400, "invalid request body"),
        (post("/v1/versions", r#"{"service":"a","version":"v1","sha256":"00","bogus":1}"#).await.unwrap(), 400, "unknown field `bogus`"),
        (post("/v1/versions", r#"{"service":"a","version":"v1","sha256":"xyz"}"#).await.unwrap(), 400, "not 64 hex digits"),
        (post("/v1/versions", r#"{"service":"Bad Name","version":"v1","sha256":"00"}"#).await.unwrap(), 400, "not a valid name"),
        (
            post("/v1/versions", r#"{"service":"a","version":"v1","sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#).await.unwrap(),
            400,
            "no url was given",
        ),
        (post("/v1/services/nope/rollback", "").await.unwrap(), 404, "nope has no route"),
        (post("/v1/status", "").await.unwrap(), 405, "not allowed"),
        (post("/v1/nothing", "").await.unwrap(), 404, "no endpoint"),
    ];
    for (resp, status, needle) in cases {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{status}: {msg:?} lacks {needle:?}");
    }
    let (s, b) = c
        .route(
            "hello",
            json!({"stable": "v1", "candidate": "v2", "weightPercent": 150}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = c.route("hello", json!({"stable": "v9"})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{b}"
    );
    let big = "x".repeat(2 << 20);
    let r = c
        .http
        .post(agent("/v1/versions"))
        .bearer_auth(TOKEN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_whose_hash_does_not_match_is_refused() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Client::new(&host);
    hello(&c, &blobs).await;
    // The URL serves v2's bytes, but the load asks for another hash.
    let v1_sha = sha(&test_programs::bytes(
        test_programs::HTTP_HELLO_V1_COMPONENT,
    ));
    let wrong = blobs.put_as(
        "swapped",
        test_programs::bytes(test_programs::HTTP_HELLO_V2_COMPONENT),
    );
    let (s, b) = c.load("hello", "v3", &v1_sha, &wrong, json!({})).await;
    assert_eq!(s, 502, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("SHA-256"),
        "{b}"
    );
    let (s, _) = c
        .agent(reqwest::Method::GET, "/v1/services/hello", None)
        .await;
    assert_eq!(s, 200);
    let (status, version, _) = c.get("/hello/still", None).await.unwrap();
    assert_eq!((status, version.as_str()), (200, "v1"));
    let (_, st) = c
        .agent(reqwest::Method::GET, "/v1/services/hello", None)
        .await;
    assert_eq!(
        st["versions"].as_array().unwrap().len(),
        2,
        "v3 was not added: {st}"
    );
    // Loading a label again with other bytes is a conflict.
    let v2_sha = sha(&test_programs::bytes(
        test_programs::HTTP_HELLO_V2_COMPONENT,
    ));
    let (s, b) = c.load("hello", "v1", &v2_sha, &wrong, json!({})).await;
    assert_eq!(s, 409, "{b}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_serves_its_last_routes_with_no_control_plane() {
    let state = tempfile::tempdir().unwrap();
    {
        let blobs = Blobs::start().await;
        let host = start(Some(state.path())).await;
        let c = Client::new(&host);
        hello(&c, &blobs).await;
        let (s, b) = c
            .route(
                "hello",
                json!({"stable": "v1", "candidate": "v2", "weightPercent": 30}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        host.shutdown().await;
        // The blob server goes away with this scope: nothing can be fetched.
    }
    // The control plane it is told about is unreachable (nothing listens on
    // port 1): the node serves its saved routes anyway.
    let host = Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        state_dir: Some(state.path().into()),
        control_plane: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new(&host);
    let (_, st) = c
        .agent(reqwest::Method::GET, "/v1/services/hello", None)
        .await;
    assert_eq!(
        st["route"],
        json!({"stable": "v1", "candidate": "v2", "weightPercent": 30.0, "mode": "split", "mirrorSideEffects": false})
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let (status, v, _) = c
            .get("/hello/after-restart", Some(&format!("k{i}")))
            .await
            .unwrap();
        assert_eq!(status, 200);
        seen.insert(v);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_health_checks_and_metrics() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Client::new(&host);
    hello(&c, &blobs).await;
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::TYPES_COMPONENT));
    assert_eq!(c.load("types", "v1", &sha, &url, json!({})).await.0, 201);
    c.route("types", json!({"stable": "v1"})).await;

    let call = |f: &str, body: &'static str| {
        c.http
            .post(format!("{}/_invoke/types/{f}", c.data))
            .body(body)
            .send()
    };
    let r = call("add-u8", "[1, 2]").await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-wasmswap-version"].to_str().unwrap()
        ),
        (200, "v1")
    );
    assert_eq!(r.json::<Value>().await.unwrap(), json!(3));
    let r = call("wasmswap%3Aguests%2Fapi%400.1.0%23echo", r#"["hi"]"#)
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!("hi"));
    for (f, body, status, code) in [
        ("add-u8", "[300, 1]", 400, "bad_request"),
        ("add-u8", "[1,", 400, "bad_request"),
        ("no-such", "[]", 404, "not_found"),
    ] {
        let r = call(f, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{f} {body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    let r = c
        .http
        .get(format!("{}/_invoke/types/add-u8", c.data))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c
        .http
        .get(format!("{}/nowhere/x", c.data))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Health: a function, an HTTP path, and a failing path.
    let health = |svc: &str, v: &str, body: Value| {
        let path = format!("/v1/services/{svc}/versions/{v}/health");
        let c = &c;
        async move { c.agent(reqwest::Method::POST, &path, Some(body)).await }
    };
    let (s, h) = health("types", "v1", json!({})).await;
    assert_eq!((s, h["healthy"].as_bool()), (200, Some(true)), "{h}");
    let (_, h) = health(
        "hello",
        "v2",
        json!({"httpPath": "/health", "successThreshold": 3}),
    )
    .await;
    assert_eq!(
        (h["healthy"].as_bool(), h["successes"].as_u64()),
        (Some(true), Some(3)),
        "{h}"
    );
    let (_, h) = health(
        "hello",
        "v1",
        json!({"httpPath": "/fail", "failureThreshold": 2, "intervalMs": 10}),
    )
    .await;
    assert_eq!(
        (h["healthy"].as_bool(), h["failures"].as_u64()),
        (Some(false), Some(2)),
        "{h}"
    );
    assert!(
        h["checks"][0]["detail"].as_str().unwrap().contains("500"),
        "{h}"
    );

    for _ in 0..3 {
        c.get("/hello/m", None).await.unwrap();
    }
    let r = c
        .http
        .get(format!("{}/metrics", c.agent))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    for line in [
        "# TYPE wasm_functions_invoked_total counter",
        "wasm_modules_count 3",
        "wasm_functions_invoked_total{service=\"hello\",version=\"v1\"} ",
        "wasm_function_invoke_duration_bucket{service=\"types\",version=\"v1\",le=\"+Inf\"} ",
        "wasm_function_errors_total{service=\"types\",version=\"v1\",kind=\"bad_request\"} ",
        "wasm_module_load_duration_count{source=\"compiled\"} 3",
        "wasm_route_weight_percent{service=\"hello\",version=\"v1\"} 100",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
    let hello_calls: u64 = text
        .lines()
        .find(|l| l.starts_with("wasm_functions_invoked_total{service=\"hello\",version=\"v1\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(hello_calls >= 3, "{hello_calls}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_capacity_refuses_another_version() {
    let blobs = Blobs::start().await;
    let host = Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        max_modules: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new(&host);
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT));
    assert_eq!(c.load("hello", "v1", &sha, &url, json!({})).await.0, 201);
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::HTTP_HELLO_V2_COMPONENT));
    let (s, b) = c.load("hello", "v2", &sha, &url, json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (507, Some("at_capacity")),
        "{b}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_and_the_outbound_allowlist() {
    let blobs = Blobs::start().await;
    // The guest GETs `/`, which the blob server looks up as `/`.
    blobs.put_as("/", b"upstream says hi".to_vec());
    let host = start(None).await;
    let c = Client::new(&host);
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT));
    let allowed = blobs.addr.to_string();
    let body = json!({"service": "hello", "version": "v1", "sha256": sha, "url": url,
        "capabilities": {"outboundHttp": [allowed]}});
    let (s, b) = c
        .agent(reqwest::Method::POST, "/v1/versions", Some(body))
        .await;
    assert_eq!(s, 201, "{b}");
    c.route("hello", json!({"stable": "v1"})).await;

    // HTTP/2 (prior knowledge, as a sidecar or load balancer would speak it).
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{}/hello/over-h2", c.data))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_2)
    );
    assert_eq!(r.headers()["x-wasmswap-version"], "v1");

    // The guest may reach the granted host, and nothing else.
    let (status, _, body) = c
        .get(&format!("/hello/fetch?{allowed}"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "fetched 200: upstream says hi")
    );
    let (status, _, body) = c.get("/hello/fetch?127.0.0.1:1", None).await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_cookies_and_mirrors() {
    let blobs = Blobs::start().await;
    let host = Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        hosts: [("hello.example.test".to_string(), "hello".to_string())].into(),
        sticky: wasmswap_host::StickyKey::Cookie("session".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new(&host);
    hello(&c, &blobs).await;

    // A configured Host name routes to its service; the guest sees the whole path.
    let r = c
        .http
        .get(format!("{}/any/path", c.data))
        .header("host", "hello.example.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from v1 at /any/path\n");
    // An unknown name falls back to the path: `/any/…` is no service.
    let r = c
        .http
        .get(format!("{}/any/path", c.data))
        .header("host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The sticky key comes from the cookie (quoted or not).
    c.route(
        "hello",
        json!({"stable": "v1", "candidate": "v2", "weightPercent": 50}),
    )
    .await;
    let mut sides = std::collections::HashSet::new();
    for user in 0..16 {
        let mut first = None;
        for cookie in [
            format!("a=1; session={user}"),
            format!("session=\"{user}\"; b=2"),
        ] {
            let r = c
                .http
                .get(format!("{}/hello/", c.data))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let v = r.headers()["x-wasmswap-version"]
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(first.get_or_insert(v.clone()), &v, "user {user} moved");
        }
        sides.insert(first.unwrap());
    }
    assert_eq!(sides.len(), 2);

    // A mirror: the stable version answers everything.
    let (s, b) = c
        .route(
            "hello",
            json!({"stable": "v1", "candidate": "v2", "weightPercent": 100, "mode": "mirror"}),
        )
        .await;
    assert_eq!(
        (s, b["route"]["mode"].as_str()),
        (200, Some("mirror")),
        "{b}"
    );
    for _ in 0..5 {
        let (status, v, _) = c.get("/hello/", None).await.unwrap();
        assert_eq!((status, v.as_str()), (200, "v1"));
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_stalled_requests_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let blobs = Blobs::start().await;
    let host = Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
        header_read_timeout: Duration::from_millis(300),
        max_invoke_body: 1024,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::new(&host);
    let (sha, url) = blobs.put(test_programs::bytes(test_programs::TYPES_COMPONENT));
    c.load("types", "v1", &sha, &url, json!({})).await;
    c.route("types", json!({"stable": "v1"})).await;
    let big = format!("[\"{}\"]", "x".repeat(4096));
    let r = c
        .http
        .post(format!("{}/_invoke/types/greet", c.data))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    // Slow loris on both listeners: silence, half a request line, half an
    // HTTP/2 preface — each connection is closed after the header timeout.
    for addr in [host.data_addr(), host.agent_addr().unwrap()] {
        for sent in [&b""[..], b"GET / HT", b"PRI * HTTP/2.0\r\n"] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(sent).await.unwrap();
            let started = std::time::Instant::now();
            let mut buf = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("the server closes a stalled connection")
                .unwrap_or(0);
            let answer = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(
                n == 0 || answer.starts_with("HTTP/1.1 408"),
                "{sent:?}: {answer:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(3), "{sent:?}");
        }
        // Headers past hyper's buffer: 431, and the connection is closed.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(512 * 1024)
        );
        s.write_all(huge.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    }
    // And the node still serves.
    let r = c
        .http
        .post(format!("{}/_invoke/types/add-u8", c.data))
        .body("[2,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!(4));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_call_finish() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Arc::new(Client::new(&host));
    calc(&c, &blobs, &["v1"]).await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move {
            let r = c
                .http
                .post(format!("{}/_invoke/calc/cpu_hog", c.data))
                .json(&json!([1500]))
                .send()
                .await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = host.data_addr();
    host.shutdown().await;
    let (status, body) = call.await.unwrap().expect("the call was not cut off");
    assert_eq!(status, 200, "{body}");
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_binary_is_fetched_again_on_restart() {
    let state = tempfile::tempdir().unwrap();
    let blobs = Blobs::start().await;
    let bytes = test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT);
    let (sha, url) = blobs.put(bytes);
    {
        let host = start(Some(state.path())).await;
        let c = Client::new(&host);
        assert_eq!(c.load("hello", "v1", &sha, &url, json!({})).await.0, 201);
        c.route("hello", json!({"stable": "v1"})).await;
        host.shutdown().await;
    }
    let stored = state.path().join("artifacts").join(format!("{sha}.wasm"));
    let mut corrupt = std::fs::read(&stored).unwrap();
    corrupt[100] ^= 0xff;
    std::fs::write(&stored, corrupt).unwrap();

    let host = start(Some(state.path())).await;
    let c = Client::new(&host);
    let (status, version, _) = c.get("/hello/again", None).await.unwrap();
    assert_eq!((status, version.as_str()), (200, "v1"));
    assert_eq!(
        sha_of_file(&stored),
        sha,
        "the store holds the good bytes again"
    );
    host.shutdown().await;
}

fn sha_of_file(p: &std::path::Path) -> String {
    sha(&std::fs::read(p).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unload_loses_to_a_rollback_that_needs_the_version() {
    let blobs = Blobs::start().await;
    let host = start(None).await;
    let c = Arc::new(Client::new(&host));
    calc(&c, &blobs, &["v1", "v2"]).await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move {
            c.http
                .post(format!("{}/_invoke/calc/cpu_hog", c.data))
                .json(&json!([1500]))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.route("calc", json!({"stable": "v2"})).await;
    // The unload of v1 waits for the call; meanwhile v1 is rolled back in.
    let unload = {
        let c = c.clone();
        tokio::spawn(async move {
            c.agent(
                reqwest::Method::DELETE,
                "/v1/services/calc/versions/v1?drainTimeoutMs=20000",
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, b) = c
        .agent(reqwest::Method::POST, "/v1/services/calc/rollback", None)
        .await;
    assert_eq!((s, b["route"]["stable"].as_str()), (200, Some("v1")), "{b}");
    let (s, b) = unload.await.unwrap();
    assert_eq!(s, 409, "{b}");
    assert_eq!(call.await.unwrap(), 200);
    // v1 is still loaded and serving.
    let r = c
        .http
        .post(format!("{}/_invoke/calc/cpu_hog", c.data))
        .json(&json!([1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-wasmswap-version"], "v1");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_services_restart_with_their_state() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::copy(test_programs::HTTP_HELLO_V1_COMPONENT, &app).unwrap();
    let config = || HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        state_dir: Some(state.path().into()),
        services: vec![("hello".into(), app.clone())],
        ..Default::default()
    };
    let answer = |host: &Host| {
        let url = format!("http://{}/hello/", host.data_addr());
        async move {
            let r = reqwest::get(url).await.unwrap();
            (
                r.status().as_u16(),
                r.headers()["x-wasmswap-version"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        }
    };
    let host = Host::start(config()).await.unwrap();
    assert_eq!(answer(&host).await, (200, "v1".to_string()));
    host.shutdown().await;
    // Same file: the restored v1 serves again.
    let host = Host::start(config()).await.unwrap();
    assert_eq!(answer(&host).await, (200, "v1".to_string()));
    host.shutdown().await;
    // A new build while it was down: the next number, not a clash with v1.
    std::fs::copy(test_programs::HTTP_HELLO_V2_COMPONENT, &app).unwrap();
    let host = Host::start(config()).await.unwrap();
    assert_eq!(answer(&host).await, (200, "v2".to_string()));
    host.shutdown().await;
}
