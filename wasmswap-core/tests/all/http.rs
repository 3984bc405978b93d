//! wasi-http: real `wasi:http/proxy` guests handling `http::Request`s.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmswap_core::{BodyFailure, Capabilities, Error, ErrorKind, Limits, Route, Service};

use crate::{version_of, version_with};

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn text(resp: wasmswap_core::HttpResponse) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let guest = resp.headers()["x-guest-version"]
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, guest, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn handlers_answer_requests() {
    let v1 = version_of(test_programs::HTTP_HELLO_V1_COMPONENT);
    assert!(v1.is_http());
    let (status, guest, body) = text(v1.handle(get("/hello?x=1")).await.unwrap()).await;
    assert_eq!(
        (status, guest.as_str(), body.as_str()),
        (200, "v1", "hello from v1 at /hello?x=1\n")
    );

    let (status, _, body) = text(v1.handle(get("/fail")).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (500, "v1 failing on purpose\n"));

    let post = http::Request::post("http://localhost/echo")
        .body(Full::new(Bytes::from_static(b"echo me")))
        .unwrap();
    let (status, _, body) = text(v1.handle(post).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (200, "echo me"));

    // Calls are counted once the guest finishes streaming.
    let c = counted(&v1, 3).await;
    assert_eq!(c.calls, 3);
    assert!(c.memory_high_water_bytes > 0);
    assert_eq!(v1.in_flight(), 0);
}

/// Waits until `v` has counted `n` calls (they are counted when the guest
/// finishes streaming, after the response is handed over).
async fn counted(v: &wasmswap_core::Version, n: u64) -> wasmswap_core::CounterSnapshot {
    for _ in 0..200 {
        if v.counters().calls >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    v.counters()
}

#[tokio::test]
async fn a_client_that_hangs_up_is_not_a_guest_crash() {
    let v1 = version_of(test_programs::HTTP_HELLO_V1_COMPONENT);
    // `/slow` sets the head, then writes the body 100 ms later: by then
    // the client has dropped the response, the write fails and the guest's
    // `expect("write body")` traps.
    let resp = v1.handle(get("/slow")).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let c = counted(&v1, 1).await;
    assert_eq!(c.calls, 1);
    assert_eq!(c.errors_of(ErrorKind::ClientClosed), 1, "{c:?}");
    assert_eq!(c.errors_of(ErrorKind::Trap), 0, "not the guest's crash");

    // Read to the end, the same request is a plain success.
    let (status, _, body) = text(v1.handle(get("/slow")).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (200, "hello from v1 at /slow\n"));
    let c = counted(&v1, 2).await;
    assert_eq!((c.calls, c.errors), (2, 1), "{c:?}");
    assert_eq!(v1.in_flight(), 0);
}

#[tokio::test]
async fn a_guest_that_fails_midway_through_its_body_ends_it_with_an_error() {
    let v1 = version_of(test_programs::HTTP_HELLO_V1_COMPONENT);
    // `/trap-midway` sends its head and a first part, then panics.
    let resp = v1.handle(get("/trap-midway")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (got, failure) = read_until_it_fails(resp.into_body()).await;
    assert_eq!(got, b"the first part\n");
    assert!(
        failure.to_string().contains("the guest failed"),
        "{failure}"
    );
    // The error says how the guest failed, for an isolator to relay.
    let said = BodyFailure::of(&failure).expect("a body failure");
    assert_eq!(said.kind, ErrorKind::Trap, "{said:?}");
    let c = counted(&v1, 1).await;
    assert_eq!(c.errors_of(ErrorKind::Trap), 1, "{c:?}");
    // A guest that ends well still ends its body cleanly.
    let (status, _, body) = text(v1.handle(get("/hello")).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (200, "hello from v1 at /hello\n"));
    assert_eq!(v1.in_flight(), 0);
}

/// Reads a response body until its error: the data before it, and the
/// error. Panics if the body ends cleanly.
async fn read_until_it_fails(
    mut body: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
) -> (Vec<u8>, wasmtime_wasi_http::Error) {
    let mut got = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => got.extend_from_slice(frame.data_ref().unwrap()),
            Some(Err(e)) => return (got, e),
            None => panic!("a truncated body ended cleanly after {got:?}"),
        }
    }
}

#[tokio::test]
async fn a_guest_out_of_memory_midway_through_its_body_says_so() {
    let limits = Limits {
        max_memory_mb: 16,
        ..Limits::default()
    };
    let v1 = version_with(
        test_programs::HTTP_HELLO_V1_COMPONENT,
        limits,
        Capabilities::none(),
    );
    // `/grow-midway?64` sends its head and a first part, then allocates
    // 64 MiB.
    let resp = v1.handle(get("/grow-midway?64")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (got, failure) = read_until_it_fails(resp.into_body()).await;
    assert_eq!(got, b"the first part\n");
    let said = BodyFailure::of(&failure).expect("a body failure");
    assert_eq!(said.kind, ErrorKind::MemoryLimit, "{said:?}");
    let c = counted(&v1, 1).await;
    assert_eq!(c.errors_of(ErrorKind::MemoryLimit), 1, "{c:?}");
    // Under its limit it ends well.
    let resp = v1.handle(get("/grow-midway?4")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"the first part\n");
}

#[tokio::test]
async fn a_service_swaps_http_versions() {
    let (v1, v2) = (
        version_of(test_programs::HTTP_HELLO_V1_COMPONENT),
        version_of(test_programs::HTTP_HELLO_V2_COMPONENT),
    );
    let svc = Service::new("http", Route::stable(v1)).unwrap();
    let served = svc.handle(None, get("/")).await.unwrap();
    assert_eq!(text(served.value).await.1, "v1");
    let _ = svc.set_route(Route::stable(v2)).unwrap();
    let served = svc.handle(None, get("/")).await.unwrap();
    assert_eq!(served.generation, 2);
    assert_eq!(text(served.value).await.2, "hello from v2 at /\n");
}

#[tokio::test]
async fn non_http_components_are_refused() {
    let v = version_of(test_programs::TYPES_COMPONENT);
    assert!(!v.is_http());
    let e = v.handle(get("/")).await.unwrap_err();
    assert!(
        matches!(e, Error::NoSuchFunction(ref f) if f.contains("incoming-handler")),
        "{e}"
    );
    // A request without an authority cannot be turned into a wasi-http request.
    let http_v = version_of(test_programs::HTTP_HELLO_V1_COMPONENT);
    let no_authority = http::Request::get("/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let e = http_v.handle(no_authority).await.unwrap_err();
    assert!(matches!(e, Error::BadArgument { .. }), "{e}");
}

/// A one-route HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `upstream says hi` and counts the requests it saw.
fn upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "upstream says hi";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (authority, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_granted_hosts() {
    let (authority, hits) = upstream();
    let path = format!("/fetch?{authority}");

    // No grant: refused by the host, and the upstream never sees a request.
    let denied = version_of(test_programs::HTTP_HELLO_V1_COMPONENT);
    let (status, _, body) = text(denied.handle(get(&path)).await.unwrap()).await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A grant for another host does not cover this one.
    let other = version_with(
        test_programs::HTTP_HELLO_V1_COMPONENT,
        Default::default(),
        Capabilities {
            outbound_http: vec!["example.invalid".into()],
            ..Default::default()
        },
    );
    let (status, _, body) = text(other.handle(get(&path)).await.unwrap()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Granted: the request goes out and the answer comes back.
    let granted = version_with(
        test_programs::HTTP_HELLO_V1_COMPONENT,
        Default::default(),
        Capabilities {
            outbound_http: vec![authority.clone()],
            ..Default::default()
        },
    );
    let (status, _, body) = text(granted.handle(get(&path)).await.unwrap()).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "fetched 200: upstream says hi")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
