//! The example configuration parses, and the binary's first start makes
//! its secrets and serves with them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmswap_control::ControlConfig;
use wasmswap_control::store::BlobConfig;

#[test]
fn example_config_parses_with_the_documented_defaults() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/control.toml"
    ))
    .unwrap();
    let c = ControlConfig::from_toml(&text).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.heartbeat_timeout(), Duration::from_secs(30));
    assert_eq!(c.rate_limits, wasmswap_control::rate::RateLimits::default());
    let store = c.store_config();
    assert!(store.database_url.starts_with("sqlite://"));
    assert_eq!(store.keep_versions, 5);
    assert!(matches!(store.blobs, BlobConfig::Dir(_)));
    // Unknown keys are refused, not ignored.
    let err = ControlConfig::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 5").unwrap_err();
    assert!(err.to_string().contains("listen_port"), "{err}");
}

#[tokio::test]
async fn first_start_generates_secrets_and_admin_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmswap-control"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = dir.path().join("data");
    for secret in ["admin-password", "jwt-secret", "node-token"] {
        let meta = std::fs::metadata(data.join(secret)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{secret} is private"
        );
    }
    let password = std::fs::read_to_string(data.join("admin-password")).unwrap();
    let r = http
        .post(format!("{base}/api/v1/authentication/login"))
        .json(&serde_json::json!({"username": "admin", "password": password.trim()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    assert_eq!(token["user"]["role"], "admin");
    // The node token authenticates as a node.
    let node_token = std::fs::read_to_string(data.join("node-token")).unwrap();
    let r = http
        .post(format!("{base}/api/v1/wasm/nodes"))
        .bearer_auth(node_token.trim())
        .json(&super::nodes::registration("n1", "eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // SIGTERM: a clean stop.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // hash-password prints a PHC string that verifies.
    let mut hp = Command::new(env!("CARGO_BIN_EXE_wasmswap-control"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    hp.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    let out = hp.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}
