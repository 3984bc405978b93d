//! Crash safety of the embedded store: the control-plane binary registers
//! modules under load and is killed with SIGKILL at random moments, many
//! times. Afterwards every acknowledged module is present and intact and no
//! module row names a missing binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;
use wasmswap_control::clock::Clock;
use wasmswap_control::store::{Store, StoreConfig};

use super::common::module_returning;

const CYCLES: usize = 25;
const CLIENTS: usize = 3;

fn config(dir: &std::path::Path, port: u16) -> String {
    let hash = wasmswap_control::auth::hash_password("crash-pw");
    format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
[auth]
jwt_secret = "crash-test-secret-crash-test-secret-0123"
node_token = "crash-node-token-0123456789"
[[auth.users]]
username = "ci"
password_hash = "{hash}"
role = "developer"
[rate_limits]
register = 1000000
read = 1000000
login = 1000000
"#,
        data = dir.join("data").display()
    )
}

fn spawn(config_path: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wasmswap-control"))
        .arg("--config")
        .arg(config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "control plane did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let r: serde_json::Value = http
        .post(format!("{base}/api/v1/authentication/login"))
        .json(&json!({"username": "ci", "password": "crash-pw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

// The run's figures go to the test output.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_registrations_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config_path = dir.path().join("control.toml");
    std::fs::write(&config_path, config(dir.path(), port)).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // (module id, checksum) of every 201 received.
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut attempted = 0usize;
    let mut next = 0i64;
    for cycle in 0..CYCLES {
        let mut child = spawn(&config_path);
        wait_up(&http, &base).await;
        let token = login(&http, &base).await;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            let start = next + (c as i64) * 100_000;
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut tried = 0;
                for i in start.. {
                    // One name each: retention (5 versions per name) must
                    // not remove what this test checks for.
                    let name = format!("crash-{cycle}-{c}-{i}");
                    let body = module_returning(i);
                    tried += 1;
                    let sent = http
                        .post(format!(
                            "{base}/api/v1/wasm/modules?name={name}&version=1.0.0"
                        ))
                        .bearer_auth(&token)
                        .header("content-type", "application/wasm")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let m: serde_json::Value = r.json().await.unwrap_or_default();
                            if let (Some(id), Some(sum)) =
                                (m["moduleId"].as_str(), m["checksum"].as_str())
                            {
                                acked.push((id.to_string(), sum.to_string()));
                            }
                        }
                        Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                        // The process died under us.
                        Err(_) => return (acked, tried),
                    }
                }
                unreachable!()
            }));
        }
        next += 1000;
        let pause = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            let (a, tried) = t.await.unwrap();
            attempted += tried;
            acked.extend(a);
        }
    }
    assert!(
        acked.len() >= CYCLES,
        "too few registrations to mean anything: {}",
        acked.len()
    );

    // After the last kill: every acknowledged module is there and its
    // binary verifies, through the API...
    let mut child = spawn(&config_path);
    wait_up(&http, &base).await;
    let token = login(&http, &base).await;
    for (id, checksum) in &acked {
        let r = http
            .get(format!("{base}/api/v1/wasm/modules/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged {id} is gone");
        let m: serde_json::Value = r.json().await.unwrap();
        assert_eq!(m["checksum"], checksum.as_str());
        let bin = http
            .get(format!("{base}/api/v1/wasm/binaries/{checksum}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(bin.status(), 200, "{id}'s binary");
        assert_eq!(
            wasmswap_control::store::checksum(&bin.bytes().await.unwrap()),
            *checksum
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // ...and in the store itself: no module row names a missing or
    // corrupt binary (acknowledged or not).
    let store = Store::open(
        &StoreConfig::embedded(&dir.path().join("data")),
        Clock::system(),
    )
    .await
    .unwrap();
    let bad = store.verify_modules().await.unwrap();
    assert!(bad.is_empty(), "rows pointing at bad binaries: {bad:?}");
    let (all, total) = store
        .list_modules(&wasmswap_control::store::ModuleFilter {
            name: None,
            status: None,
            limit: 1,
            offset: 0,
        })
        .await
        .unwrap();
    drop(all);
    assert!(
        total as usize >= acked.len(),
        "{total} rows for {} acknowledged",
        acked.len()
    );
    eprintln!(
        "{CYCLES} kills, {attempted} registrations attempted, {} acknowledged, all intact",
        acked.len()
    );
}
