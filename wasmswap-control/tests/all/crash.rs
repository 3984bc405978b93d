//! Crash safety of the embedded store: the control-plane binary registers
//! modules (many sharing binaries), deletes some and sweeps unused
//! binaries every 50 ms with no grace period, and is killed with SIGKILL
//! at random moments, many times. Afterwards every acknowledged module that
//! was not deleted is present and intact, no module row names a missing
//! binary, and every binary can be registered again.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::json;
use wasmswap_control::clock::Clock;
use wasmswap_control::store::{Store, StoreConfig};

use super::common::module_returning;

const CYCLES: usize = 25;
const CLIENTS: usize = 2;
/// Distinct binaries: registrations reuse them, so deduplication, deletes
/// and the sweeper meet on the same objects.
const BINARIES: i64 = 12;

fn config(dir: &std::path::Path, port: u16) -> String {
    let hash = wasmswap_control::auth::hash_password("crash-pw");
    format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
blob_grace_secs = 0
housekeeping_interval_ms = 50
[auth]
jwt_secret = "crash-test-secret-crash-test-secret-0123"
node_token = "crash-node-token-0123456789"
[[auth.users]]
username = "ci"
password_hash = "{hash}"
role = "admin"
[rate_limits]
register = 1000000
read = 1000000
write = 1000000
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
async fn sigkill_during_registrations_deletes_and_sweeps_loses_nothing() {
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
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // Modules a delete was sent for (whatever its answer).
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut attempted = 0usize;
    for cycle in 0..CYCLES {
        let mut child = spawn(&config_path);
        wait_up(&http, &base).await;
        let token = login(&http, &base).await;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (http, base, token, acked) =
                (http.clone(), base.clone(), token.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut tried = 0;
                for i in 0.. {
                    // One name each: retention (5 versions per name) must
                    // not remove what this test checks for.
                    let name = format!("crash-{cycle}-{c}-{i}");
                    let body = module_returning(rand::rng().random_range(0..BINARIES));
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
                                acked
                                    .lock()
                                    .unwrap()
                                    .push((id.to_string(), sum.to_string()));
                            }
                        }
                        // Waiting out a sweep of this very binary.
                        Ok(r) if r.status() == 503 => {}
                        Ok(r) => panic!(
                            "unexpected status {} before the kill: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        ),
                        // The process died under us.
                        Err(_) => return tried,
                    }
                }
                unreachable!()
            }));
        }
        // A deleter: unreferenced binaries are what the sweeper removes.
        let deleter = {
            let (http, base, token, acked, deleted) = (
                http.clone(),
                base.clone(),
                token.clone(),
                acked.clone(),
                deleted.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let victim = {
                        let acked = acked.lock().unwrap();
                        if acked.is_empty() {
                            None
                        } else {
                            Some(acked[rand::rng().random_range(0..acked.len())].0.clone())
                        }
                    };
                    let Some(victim) = victim else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    deleted.lock().unwrap().insert(victim.clone());
                    let r = http
                        .delete(format!("{base}/api/v1/wasm/modules/{victim}"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    match r {
                        Ok(r) => assert!(
                            matches!(r.status().as_u16(), 204 | 404),
                            "delete: {}",
                            r.status()
                        ),
                        Err(_) => return,
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let pause = rand::rng().random_range(50..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for t in tasks {
            attempted += t.await.unwrap();
        }
        deleter.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    let kept: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !deleted.contains(id))
        .collect();
    assert!(
        kept.len() >= CYCLES,
        "too few registrations to mean anything: {}",
        kept.len()
    );
    assert!(!deleted.is_empty());

    // After the last kill: every acknowledged module that was not deleted is
    // there and its binary verifies, through the API...
    let mut child = spawn(&config_path);
    wait_up(&http, &base).await;
    let token = login(&http, &base).await;
    for (id, checksum) in &kept {
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
    // ...and every binary, swept or not, registers again.
    for n in 0..BINARIES {
        let r = http
            .post(format!(
                "{base}/api/v1/wasm/modules?name=again-{n}&version=1.0.0"
            ))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(module_returning(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "binary {n} registers again");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // In the store itself: no module row names a missing or corrupt binary
    // (acknowledged or not), and no interrupted upload is left behind.
    let data = dir.path().join("data");
    let store = Store::open(&StoreConfig::embedded(&data), Clock::system())
        .await
        .unwrap();
    let bad = store.verify_modules().await.unwrap();
    assert!(bad.is_empty(), "rows pointing at bad binaries: {bad:?}");
    let staged: Vec<_> = std::fs::read_dir(data.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains('#'))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    eprintln!(
        "{CYCLES} kills, {attempted} registrations attempted, {} acknowledged, {} deleted, all intact",
        acked.len(),
        deleted.len()
    );
}
