//! Arbitrary request bodies into every control-plane route that takes one,
//! through the real router and an embedded store, as an admin: each answer
//! is a 2xx or a 4xx/503 with the API's error shape — never a 500, a panic
//! or a hang. The first byte picks the route; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

use wasmswap_control::api::{ApiSettings, AppState, router};
use wasmswap_control::auth::{Authenticator, Role, SigningKey};
use wasmswap_control::clock::Clock;
use wasmswap_control::rate::RateLimits;
use wasmswap_control::store::{Store, StoreConfig};

const ROUTES: &[(Method, &str)] = &[
    (Method::POST, "/api/v1/authentication/login"),
    (Method::POST, "/api/v1/wasm/modules"),
    (Method::POST, "/api/v1/wasm/nodes"),
    (Method::POST, "/api/v1/wasm/nodes/n1/heartbeat"),
    (Method::POST, "/api/v1/wasm/interfaces"),
    (
        Method::POST,
        "/api/v1/wasm/interfaces/acme:calc@1.0.0/validate",
    ),
    (Method::POST, "/api/v1/wasm/execute"),
    (Method::POST, "/api/v1/wasm/deployments"),
    (Method::POST, "/api/v1/wasm/deployments/dep-1/promote"),
    (Method::PUT, "/api/v1/wasm/services/calc/pins/region/eu"),
];

struct World {
    rt: tokio::runtime::Runtime,
    state: AppState,
    token: String,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::Hs256(b"fuzz-signing-key-0123456789abcdef".to_vec());
        let auth = || {
            Authenticator::new(
                &key,
                "wasmswap-control",
                3600,
                vec![],
                Some("fuzz-node-token-0123456789".into()),
            )
            .unwrap()
        };
        let token = auth().issue("admin", Role::Admin).unwrap().token;
        let state = rt.block_on(async {
            let store = Store::open(&StoreConfig::embedded(dir.path()), Clock::system())
                .await
                .unwrap();
            let settings = ApiSettings {
                rate_limits: RateLimits {
                    register: u32::MAX,
                    deploy: u32::MAX,
                    execute: u32::MAX,
                    read: u32::MAX,
                    write: u32::MAX,
                    login: u32::MAX,
                    node: u32::MAX,
                },
                ..Default::default()
            };
            AppState::new(store, auth(), "fuzz-node-token-0123456789".into(), settings).unwrap()
        });
        World {
            rt,
            state,
            token,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path) = &ROUTES[usize::from(pick) % ROUTES.len()];
    let w = world();
    let req = Request::builder()
        .method(method.clone())
        .uri(*path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", w.token))
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, bytes) = w.rt.block_on(async {
        let resp = router(w.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    assert!(
        status.as_u16() < 500 || status.as_u16() == 503,
        "{method} {path} {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e})"));
        assert!(
            v["error"]["code"].is_string(),
            "{method} {path} {status}: {v}"
        );
    }
});
