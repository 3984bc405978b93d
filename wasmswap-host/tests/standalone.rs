//! The `wasmswap-host` binary in standalone mode: serves a component file,
//! hot-reloads it when the file changes without failing a request, and
//! stops cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Result<(u16, String)> {
    let r = client.get(url).send().await?;
    let status = r.status().as_u16();
    let v = r
        .headers()
        .get("x-wasmswap-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    r.text().await?;
    Ok((status, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_file_hot_reloads_it_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.wasm");
    std::fs::copy(test_programs::HTTP_HELLO_V1_COMPONENT, &app).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_wasmswap-host"))
        .arg("--service")
        .arg(format!("hello={}", app.display()))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-format")
        .arg("json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let url = format!("http://127.0.0.1:{port}/hello/x");
    let client = reqwest::Client::new();

    // Up within a few seconds (it compiles the component first).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, v)) = get(&client, &url).await {
            assert_eq!(v, "v1");
            break;
        }
        assert!(Instant::now() < deadline, "the host did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replace the file under continuous requests.
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut swapped = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp = dir.path().join("app.wasm.new");
    std::fs::copy(test_programs::HTTP_HELLO_V2_COMPONENT, &tmp).unwrap();
    std::fs::rename(&tmp, &app).unwrap();
    let mut after_swap = 0;
    while after_swap < 20 {
        assert!(Instant::now() < deadline, "no reload within 60 s");
        match get(&client, &url).await {
            Ok((200, v)) => {
                ok += 1;
                if v == "v2" {
                    swapped = true;
                }
                if swapped {
                    assert_eq!(v, "v2", "after the swap every request sees the new version");
                    after_swap += 1;
                }
            }
            _ => failed += 1,
        }
    }
    assert_eq!(failed, 0, "{ok} ok");

    // SIGTERM: the process finishes and exits 0.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmswap-host"))
            .args(args)
            .env_remove("WASMSWAP_AGENT_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--service", "no-equals-sign"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("use NAME=PATH"), "{err}");
    let (code, err) = run(&["--agent-listen", "127.0.0.1:0"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("needs a token"), "{err}");
    let (code, err) = run(&["--agent-token", "short"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("at least 16 characters"), "{err}");
    let (code, err) = run(&[
        "--service",
        "hello=/nonexistent/app.wasm",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("/nonexistent/app.wasm"), "{err}");
}
