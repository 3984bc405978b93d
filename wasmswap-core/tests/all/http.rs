//! wasi-http: real `wasi:http/proxy` guests handling `http::Request`s.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmswap_core::{Error, Route, Service};

use crate::version_of;

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
    for _ in 0..100 {
        if v1.counters().calls == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(v1.counters().calls, 3);
    assert_eq!(v1.in_flight(), 0);
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
