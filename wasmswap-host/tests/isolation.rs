//! Isolation: a version whose call hit its memory limit runs its JSON calls
//! in the host's worker process (the real `wasmswap-host` binary), at idle
//! priority, and the host outlives that worker.

use std::time::Duration;

use serde_json::{Value, json};
use wasmswap_host::{Host, HostConfig, VersionSpec};

async fn start() -> Host {
    Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        isolation: true,
        isolation_worker: Some(env!("CARGO_BIN_EXE_wasmswap-host").into()),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Loads the hostile guest as `bad/v1` (32 MiB) and routes to it.
async fn load_hostile(host: &Host) {
    let bytes = test_programs::bytes(test_programs::HOSTILE_MODULE);
    let spec = VersionSpec {
        service: "bad".into(),
        version: "v1".into(),
        sha256: wasmswap_host::fetch::sha256_hex(&bytes),
        url: None,
        limits: serde_json::from_value(json!({"timeoutMs": 5000, "maxMemoryMB": 32})).unwrap(),
        capabilities: Default::default(),
    };
    host.node().load(spec, Some(bytes)).await.unwrap();
    host.node()
        .set_route(
            "bad",
            serde_json::from_value(json!({"stable": "v1"})).unwrap(),
        )
        .await
        .unwrap();
}

/// Calls `bad/{function}`: status, version header, body.
async fn call(http: &reqwest::Client, host: &Host, function: &str) -> (u16, String, Value) {
    let resp = http
        .post(format!(
            "http://{}/_invoke/bad/{function}",
            host.data_addr()
        ))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let version = resp.headers()["x-wasmswap-version"]
        .to_str()
        .unwrap()
        .to_string();
    (status, version, resp.json().await.unwrap())
}

fn isolated(host: &Host) -> bool {
    host.node().status_of("bad").unwrap().versions[0].isolated
}

/// The scheduling policy of every thread of a process, from
/// `/proc/PID/task/TID/stat` (field 41).
fn policies_of(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            // The command name (field 2) may hold spaces: count after its `)`.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(38).unwrap().parse().unwrap()
        })
        .collect()
}

/// Linux's `SCHED_IDLE`.
const SCHED_IDLE: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_moves_to_the_worker_process_and_stays_contained() {
    let host = start().await;
    load_hostile(&host).await;
    let http = reqwest::Client::new();
    let worker = host.node().isolator().expect("isolation is on").clone();

    // Well-behaved: runs here, no worker started.
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    assert!(!isolated(&host));
    assert_eq!(worker.pid().await, None);

    // The first bomb hits its limit here, and isolates the version.
    let (status, version, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!((status, version.as_str()), (500, "v1"), "{body}");
    assert_eq!(body["error"]["code"], "memory_limit", "{body}");
    assert!(isolated(&host));
    assert_eq!(
        worker.pid().await,
        None,
        "started only at the first isolated call"
    );

    // The next runs in the worker, with the same error, and keeps the
    // version isolated; a well-behaved call goes there too, and answers.
    let (status, _, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "memory_limit", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit of 33554432 bytes exceeded"),
        "{body}"
    );
    let pid = worker.pid().await.expect("the worker runs");
    assert_ne!(pid, std::process::id());
    let policies = policies_of(pid);
    assert!(
        policies.len() > 1 && policies.iter().all(|p| *p == SCHED_IDLE),
        "every thread of the worker runs at idle priority: {policies:?}"
    );
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    // A function it does not have is a 404 there as here.
    let (status, _, body) = call(&http, &host, "no_such").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Counted in the host's counters like any call.
    let counters = &host.node().status_of("bad").unwrap().versions[0].counters;
    assert_eq!(counters.calls, 5, "{counters:?}");
    assert_eq!(counters.errors, 3, "{counters:?}");

    // The worker dies (as if the kernel's OOM killer took it): the call
    // in its way may fail, the host keeps serving, and the next isolated
    // call starts another worker.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = call(&http, &host, "health_check").await;
    assert!(status == 200 || status == 500, "{status} {body}");
    if status == 500 {
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert_eq!(body["error"]["message"], "the call failed inside the node");
    }
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    let again = worker.pid().await.expect("a new worker runs");
    assert_ne!(again, pid);

    // The host's end is the worker's.
    host.shutdown().await;
    drop(worker);
    let gone = || {
        std::fs::read_to_string(format!("/proc/{again}/stat"))
            .map_or(true, |s| s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
    };
    for _ in 0..100 {
        if gone() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(), "the worker outlived its host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_leaves_calls_in_this_process() {
    // `true` exits at once without saying where it listens.
    let host = Host::start(HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        isolation: true,
        isolation_worker: Some("true".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    load_hostile(&host).await;
    let http = reqwest::Client::new();
    let (status, _, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("memory_limit")),
        "{body}"
    );
    assert!(isolated(&host));
    // Isolated, but its worker cannot start: the calls run here, each
    // with its own answer, and none is lost or counted twice.
    let (status, _, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("memory_limit")),
        "{body}"
    );
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    assert_eq!(host.node().isolator().unwrap().pid().await, None);
    let counters = &host.node().status_of("bad").unwrap().versions[0].counters;
    assert_eq!((counters.calls, counters.errors), (3, 2), "{counters:?}");
    host.shutdown().await;
}
