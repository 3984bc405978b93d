//! A well-behaved service's latency on an edge node while another service
//! on the same node is attacked by hostile calls, beside the same node
//! unloaded, in one run: p50, p99 and max per phase, the p99 ratio (target
//! ≤ 1.10) with a 95 % interval from resampling the rounds, and the failed
//! calls (must be 0).
//!
//! `cargo bench -p wasmswap-benches --bench hostile`
//!
//! The node is a real `wasmswap-host` on 127.0.0.1 (data plane and agent
//! API over HTTP). The bystander sends `calc/add` at a fixed rate (open
//! loop, so a stall shows as latency rather than as fewer requests); the
//! attacker keeps one hostile call in flight at a time, cycling through an
//! infinite loop, a memory bomb, deep recursion and a CPU hog, each with
//! the limits a tenant would get (1 s, 32 MiB, 50 % of a core).

// A report printer: its output is the point.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest as _;
use wasmswap_host::{Host, HostConfig};

const TOKEN: &str = "bench-agent-token";
/// Bystander requests per second, and seconds per phase.
const RATE: u64 = 200;
/// (`HOSTILE_PHASE_SECS` sets another.) Short: the machine's own drift
/// over seconds (a VM's neighbours) moved one run's ratio by ±0.1 with
/// 10 s phases; many short rounds cancel more of it.
const PHASE_SECS: u64 = 2;
/// Phases alternate unloaded / attacked so that drift on a shared machine
/// hits both alike; `HOSTILE_ROUNDS` sets another number.
const ROUNDS: usize = 60;
/// Resamples for the ratio's confidence interval.
const BOOTSTRAP: usize = 2000;

/// Serves the guests' bytes to the node's fetcher.
async fn blob_server(blobs: HashMap<String, Vec<u8>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let blobs = Arc::new(blobs);
    let handler = move |req: http::Request<wasmswap_server::Incoming>, _peer| {
        let blobs = blobs.clone();
        async move {
            let key = req.uri().path().trim_start_matches('/');
            let body = blobs.get(key).cloned().unwrap_or_default();
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)))
        }
    };
    tokio::spawn(wasmswap_server::serve(
        listener,
        handler,
        Default::default(),
        std::future::pending(),
    ));
    addr
}

async fn deploy(
    http: &reqwest::Client,
    agent: &str,
    blobs: std::net::SocketAddr,
    service: &str,
    bytes: &[u8],
    limits: Value,
) {
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let r = http
        .post(format!("{agent}/v1/versions"))
        .bearer_auth(TOKEN)
        .json(&json!({"service": service, "version": "v1", "sha256": sha,
            "url": format!("http://{blobs}/{service}"), "limits": limits}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "load {service}: {}",
        r.text().await.unwrap()
    );
    let r = http
        .put(format!("{agent}/v1/services/{service}/route"))
        .bearer_auth(TOKEN)
        .json(&json!({"stable": "v1"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "route {service}");
}

/// One phase of bystander traffic: latencies and failures.
async fn bystander(http: &reqwest::Client, data: &str, secs: u64) -> (Vec<Duration>, u64) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::new();
    for _ in 0..RATE * secs {
        tick.tick().await;
        let (http, url) = (http.clone(), format!("{data}/_invoke/calc/add"));
        // The time the request was due, so a stalled sender counts too.
        let due = Instant::now();
        calls.push(tokio::spawn(async move {
            let outcome = match http.post(url).json(&json!([40, 2])).send().await {
                Ok(r) => match r.json::<Value>().await {
                    Ok(v) if v == json!(42) => Ok(()),
                    Ok(v) => Err(format!("answered {v}")),
                    Err(e) => Err(format!("reading the answer: {e}")),
                },
                Err(e) => Err(format!("sending: {e:?}")),
            };
            (due.elapsed(), outcome)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for c in calls {
        let (took, outcome) = c.await.unwrap();
        latencies.push(took);
        if let Err(e) = outcome {
            // Say why: a failed bystander call is the one thing that must
            // not happen.
            println!("bystander call failed after {took:?}: {e}");
            failed += 1;
        }
    }
    latencies.sort();
    (latencies, failed)
}

/// Keeps one hostile call in flight until stopped; returns the error codes seen.
async fn attacker(
    http: reqwest::Client,
    data: String,
    stop: Arc<AtomicBool>,
) -> HashMap<String, u64> {
    let mut seen = HashMap::new();
    let attacks = [
        ("infinite_loop", json!([])),
        ("memory_bomb", json!([])),
        ("deep_recursion", json!([])),
        ("cpu_hog", json!([1_000_000])),
    ];
    // `HOSTILE_ATTACKS=infinite_loop,cpu_hog` narrows the mix.
    let only = std::env::var("HOSTILE_ATTACKS")
        .ok()
        .filter(|o| !o.is_empty());
    if only.as_deref() == Some("none") {
        // An A/A run: both phases unloaded, which shows the noise floor.
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return seen;
    }
    let attacks: Vec<_> = attacks
        .into_iter()
        .filter(|(f, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == *f))
        })
        .collect();
    assert!(
        !attacks.is_empty(),
        "HOSTILE_ATTACKS={only:?}: use a comma-separated list of infinite_loop, memory_bomb, deep_recursion, cpu_hog (or none, for an A/A run)"
    );
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let (func, args) = &attacks[i % attacks.len()];
        i += 1;
        let code = match http
            .post(format!("{data}/_invoke/bad/{func}"))
            .json(args)
            .send()
            .await
        {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from))
                .unwrap_or_else(|| "ok".into()),
            Err(_) => "transport".into(),
        };
        *seen.entry(format!("{func}: {code}")).or_default() += 1;
    }
    seen
}

fn pct(l: &[Duration], q: f64) -> f64 {
    l[((l.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

/// The p99 of the rounds `picks` of `rounds`, pooled (unsorted input).
fn pooled_p99(rounds: &[Vec<Duration>], picks: &[usize]) -> f64 {
    let mut all: Vec<Duration> = picks
        .iter()
        .flat_map(|&i| rounds[i].iter().copied())
        .collect();
    let at = ((all.len() as f64 - 1.0) * 0.99).round() as usize;
    all.select_nth_unstable(at).1.as_secs_f64() * 1e3
}

/// A 95 % interval for the pooled p99 ratio, by resampling whole rounds
/// (each an unloaded phase and the attacked one after it) with
/// replacement: the spread between rounds — the machine's drift — is
/// what makes one run's ratio uncertain, and an A/A run's interval shows
/// how far that alone moves it.
fn ratio_interval(quiet: &[Vec<Duration>], attacked: &[Vec<Duration>]) -> (f64, f64) {
    use rand::{RngExt as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let n = quiet.len();
    let mut ratios: Vec<f64> = (0..BOOTSTRAP)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            pooled_p99(attacked, &picks) / pooled_p99(quiet, &picks)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[BOOTSTRAP * 25 / 1000],
        ratios[BOOTSTRAP * 975 / 1000],
    )
}

fn main() {
    // The host's isolation worker is this executable again.
    if let Some(worker) = wasmswap_host::worker::run_if_worker() {
        return worker.unwrap();
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("HOSTILE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build().unwrap();
    rt.block_on(async {
        let calc = test_programs::bytes(test_programs::NUMERIC_MODULE);
        let bad = test_programs::bytes(test_programs::HOSTILE_MODULE);
        let blobs = blob_server(HashMap::from([
            ("calc".to_string(), calc.clone()),
            ("bad".to_string(), bad.clone()),
        ]))
        .await;
        let host = Host::start(HostConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            agent: Some((([127, 0, 0, 1], 0).into(), TOKEN.into())),
            // `HOSTILE_EPOCH_TICK_US=200` tries another tick.
            epoch_tick: std::env::var("HOSTILE_EPOCH_TICK_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(HostConfig::default().epoch_tick, Duration::from_micros),
            // `HOSTILE_KEEP_RESIDENT_MIB=0` gives pooled memory back after
            // every instance, as before keep-resident was the default.
            keep_resident: std::env::var("HOSTILE_KEEP_RESIDENT_MIB")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(HostConfig::default().keep_resident, |mib| mib << 20),
            // The low-priority lane, as on a node that runs untrusted
            // tenants; `HOSTILE_LOW_PRIORITY=0` runs every call on the
            // serving threads (the default setting).
            low_priority_lane: std::env::var("HOSTILE_LOW_PRIORITY").map_or(true, |v| v != "0"),
            // A tenant that hit its memory limit runs its calls in the
            // worker process, as the host binary does by default;
            // `HOSTILE_ISOLATE=0` keeps them in this process.
            isolation: std::env::var("HOSTILE_ISOLATE").map_or(true, |v| v != "0"),
            // The worker's budget for offending calls (0.01 of a core by
            // default); `HOSTILE_ISOLATION_CPU_SHARE=1` lifts it.
            isolation_cpu_share: std::env::var("HOSTILE_ISOLATION_CPU_SHARE")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(HostConfig::default().isolation_cpu_share, Some),
            ..Default::default()
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let agent = format!("http://{}", host.agent_addr().unwrap());
        let data = format!("http://{}", host.data_addr());
        deploy(&http, &agent, blobs, "calc", &calc, json!({})).await;
        deploy(
            &http,
            &agent,
            blobs,
            "bad",
            &bad,
            json!({"timeoutMs": 1000, "maxMemoryMB": 32, "maxCpuPercent": 50}),
        )
        .await;
        // Warm up: connections, pooled slots, compiled code.
        let _ = bystander(&http, &data, 2).await;

        let phase_secs = std::env::var("HOSTILE_PHASE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PHASE_SECS);
        // Each round's bystander latencies, per phase.
        let (mut quiet_rounds, mut attacked_rounds) = (Vec::new(), Vec::new());
        let (mut quiet_failed, mut attacked_failed) = (0, 0);
        let mut codes: HashMap<String, u64> = HashMap::new();
        let attacks = AtomicU64::new(0);
        let rounds = std::env::var("HOSTILE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ROUNDS);
        // Each round's p99 ratio: its attacked phase against the unloaded
        // phase just before it.
        let mut round_ratios = Vec::new();
        for _ in 0..rounds {
            let (l, f) = bystander(&http, &data, phase_secs).await;
            let quiet_p99 = pct(&l, 0.99);
            quiet_rounds.push(l);
            quiet_failed += f;
            let stop = Arc::new(AtomicBool::new(false));
            let attack = tokio::spawn(attacker(http.clone(), data.clone(), stop.clone()));
            let (l, f) = bystander(&http, &data, phase_secs).await;
            round_ratios.push(pct(&l, 0.99) / quiet_p99);
            attacked_rounds.push(l);
            attacked_failed += f;
            stop.store(true, Ordering::Relaxed);
            for (k, v) in attack.await.unwrap() {
                attacks.fetch_add(v, Ordering::Relaxed);
                *codes.entry(k).or_default() += v;
            }
        }
        let mut quiet: Vec<Duration> = quiet_rounds.concat();
        let mut attacked: Vec<Duration> = attacked_rounds.concat();
        quiet.sort();
        attacked.sort();
        println!("well-behaved `calc/add` at {RATE} req/s, {rounds} x {phase_secs} s per phase\n");
        println!("| phase | calls | failed | p50 | p99 | max |");
        println!("|---|---|---|---|---|---|");
        for (name, l, f) in [
            ("unloaded", &quiet, quiet_failed),
            ("under attack", &attacked, attacked_failed),
        ] {
            println!(
                "| {name} | {} | {f} | {:.2} ms | {:.2} ms | {:.2} ms |",
                l.len(),
                pct(l, 0.5),
                pct(l, 0.99),
                l.last().unwrap().as_secs_f64() * 1e3
            );
        }
        let (low, high) = ratio_interval(&quiet_rounds, &attacked_rounds);
        println!(
            "\np99 under attack / unloaded: {:.2} (target ≤ 1.10; 95 % interval over rounds {low:.2}–{high:.2})",
            pct(&attacked, 0.99) / pct(&quiet, 0.99)
        );
        println!(
            "each round's p99 ratio: {}",
            round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut codes: Vec<_> = codes.into_iter().collect();
        codes.sort();
        println!(
            "hostile calls: {} ({})",
            attacks.into_inner(),
            codes
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let bad = &host.node().status_of("bad").unwrap().versions[0];
        println!(
            "the hostile version ended {} (isolation {})",
            if bad.isolated {
                "isolated"
            } else {
                "in process"
            },
            if host.node().isolator().is_some() {
                "on"
            } else {
                "off"
            }
        );
        host.shutdown().await;
    });
}
