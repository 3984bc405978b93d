//! The listener's deadlines over real sockets: headers are timed from their
//! first byte, an idle kept-alive connection lives for the idle timeout, and
//! a client reusing its pooled connection never loses a request to a close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmswap_server::{ServerLimits, serve};

/// Serves "ok" (after `?sleep=MS` milliseconds) until the test ends.
async fn server(header: Duration, idle: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = |mut req: http::Request<wasmswap_server::Incoming>, _peer| async move {
        let tunnel = req.method() == http::Method::CONNECT;
        if tunnel || req.headers().get("upgrade").is_some_and(|v| v == "echo") {
            // An upgraded connection (or a tunnel) echoes what it gets.
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = hyper_util::rt::TokioIo::new(upgrade.await.unwrap());
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    io.write_all(&buf[..n]).await.unwrap();
                }
            });
            let answer = http::Response::builder();
            let answer = match tunnel {
                true => answer.status(200),
                false => answer
                    .status(101)
                    .header("connection", "upgrade")
                    .header("upgrade", "echo"),
            };
            return answer.body(String::new()).unwrap();
        }
        if req.uri().path() == "/reject" {
            // Refuses the upload without reading it.
            let mut answer = http::Response::new(String::from("ok"));
            *answer.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
            return answer;
        }
        if req.uri().path() == "/read-later" {
            // Answers at once and reads the upload afterwards.
            tokio::spawn(http_body_util::BodyExt::collect(req.into_body()));
            return http::Response::new(String::from("ok"));
        }
        if let Some(ms) = req.uri().query().and_then(|q| q.strip_prefix("sleep=")) {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        http::Response::new(String::from("ok"))
    };
    let limits = ServerLimits {
        header_read_timeout: header,
        idle_timeout: idle,
        ..ServerLimits::default()
    };
    tokio::spawn(serve(listener, handler, limits, std::future::pending()));
    addr
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one whole response (the handler's is 2 bytes long).
async fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// How long until the server closes `s` (read returns 0 or an error).
async fn closed_after(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout() {
    let addr = server(Duration::from_millis(200), Duration::from_secs(10)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let first = response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("keep-alive: timeout=9"),
        "{first}"
    );
    // Idle for three header timeouts: hyper's own header timeout would have
    // closed the connection by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let addr = server(Duration::from_secs(10), Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    response(&mut s).await;
    let idle = closed_after(&mut s).await;
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
}

#[tokio::test]
async fn a_stalled_second_request_is_cut_off_at_the_header_timeout() {
    let addr = server(Duration::from_millis(300), Duration::from_secs(30)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    response(&mut s).await;
    // Half a request line, then nothing: the header clock runs from here.
    s.write_all(b"GET / HT").await.unwrap();
    let stalled = closed_after(&mut s).await;
    assert!(
        stalled >= Duration::from_millis(250) && stalled < Duration::from_secs(3),
        "{stalled:?}"
    );
    // A client that trickles its headers a byte at a time is cut off too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let trickle = async {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            s.write_all(&[*b]).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::io::Result::Ok(())
    };
    let started = Instant::now();
    let _ = trickle.await;
    let total = started.elapsed() + closed_after(&mut s).await;
    assert!(total < Duration::from_secs(3), "{total:?}");
}

#[tokio::test]
async fn a_slow_answer_is_not_a_stalled_client() {
    let addr = server(Duration::from_millis(200), Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /?sleep=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // And the idle clock starts after the answer, not at the request.
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

/// The failure this guards against: a pooled client sends on a kept-alive
/// connection at the moment the server closes it for idleness, and the
/// request fails. With the header timeout also closing idle connections
/// (hyper's behaviour), requests spaced about one header timeout apart hit
/// that moment; with a separate, longer idle timeout none does.
#[tokio::test]
async fn requests_spaced_around_the_header_timeout_all_succeed() {
    let header = Duration::from_millis(100);
    let addr = server(header, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let mut failed = Vec::new();
    for i in 0..40u64 {
        // 90 ms to 110 ms apart, straddling the header timeout.
        tokio::time::sleep(Duration::from_millis(90 + i % 21)).await;
        if let Err(e) = http.get(format!("http://{addr}/")).send().await {
            failed.push(format!("{e:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
}

#[tokio::test]
async fn http2_connections_are_kept_across_the_header_timeout() {
    let addr = server(Duration::from_millis(100), Duration::from_millis(100)).await;
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert!(r.headers().get("keep-alive").is_none());
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_upgraded_connection_has_no_http_deadlines() {
    let upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    let connect = b"CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n";
    for (ask, answer) in [(&upgrade[..], "HTTP/1.1 101"), (connect, "HTTP/1.1 200")] {
        upgraded_echoes(ask, answer).await;
    }
}

async fn upgraded_echoes(ask: &[u8], answer: &str) {
    let addr = server(Duration::from_millis(200), Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(ask).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(head.starts_with(answer.as_bytes()), "{head:?}");
    // Quiet past both the header and the idle timeout, then half a
    // "request": neither deadline applies to the upgraded protocol.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(b"GET / HT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut echoed = [0u8; 8];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"GET / HT");
}

#[tokio::test]
async fn an_upload_read_after_the_answer_is_not_a_stalled_request() {
    let addr = server(Duration::from_millis(200), Duration::from_secs(30)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /read-later HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        .await
        .unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // The body trickles in over four header timeouts after the answer.
    for b in b"12345678" {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[*b]).await.unwrap();
    }
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_upload_refused_unread_says_the_connection_closes() {
    let addr = server(Duration::from_secs(5), Duration::from_secs(30)).await;
    // Refused before its body was read: the answer says the connection
    // closes (the client must not send its next request on it), and it does.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial")
        .await
        .unwrap();
    let answer = response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed_after(&mut s).await < Duration::from_secs(5));

    // An error answer to a request whose body was all read keeps the
    // connection, as does one with no body.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /reject HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

/// A 16 MiB response body, sent 64 KiB at a time, that notes when it is
/// dropped.
struct Big {
    left: usize,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Big {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<hyper::body::Bytes>, Self::Error>>> {
        let n = self.left.min(64 * 1024);
        self.left -= n;
        std::task::Poll::Ready((n > 0).then(|| Ok(http_body::Frame::data(vec![b'x'; n].into()))))
    }
}

impl Drop for Big {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Serves 16 MiB [`Big`] bodies (and, at `/trickle`, a [`Trickle`]) with
/// `write_timeout`; the drop flags of the big bodies, in order.
async fn big_server(
    write_timeout: Duration,
) -> (
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>>>,
) {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let handler = {
        let bodies = bodies.clone();
        move |req: http::Request<wasmswap_server::Incoming>, _peer| {
            let dropped = Arc::new(AtomicBool::new(false));
            let trickle = req.uri().path() == "/trickle";
            if !trickle {
                bodies.lock().unwrap().push(dropped.clone());
            }
            async move {
                http::Response::new(if trickle {
                    Either::Trickle(Trickle::new(write_timeout * 2))
                } else {
                    Either::Big(Big {
                        left: 16 << 20,
                        dropped,
                    })
                })
            }
        }
    };
    let limits = ServerLimits {
        write_timeout,
        ..ServerLimits::default()
    };
    tokio::spawn(serve(listener, handler, limits, std::future::pending()));
    (addr, bodies)
}

/// Waits (up to 5 s) until the first big body has been dropped.
async fn first_body_dropped(
    bodies: &std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>>,
) {
    let started = Instant::now();
    while bodies
        .lock()
        .unwrap()
        .first()
        .is_none_or(|d| !d.load(std::sync::atomic::Ordering::Acquire))
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the response is still held after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let (addr, bodies) = big_server(Duration::from_millis(300)).await;

    // Asks for 16 MiB and reads none of it: the socket's buffers fill, the
    // server's writes wait, and at the write timeout it lets go.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(GET).await.unwrap();
    first_body_dropped(&bodies).await;

    // A client that reads gets all of it, however long it takes past the
    // write timeout in all.
    let mut reading = TcpStream::connect(addr).await.unwrap();
    reading.write_all(GET).await.unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    while got < 16 << 20 {
        let n = tokio::time::timeout(Duration::from_secs(5), reading.read(&mut buf))
            .await
            .expect("bytes keep coming")
            .unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
        // Slower than the server writes, never stalled for 300 ms.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A response body that is slow to produce: a byte, a pause, a byte.
struct Trickle {
    sent: u8,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(pause: Duration) -> Self {
        Trickle {
            sent: 0,
            pause: Box::pin(tokio::time::sleep(pause)),
        }
    }
}

impl http_body::Body for Trickle {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<hyper::body::Bytes>, Self::Error>>> {
        use std::task::Poll;
        match self.sent {
            0 => {}
            1 => {
                if self.pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            _ => return Poll::Ready(None),
        }
        self.sent += 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(
            hyper::body::Bytes::from_static(b"x"),
        ))))
    }
}

/// One of the test bodies.
enum Either {
    Big(Big),
    Trickle(Trickle),
}

impl http_body::Body for Either {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<hyper::body::Bytes>, Self::Error>>> {
        match self.get_mut() {
            Either::Big(b) => std::pin::Pin::new(b).poll_frame(cx),
            Either::Trickle(t) => std::pin::Pin::new(t).poll_frame(cx),
        }
    }
}

/// An HTTP/2 connection to `addr` (prior knowledge) with a 64 KiB stream
/// window that grows only as the caller reads: its request sender, and its
/// connection task (which ends when the server closes the connection).
async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .adaptive_window(false)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, conn)
}

async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::get(format!("http://x{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test]
async fn an_idle_http2_connection_goes_away_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let addr = server(Duration::from_secs(5), idle).await;

    // In use every 100 ms for four idle timeouts: kept.
    let (mut send, conn) = h2_client(addr).await;
    for i in 0..12 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = h2_get(&mut send, "/").await;
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert_eq!(&body.unwrap().to_bytes()[..], b"ok");
    }
    assert!(!conn.is_finished(), "closed while in use");

    // Then idle: sent away after the idle timeout, not before.
    let idle_from = Instant::now();
    tokio::time::sleep(idle / 2).await;
    assert!(
        !conn.is_finished(),
        "closed after {:?}",
        idle_from.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle HTTP/2 connection is still open after 5 s")
        .unwrap();
    let lived = idle_from.elapsed();
    assert!(lived >= idle, "closed after {lived:?} idle");

    // A stream open for longer than the idle timeout is not idleness.
    let (mut send, conn) = h2_client(addr).await;
    let resp = h2_get(&mut send, "/?sleep=900").await;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert_eq!(&body.unwrap().to_bytes()[..], b"ok");
    assert!(!conn.is_finished());
}

#[tokio::test]
async fn an_http2_stream_starved_of_window_is_cut_off_at_the_write_timeout() {
    let write_timeout = Duration::from_millis(300);
    let (addr, bodies) = big_server(write_timeout).await;

    // Asks for 16 MiB and reads none of it: after 64 KiB the stream has no
    // window left, nothing more is due on the socket (which stays quiet,
    // the connection otherwise healthy), and at the write timeout the
    // server lets go.
    let (mut send, conn) = h2_client(addr).await;
    let held = h2_get(&mut send, "/").await;
    first_body_dropped(&bodies).await;
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the connection is closed with the stream")
        .unwrap();
    drop(held);

    // A body slow to produce is waiting on the server, not on the client:
    // kept past the write timeout (its pause is two of them).
    let (mut send, _conn) = h2_client(addr).await;
    let resp = h2_get(&mut send, "/trickle").await;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert_eq!(&body.unwrap().to_bytes()[..], b"xx");

    // A client that reads steadily, granting window as it goes, gets all
    // 16 MiB, however long it takes past the write timeout in all.
    let resp = h2_get(&mut send, "/").await;
    let mut body = resp.into_body();
    let (mut got, mut since_pause) = (0usize, 0usize);
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let n = frame.unwrap().into_data().map_or(0, |d| d.len());
        got += n;
        since_pause += n;
        if since_pause >= 256 * 1024 {
            since_pause = 0;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(got, 16 << 20);
}
