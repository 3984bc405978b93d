// Shared by http-hello (v1) and http-hello-v2; `VERSION` differs.
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body_in = read_body(&request);
        let (status, text) = if path.starts_with("/health") {
            (200, "ok\n".to_string())
        } else if path.starts_with("/fail") {
            (500, format!("{VERSION} failing on purpose\n"))
        } else if let Some(authority) = path.strip_prefix("/fetch?") {
            fetch(authority)
        } else if let Some(rounds) = path.strip_prefix("/spin?") {
            (200, format!("{}\n", spin(rounds.parse().unwrap_or(0))))
        } else if path.starts_with("/trap-midway") || path.starts_with("/grow-midway") {
            (200, "the first part\n".to_string())
        } else if path.starts_with("/echo") {
            (200, String::from_utf8_lossy(&body_in).into_owned())
        } else {
            (200, format!("hello from {VERSION} at {path}\n"))
        };
        let mut headers = vec![
            ("content-type".to_string(), b"text/plain".to_vec()),
            ("x-guest-version".to_string(), VERSION.as_bytes().to_vec()),
        ];
        if path.starts_with("/trailers") {
            headers.push(("trailer".to_string(), b"x-guest-trailer".to_vec()));
        }
        if path.starts_with("/grow-midway") && path.ends_with("&sized") {
            // Promises more than it will send: a length-delimited body.
            headers.push(("content-length".to_string(), b"1000".to_vec()));
        }
        let headers = Fields::from_list(&headers).expect("valid headers");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("valid status");
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        if path.starts_with("/slow") {
            // The head is out; the body follows 100 ms later (a slow
            // upstream, a long render): time for a client to hang up.
            wasip2::clocks::monotonic_clock::subscribe_duration(100_000_000).block();
        }
        let stream = body.write().expect("stream taken once");
        // `blocking-write-and-flush` takes at most 4096 bytes at a time.
        for chunk in text.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write body");
        }
        if path.starts_with("/trap-midway") {
            // A guest that fails after its head and part of its body: the
            // client must not take what it got for the whole answer.
            panic!("failing midway through the body on purpose");
        }
        if let Some(query) = path.strip_prefix("/grow-midway?") {
            // One that runs out of memory after its head: past the
            // version's memory limit, the allocation fails and the guest
            // aborts. `?MIB`, and `&sized` for a `Content-Length`.
            let mib: usize = query.split('&').next().unwrap_or("").parse().unwrap_or(64);
            let grown = vec![1u8; mib << 20];
            std::hint::black_box(&grown);
        }
        drop(stream);
        let trailers = path.starts_with("/trailers").then(|| {
            Fields::from_list(&[("x-guest-trailer".to_string(), b"done".to_vec())])
                .expect("valid trailers")
        });
        OutgoingBody::finish(body, trailers).expect("finish body");
    }
}

/// Computes for a while (`rounds` of a xorshift), as a handler rendering
/// something expensive does.
fn spin(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// GETs `http://{authority}/` through `wasi:http/outgoing-handler`; the host
/// decides whether the guest may.
fn fetch(authority: &str) -> (u16, String) {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    let response = match outgoing_handler::handle(request, None) {
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => response,
                Some(Ok(Err(code))) => return (502, format!("outbound failed: {code:?}\n")),
                _ => return (502, "outbound failed\n".to_string()),
            }
        }
        Err(code) => return (502, format!("outbound refused: {code:?}\n")),
    };
    let status = response.status();
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    (200, format!("fetched {status}: {}", String::from_utf8_lossy(&body)))
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let Ok(stream) = body.stream() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    out
}

wasip2::http::proxy::export!(Handler);
