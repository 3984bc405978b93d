//! A control plane built in-process over a temporary embedded store, with
//! one user per role, and helpers to call its router without a socket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use wasmswap_control::api::{ApiSettings, AppState, router};
use wasmswap_control::auth::{Authenticator, Role, SigningKey, UserConfig, hash_password};
use wasmswap_control::clock::Clock;
use wasmswap_control::rate::RateLimits;
use wasmswap_control::store::{Store, StoreConfig};
use wasmswap_host::{Host, HostConfig};

pub const NODE_TOKEN: &str = "node-token-0123456789abcdef";
pub const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes-or-more";
/// Clock start: 2026-11-28T00:00:00Z.
pub const T0: i64 = 1_795_824_000_000;

pub fn users() -> Vec<UserConfig> {
    // One hash for all: argon2 is slow by design, and the test only needs
    // distinct names and roles.
    let hash = hash_password("secret-pw");
    Role::ALL
        .iter()
        .map(|r| UserConfig {
            username: r.as_str().to_string(),
            password_hash: hash.clone(),
            role: *r,
        })
        .collect()
}

pub fn authenticator(key: &SigningKey, users: Vec<UserConfig>) -> Authenticator {
    Authenticator::new(
        key,
        "wasmswap-control",
        3600,
        users,
        Some(NODE_TOKEN.into()),
    )
    .unwrap()
}

/// Budgets no ordinary test reaches.
pub fn generous() -> RateLimits {
    RateLimits {
        register: 100_000,
        deploy: 100_000,
        execute: 100_000,
        read: 100_000,
        write: 100_000,
        login: 100_000,
        node: 100_000,
    }
}

/// An answer, parsed.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
}

impl Resp {
    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts an error answer in the API's one shape with this code.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Self {
        let r = self.expect(status);
        let e = &r.json["error"];
        assert_eq!(e["code"], code, "body: {}", r.json);
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            r.json
        );
        assert!(e.get("details").is_some(), "{}", r.json);
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{}",
            r.json
        );
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(e["requestId"], id, "error body names the request");
        r
    }
}

pub struct TestApp {
    pub state: AppState,
    pub app: Router,
    pub clock: Clock,
    pub tokens: HashMap<Role, String>,
    pub _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Over a fresh embedded store.
    pub async fn new() -> Self {
        Self::with_limits(generous()).await
    }

    pub async fn with_limits(limits: RateLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::embedded(dir.path());
        let mut app = Self::build(config, limits, ApiSettings::default()).await;
        app._dir = Some(dir);
        app
    }

    pub async fn build(config: StoreConfig, limits: RateLimits, settings: ApiSettings) -> Self {
        Self::build_clocked(config, limits, settings, Clock::manual(T0)).await
    }

    pub async fn build_clocked(
        config: StoreConfig,
        limits: RateLimits,
        mut settings: ApiSettings,
        clock: Clock,
    ) -> Self {
        let store = Store::open(&config, clock.clone()).await.unwrap();
        let users = users();
        let key = SigningKey::Hs256(SECRET.to_vec());
        settings.rate_limits = limits;
        let state = AppState::new(
            store,
            authenticator(&key, users.clone()),
            NODE_TOKEN.into(),
            settings,
        )
        .unwrap();
        let auth = authenticator(&key, users);
        let tokens = Role::ALL
            .iter()
            .map(|r| (*r, auth.issue(r.as_str(), *r).unwrap().token))
            .collect();
        TestApp {
            app: router(state.clone()),
            state,
            clock,
            tokens,
            _dir: None,
        }
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// A request with an optional bearer token and a body of a content type.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    pub async fn get(&self, path: &str, role: Role) -> Resp {
        self.call(Method::GET, path, Some(self.token(role)), None, vec![])
            .await
    }

    pub async fn post(&self, path: &str, role: Role, body: &Value) -> Resp {
        self.call(
            Method::POST,
            path,
            Some(self.token(role)),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str, role: Role) -> Resp {
        self.call(Method::DELETE, path, Some(self.token(role)), None, vec![])
            .await
    }

    /// Registers `bytes` as `name` `version` through the JSON API.
    pub async fn register(&self, name: &str, version: &str, bytes: &[u8]) -> Resp {
        use base64::Engine as _;
        self.post(
            "/api/v1/wasm/modules",
            Role::Developer,
            &serde_json::json!({
                "name": name,
                "version": version,
                "wasmBinary": base64::engine::general_purpose::STANDARD.encode(bytes),
            }),
        )
        .await
    }
}

/// A tiny distinct module: `f` returns `n`.
pub fn module_returning(n: i64) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (func (export "f") (result i64) i64.const {n}))"#
    ))
    .unwrap()
}

/// A real node on 127.0.0.1 that registers with the control plane at `cp`.
pub async fn start_node(id: &str, region: &str, cp: &str) -> Host {
    Host::start(HostConfig {
        node_id: id.into(),
        region: region.into(),
        zone: format!("{region}-a"),
        listen: ([127, 0, 0, 1], 0).into(),
        agent: Some((([127, 0, 0, 1], 0).into(), NODE_TOKEN.into())),
        control_plane: Some(cp.to_string()),
        heartbeat_interval: Duration::from_millis(100),
        max_modules: 20,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Set in a process of this test binary run again to be one edge node;
/// holds that node's [`NodeSpec`] as JSON.
const NODE_PROCESS_ENV: &str = "WASMSWAP_TEST_NODE_PROCESS";

/// What a [`NodeProcess`] runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeSpec {
    id: String,
    region: String,
    control_plane: String,
    /// Where the node writes its data plane's address once it serves.
    addr_file: std::path::PathBuf,
}

/// A real edge node in a process of its own — this test binary run again,
/// its one test [`node_process`] — so that a test can `SIGKILL` it: no
/// graceful shutdown, its sockets reset by the kernel, no goodbye to the
/// control plane. Killed when dropped.
pub struct NodeProcess {
    child: std::process::Child,
    /// Its data plane.
    pub data_addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts node `id` in `region` against the control plane at `cp`, and
    /// waits until it serves.
    pub async fn start(id: &str, region: &str, cp: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = NodeSpec {
            id: id.into(),
            region: region.into(),
            control_plane: cp.into(),
            addr_file: dir.path().join("addr"),
        };
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "common::node_process",
                "--ignored",
                "--nocapture",
            ])
            .env(NODE_PROCESS_ENV, serde_json::to_string(&spec).unwrap())
            // Its stdin closing (this process gone) ends it.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut node = NodeProcess {
            child,
            data_addr: ([127, 0, 0, 1], 0).into(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&spec.addr_file) {
                node.data_addr = addr.parse().unwrap();
                return node;
            }
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("node process {id} exited: {status}");
            }
            assert!(Instant::now() < deadline, "node process {id} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it with `SIGKILL` and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Not a test: the body of a [`NodeProcess`], run only in a process that
/// has [`NODE_PROCESS_ENV`] set (elsewhere it returns at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the edge node a NodeProcess runs, not a test"]
async fn node_process() {
    let Ok(spec) = std::env::var(NODE_PROCESS_ENV) else {
        return;
    };
    let spec: NodeSpec = serde_json::from_str(&spec).unwrap();
    std::thread::spawn(|| {
        // EOF or an error: the test process that started this one is gone.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let host = start_node(&spec.id, &spec.region, &spec.control_plane).await;
    let tmp = spec.addr_file.with_extension("tmp");
    std::fs::write(&tmp, host.data_addr().to_string()).unwrap();
    std::fs::rename(&tmp, &spec.addr_file).unwrap();
    std::future::pending::<()>().await;
}

/// Waits until `n` nodes are healthy.
pub async fn wait_nodes(app: &TestApp, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .get("/api/v1/wasm/nodes?status=healthy", Role::Viewer)
            .await;
        if r.json.as_array().is_some_and(|a| a.len() >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not register: {}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a deployment from `spec` as an admin and starts it; its id.
pub async fn start_deployment(app: &TestApp, spec: &Value) -> String {
    let r = app
        .post("/api/v1/wasm/deployments", Role::Admin, spec)
        .await
        .expect(StatusCode::CREATED);
    let id = r.json["deploymentId"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/wasm/deployments/{id}/execute"),
        Role::Admin,
        &serde_json::json!({}),
    )
    .await
    .expect(StatusCode::OK);
    id
}

/// The deployment `id` as the API shows it.
pub async fn deployment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/wasm/deployments/{id}"), Role::Viewer)
        .await
        .expect(StatusCode::OK)
        .json
}

/// Whether a deployment has stopped moving (done, undone, or waiting for
/// someone).
pub fn settled(d: &Value) -> bool {
    matches!(
        d["status"].as_str(),
        Some("completed" | "rolled_back" | "failed" | "paused")
    )
}

/// Polls the deployment until it settles (at most 120 s).
pub async fn wait_settled(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = deployment(app, id).await;
        if settled(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "deployment stuck: {d:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A control plane serving on a real socket on 127.0.0.1, with an embedded
/// store in a temporary directory.
pub struct OnSocket {
    pub app: TestApp,
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl OnSocket {
    /// Starts one; `settings` gets the public URL and fills in the rest.
    /// With `clock` `None` the clock stands still (nodes stay healthy
    /// unless a test moves it).
    pub async fn start(settings: impl FnOnce(String) -> ApiSettings, clock: Option<Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let config = StoreConfig::embedded(dir.path());
        let clock = clock.unwrap_or_else(|| Clock::manual(T0));
        let app = TestApp::build_clocked(config, generous(), settings(url.clone()), clock).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(wasmswap_control::serve_state(
            listener,
            app.state.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        OnSocket {
            app,
            url,
            addr,
            stop,
            server,
            _dir: dir,
        }
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}
