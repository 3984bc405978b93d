//! The control plane's listener on a real socket: clients that stall before
//! their headers, oversized headers and oversized bodies are cut off, and
//! the API keeps serving everyone else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wasmswap_control::api::ApiSettings;
use wasmswap_control::auth::Role;

use super::common::OnSocket;

/// Sends `bytes`, then reads what the server answers before it closes the
/// connection (at most 5 s).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server did not close the connection");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn stalled_and_oversized_requests_are_cut_off() {
    let cp_ = OnSocket::start(
        |url| ApiSettings {
            public_url: url,
            header_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        None,
    )
    .await;
    let (app, addr) = (&cp_.app, cp_.addr);

    // Slow loris: silence, half a request line, half an HTTP/2 preface, all
    // headers but the blank line. Each is closed after the header timeout.
    for sent in [
        &b""[..],
        b"GET /api/v1/health HT",
        b"PRI * HTTP/2.0\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n",
    ] {
        let (answer, took) = exchange(addr, sent).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{sent:?}: {answer:?}"
        );
        assert!(took < Duration::from_secs(3), "{sent:?} took {took:?}");
    }

    // Headers past hyper's buffer, and too many of them: 431.
    let huge = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let (answer, _) = exchange(addr, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (answer, _) = exchange(addr, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");

    // A body past the JSON limit (1 MiB), declared or streamed: 413 with
    // the API's error shape, before the body is read to its end.
    let http = reqwest::Client::new();
    let token = app.token(Role::Admin).to_string();
    let big = vec![b' '; 2 << 20];
    let r = http
        .post(format!("http://{addr}/api/v1/wasm/deployments"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let chunks = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = http
        .post(format!("http://{addr}/api/v1/wasm/deployments"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Everyone else is still served.
    let r = http
        .get(format!("http://{addr}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    cp_.stop().await;
}
