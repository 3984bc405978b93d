//! Isolation: a version whose call hit its memory limit runs its calls
//! (JSON and wasi-http) in the host's worker process (the real
//! `wasmswap-host` binary), at idle priority, and the host outlives that
//! worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wasmswap_core::ErrorKind;
use wasmswap_host::{Host, HostConfig, VersionSpec};

async fn start() -> Host {
    start_with(|_| {}).await
}

/// A host with isolation on (the worker: this package's binary), after
/// `change` has had its say.
async fn start_with(change: impl FnOnce(&mut HostConfig)) -> Host {
    let mut config = HostConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        isolation: true,
        isolation_worker: Some(env!("CARGO_BIN_EXE_wasmswap-host").into()),
        ..Default::default()
    };
    change(&mut config);
    Host::start(config).await.unwrap()
}

/// Loads `program` as `{service}/v1` under `limits` and routes to it.
async fn load(host: &Host, service: &str, program: &str, limits: Value) {
    let bytes = test_programs::bytes(program);
    let spec = VersionSpec {
        service: service.into(),
        version: "v1".into(),
        sha256: wasmswap_host::fetch::sha256_hex(&bytes),
        url: None,
        limits: serde_json::from_value(limits).unwrap(),
        capabilities: Default::default(),
    };
    host.node().load(spec, Some(bytes)).await.unwrap();
    host.node()
        .set_route(
            service,
            serde_json::from_value(json!({"stable": "v1"})).unwrap(),
        )
        .await
        .unwrap();
}

/// Loads the hostile guest as `bad/v1` (32 MiB) and routes to it.
async fn load_hostile(host: &Host) {
    let limits = json!({"timeoutMs": 5000, "maxMemoryMB": 32});
    load(host, "bad", test_programs::HOSTILE_MODULE, limits).await;
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

/// Waits (up to 30 s) until `service`'s stable version is loaded in the
/// worker, calling `nudge` meanwhile: an isolated version's calls run in
/// this process until then, the first of them starting the load.
async fn until_ready<F: Future<Output = ()>>(
    host: &Host,
    service: &str,
    mut nudge: impl FnMut() -> F,
) {
    let worker = host.node().isolator().unwrap();
    let version = host.node().service(service).unwrap().route().stable;
    for _ in 0..300 {
        if worker.ready(&version) {
            return;
        }
        nudge().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service} was not loaded into the worker within 30 s");
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
    assert_eq!(worker.pid(), None);

    // The first bomb hits its limit here, and isolates the version.
    let (status, version, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!((status, version.as_str()), (500, "v1"), "{body}");
    assert_eq!(body["error"]["code"], "memory_limit", "{body}");
    assert!(isolated(&host));
    assert_eq!(
        worker.pid(),
        None,
        "started only at the first isolated call"
    );

    // The next call starts the worker and loads the version there; it runs
    // here meanwhile (no call waits for a worker to start).
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    until_ready(&host, "bad", || async {}).await;

    // Then calls run in the worker: a bomb with the same error, keeping the
    // version isolated; a well-behaved call too, and it answers.
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
    let pid = worker.pid().expect("the worker runs");
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
    assert_eq!(counters.calls, 6, "{counters:?}");
    assert_eq!(counters.errors, 3, "{counters:?}");

    // The worker dies (as if the kernel's OOM killer took it): the call
    // in its way may fail, the host keeps serving, and the next isolated
    // call starts another worker (running here until it is ready).
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
    until_ready(&host, "bad", || async {
        assert_eq!(
            call(&http, &host, "health_check").await,
            (200, "v1".into(), json!(1))
        );
    })
    .await;
    assert_eq!(
        call(&http, &host, "health_check").await,
        (200, "v1".into(), json!(1))
    );
    let again = worker.pid().expect("a new worker runs");
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
async fn a_version_unloaded_while_loading_into_the_worker_is_not_kept_there() {
    let host = start().await;
    load_hostile(&host).await;
    let http = reqwest::Client::new();
    let worker = host.node().isolator().unwrap().clone();
    let v1 = host.node().service("bad").unwrap().route().stable;
    let (status, _, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!(status, 500, "{body}");
    assert!(isolated(&host));
    // The next call starts the worker and the load; the version is routed
    // away from and unloaded at once, most likely while it still loads.
    assert_eq!(call(&http, &host, "health_check").await.0, 200);
    let bytes = test_programs::bytes(test_programs::NUMERIC_MODULE);
    let spec = VersionSpec {
        service: "bad".into(),
        version: "v2".into(),
        sha256: wasmswap_host::fetch::sha256_hex(&bytes),
        url: None,
        limits: Default::default(),
        capabilities: Default::default(),
    };
    host.node().load(spec, Some(bytes)).await.unwrap();
    host.node()
        .set_route(
            "bad",
            serde_json::from_value(json!({"stable": "v2"})).unwrap(),
        )
        .await
        .unwrap();
    host.node()
        .unload("bad", "v1", Duration::from_secs(5))
        .await
        .unwrap();
    // Once the worker has started and the load has had time to end, the
    // version is not held there.
    for _ in 0..100 {
        if worker.pid().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(worker.pid().is_some(), "the worker started");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !worker.ready(&v1),
        "an unloaded version stayed in the worker"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_leaves_calls_in_this_process() {
    // `true` exits at once without saying where it listens.
    let host = start_with(|c| c.isolation_worker = Some("true".into())).await;
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
    assert_eq!(host.node().isolator().unwrap().pid(), None);
    let counters = &host.node().status_of("bad").unwrap().versions[0].counters;
    assert_eq!((counters.calls, counters.errors), (3, 2), "{counters:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_service_that_hits_its_memory_limit_is_served_by_the_worker() {
    let host = start().await;
    let limits = json!({"timeoutMs": 1000, "maxMemoryMB": 4});
    load(&host, "web", test_programs::HTTP_HELLO_V1_COMPONENT, limits).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/web", host.data_addr());
    let worker = host.node().isolator().unwrap().clone();
    let web_isolated = || host.node().status_of("web").unwrap().versions[0].isolated;

    // POSTs `body` to /echo: status and answer.
    let post_echo = |body: Vec<u8>| {
        let request = http.post(format!("{base}/echo")).body(body);
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap())
        }
    };
    // /echo holds the whole body in guest memory: 8 MiB is past its 4 MiB,
    // which fails the request with its own error, and isolates the version.
    let bomb_contained = || async {
        let (status, body) = post_echo(vec![b'x'; 8 << 20]).await;
        let body = serde_json::from_slice::<Value>(&body).unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (500, Some("memory_limit")),
            "{body}"
        );
        assert!(web_isolated());
    };
    let payload: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let echo = || async {
        let (status, echoed) = post_echo(payload.clone()).await;
        assert_eq!(status, 200);
        assert!(
            echoed == payload,
            "echoed {} bytes of {}: {:?}",
            echoed.len(),
            payload.len(),
            String::from_utf8_lossy(&echoed[..echoed.len().min(300)])
        );
    };
    // In this process first.
    echo().await;
    bomb_contained().await;
    until_ready(&host, "web", || async {
        let resp = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    })
    .await;
    let calls_before = host.node().status_of("web").unwrap().versions[0]
        .counters
        .calls;
    let pid = worker.pid().expect("the worker runs");

    // Served by the worker: the guest sees the same path, query, method,
    // headers and body, and its answer streams back whole.
    let resp = http
        .get(format!("{base}/hello/there?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-wasmswap-version"], "v1");
    assert_eq!(resp.headers()["x-guest-version"], "v1");
    assert_eq!(
        resp.text().await.unwrap(),
        "hello from v1 at /hello/there?x=1\n"
    );
    echo().await;
    // A guest failing midway through its body there: the client sees the
    // body break off, not a short answer that looks whole, and the call is
    // counted here by how the guest failed there (the worker says so in
    // the body's trailers).
    let breaks_off = |path: &'static str| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            let got = resp.bytes().await;
            assert_eq!(status, 200, "{got:?}");
            assert!(got.is_err(), "the body must break off: {got:?}");
        }
    };
    let failures = || {
        let counters = &host.node().status_of("web").unwrap().versions[0].counters;
        (
            counters.errors_of(ErrorKind::Trap),
            counters.errors_of(ErrorKind::MemoryLimit),
        )
    };
    let (traps, bombs) = failures();
    breaks_off("/trap-midway").await;
    assert_eq!(failures(), (traps + 1, bombs));
    // One that runs out of memory after its head: a `memory_limit`, not a
    // trap.
    breaks_off("/grow-midway?64").await;
    assert_eq!(failures(), (traps + 1, bombs + 1));
    // With a `Content-Length` the body has no room for trailers: it
    // breaks off all the same (the head and first part out first, not a
    // worker taken for dead), counted as a trap.
    breaks_off("/grow-midway?64&sized").await;
    assert_eq!(failures(), (traps + 2, bombs + 1));
    // A guest's own trailers end its body as its last frame: the call is
    // served and counted as served, not as a client that left early.
    let errors = || {
        host.node().status_of("web").unwrap().versions[0]
            .counters
            .errors
    };
    let errors_before = errors();
    let resp = http.get(format!("{base}/trailers")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from v1 at /trailers\n");
    assert_eq!(errors(), errors_before);
    let resp = http.get(format!("{base}/fail")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "v1 failing on purpose\n");
    // The bomb again: its own error, from the worker, the version still
    // isolated.
    bomb_contained().await;
    assert!(worker.ready(&host.node().service("web").unwrap().route().stable));

    // Each counted once, when its body ended.
    let counters = &host.node().status_of("web").unwrap().versions[0].counters;
    assert_eq!(counters.calls - calls_before, 8, "{counters:?}");
    assert_eq!(Some(pid), worker.pid(), "one worker throughout");

    // A worker that stops midway through a body (`/slow` writes it 100 ms
    // after the head; SIGSTOP meanwhile): the body breaks off at the
    // call's deadline (its 1 s timeout and 2 s of grace), counted as a
    // timeout, and the version is not left in flight.
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let timeouts = || {
        host.node().status_of("web").unwrap().versions[0]
            .counters
            .errors_of(ErrorKind::Timeout)
    };
    let before = timeouts();
    let resp = http.get(format!("{base}/slow")).send().await.unwrap();
    signal("-STOP");
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let got = resp.bytes().await;
    let waited = started.elapsed();
    signal("-CONT");
    assert!(got.is_err(), "the body must break off: {got:?}");
    assert!(
        waited < Duration::from_secs(10),
        "broke off after {waited:?}"
    );
    assert_eq!(timeouts(), before + 1);
    assert_eq!(
        host.node().status_of("web").unwrap().versions[0].in_flight,
        0
    );

    // The calls really went to the worker: with it killed, the next one
    // fails there (the one after runs here while another worker starts).
    signal("-9");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = http.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let resp = http.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    host.shutdown().await;
}

/// CPU time a process has had, all threads (`/proc/PID/task/*/schedstat`).
fn cpu_of(pid: u32) -> Duration {
    let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .map(|s| s.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    Duration::from_nanos(ns)
}

/// Calls the bomb back to back in the worker for 3 s: the worker's CPU
/// time, the wall time and the number of calls, each checked to be the
/// bomb's own error.
async fn bomb_for_3s(http: &reqwest::Client, host: &Host, pid: u32) -> (Duration, Duration, u32) {
    let (cpu_before, started) = (cpu_of(pid), std::time::Instant::now());
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let (status, _, body) = call(http, host, "memory_bomb").await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (500, &json!("memory_limit"))
        );
        calls += 1;
    }
    (cpu_of(pid) - cpu_before, started.elapsed(), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn the_workers_cpu_budget_paces_its_calls_while_the_host_is_busy() {
    let share = 0.1;
    let host = start_with(|c| c.isolation_cpu_share = Some(share)).await;
    load_hostile(&host).await;
    // A well-behaved service on the same node, served in the host.
    let limits = json!({"timeoutMs": 5000, "maxMemoryMB": 32});
    load(&host, "good", test_programs::HOSTILE_MODULE, limits).await;
    let http = reqwest::Client::new();
    let (status, _, body) = call(&http, &host, "memory_bomb").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("memory_limit"))
    );
    until_ready(&host, "bad", || async {
        call(&http, &host, "health_check").await;
    })
    .await;
    let pid = host.node().isolator().unwrap().pid().unwrap();

    // The host busy: the good service called every 50 ms meanwhile.
    let busy = Arc::new(AtomicBool::new(true));
    let bystander = tokio::spawn({
        let (http, url, busy) = (
            http.clone(),
            format!("http://{}/_invoke/good/health_check", host.data_addr()),
            busy.clone(),
        );
        async move {
            let mut served = 0;
            while busy.load(Ordering::Relaxed) {
                let resp = http.post(&url).json(&json!([])).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
                served += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            served
        }
    });
    // Every bomb call hits the limit there, so after the first they are
    // paced, each one answered with its own error, and the worker's CPU is
    // held to its share (plus the bucket's 10 ms burst). Without the
    // budget it would take what an idle core gives (most of the 3 s on a
    // quiet machine).
    let (cpu, wall, calls) = bomb_for_3s(&http, &host, pid).await;
    // An infinite loop of the same offender is held to the share as it
    // runs: unpaced it would burn its CPU limit (50 % of its 5 s timeout).
    let before = cpu_of(pid);
    let (status, _, body) = call(&http, &host, "infinite_loop").await;
    assert_eq!((status, &body["error"]["code"]), (504, &json!("timeout")));
    let looped = cpu_of(pid) - before;
    assert!(
        looped <= Duration::from_secs(5).mul_f64(share) + Duration::from_millis(500),
        "one paced infinite loop used {looped:?} of the worker's CPU"
    );
    busy.store(false, Ordering::Relaxed);
    let served = bystander.await.unwrap();
    let allowed = wall.mul_f64(share) + Duration::from_millis(10);
    assert!(
        cpu <= allowed + Duration::from_millis(150),
        "the worker used {cpu:?} of CPU in {wall:?} ({calls} calls), over its {allowed:?}"
    );
    assert!(calls >= 3, "{calls} calls in {wall:?}");
    assert!(served >= 20, "the good service answered {served} calls");
    assert!(isolated(&host));
    eprintln!(
        "host busy: the worker used {cpu:?} of CPU in {wall:?} ({calls} calls) at a share of \
         {share}, and {looped:?} for one infinite loop"
    );

    // The host idle (no call of its own for over a second): the budget
    // holds nobody back, and the bomb gets what the idle core gives.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (idle_cpu, wall, idle_calls) = bomb_for_3s(&http, &host, pid).await;
    assert!(
        idle_cpu > allowed + Duration::from_millis(150),
        "with the host idle the worker used only {idle_cpu:?} of CPU in {wall:?} \
         ({idle_calls} calls): still paced"
    );
    assert!(idle_calls > calls, "{idle_calls} calls idle, {calls} busy");
    eprintln!("host idle: the worker used {idle_cpu:?} of CPU in {wall:?} ({idle_calls} calls)");
    host.shutdown().await;
}
