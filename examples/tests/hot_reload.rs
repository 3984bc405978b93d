//! The hot-reload proxy over real HTTP on 127.0.0.1: continuous requests while
//! the component file is rewritten, and not one of them fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use wasmswap_core::Runtime;
use wasmswap_examples::hot_reload::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_without_dropping_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.wasm");
    let v1 = test_programs::bytes(test_programs::HTTP_HELLO_V1_COMPONENT);
    let v2 = test_programs::bytes(test_programs::HTTP_HELLO_V2_COMPONENT);
    std::fs::write(&file, &v1).unwrap();

    let proxy = Proxy::new(Runtime::new().unwrap(), "app", &file).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hello", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(proxy.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));
    let watcher = tokio::spawn(proxy.clone().watch(Duration::from_millis(20)));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(parking_lot::Mutex::new(std::collections::BTreeSet::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, ok, failed, seen) = (
                url.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
                seen.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let version = r.headers()["x-wasmswap-version"]
                                .to_str()
                                .unwrap()
                                .to_string();
                            let guest =
                                r.headers()["x-guest-version"].to_str().unwrap().to_string();
                            let body = r.text().await.unwrap();
                            // The body comes from the guest the header names.
                            assert!(
                                body.starts_with(&format!("hello from {guest} at /hello")),
                                "{body}"
                            );
                            seen.lock().insert((version, guest));
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Flip the file between the two guests; each flip is a new version.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        std::fs::write(&file, if i % 2 == 0 { &v2 } else { &v1 }).unwrap();
    }
    // A broken file is refused and the last good version keeps serving.
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::fs::write(&file, b"not wasm").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let _ = stop_tx.send(());
    server.await.unwrap();
    watcher.abort();

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 50);
    // Flips faster than a compile may coalesce, so count at least a few.
    let generation = proxy.service().generation();
    assert!(generation >= 4, "only {generation} route generations");
    let seen = seen.lock();
    assert!(
        seen.iter().any(|(_, g)| g == "v1") && seen.iter().any(|(_, g)| g == "v2"),
        "{seen:?}"
    );
    // The last good file (v1's bytes) serves; the broken one was refused.
    let stable = proxy.service().route().stable;
    assert_eq!(stable.artifact().id(), wasmswap_core::ContentId::of(&v1));
    assert_eq!(stable.label(), format!("v{generation}"));
}
