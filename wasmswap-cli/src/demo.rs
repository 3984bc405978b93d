//! `wasmswap up --demo`: a canary from the live version of the bundled
//! service to the other one, under generated traffic on every node, with a
//! progress bar, the live traffic split, and a summary at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::client::{Api, CliError};
use crate::cluster::{SERVICE, V1, V2};
use crate::deployments::{self, Bar};
use crate::output::{self, is_terminal, say};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seconds each canary stage is held and evaluated.
    pub stage_seconds: u64,
    /// Requests per second, over all nodes.
    pub rps: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            stage_seconds: 5,
            rps: 200,
        }
    }
}

/// What the traffic saw, per version that answered.
#[derive(Debug, Clone, Default)]
pub struct VersionStats {
    /// Responses.
    pub requests: u64,
    /// Non-2xx responses and transport failures.
    pub errors: u64,
    /// Latencies, microseconds.
    latencies_us: Vec<u32>,
}

impl VersionStats {
    /// The `q` quantile of the latencies, milliseconds.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        Some(f64::from(v[i]) / 1000.0)
    }
}

/// The demo's outcome.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The deployment.
    pub deployment_id: String,
    /// `completed`, `rolled_back`, `failed`, or why it was interrupted.
    pub status: String,
    /// Ctrl-C stopped it.
    pub interrupted: bool,
    /// From and to.
    pub from: String,
    /// The version rolled out.
    pub to: String,
    /// Per answering version (`x-wasmswap-version`; `-` when none answered).
    pub by_version: BTreeMap<String, VersionStats>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Generated traffic: GETs spread over the nodes, paced to a rate.
struct Traffic {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<BTreeMap<String, VersionStats>>>,
    /// Answers per version in the last window, for the live split.
    window: Arc<Mutex<BTreeMap<String, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(data_urls: Vec<String>, rps: u32) -> Self {
        const WORKERS: u32 = 4;
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<BTreeMap<String, VersionStats>>> = Arc::default();
        let window: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let every = Duration::from_secs_f64(f64::from(WORKERS) / f64::from(rps.max(1)));
        let tasks = (0..WORKERS)
            .map(|w| {
                let (stop, stats, window, http, urls) = (
                    stop.clone(),
                    stats.clone(),
                    window.clone(),
                    http.clone(),
                    data_urls.clone(),
                );
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut i = u64::from(w);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        i += u64::from(WORKERS);
                        let url = &urls[(i as usize) % urls.len()];
                        let started = Instant::now();
                        // A fresh sticky key per request: the split shows
                        // as a share of requests.
                        let r = http
                            .get(format!("{url}/{SERVICE}/demo"))
                            .header("x-wasmswap-key", format!("user-{i}"))
                            .send()
                            .await;
                        let took = started.elapsed();
                        let (version, ok) = match r {
                            Ok(r) => (
                                r.headers()
                                    .get("x-wasmswap-version")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("-")
                                    .to_string(),
                                r.status().is_success() && r.bytes().await.is_ok(),
                            ),
                            Err(_) => ("-".to_string(), false),
                        };
                        {
                            let mut stats = stats.lock();
                            let s = stats.entry(version.clone()).or_default();
                            s.requests += 1;
                            s.errors += u64::from(!ok);
                            s.latencies_us
                                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        }
                        *window.lock().entry(version).or_default() += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            stats,
            window,
            tasks,
        }
    }

    /// The split over the answers since the last call, as text.
    fn live_split(&self) -> String {
        let w = std::mem::take(&mut *self.window.lock());
        let total: u64 = w.values().sum();
        if total == 0 {
            return String::new();
        }
        let parts: Vec<String> = w
            .iter()
            .map(|(v, n)| format!("v{v} {:.0} %", *n as f64 * 100.0 / total as f64))
            .collect();
        format!(" · live {}", parts.join(" / "))
    }

    fn totals(&self) -> (u64, u64) {
        let s = self.stats.lock();
        (
            s.values().map(|v| v.requests).sum(),
            s.values().map(|v| v.errors).sum(),
        )
    }

    async fn stop(self) -> BTreeMap<String, VersionStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.stats.lock())
    }
}

/// Runs the canary from `live` to the other bundled version, under traffic
/// on `data_urls`, until it ends or `cancel` resolves.
pub async fn run(
    api: &Api,
    live: &str,
    data_urls: Vec<String>,
    opts: &DemoOptions,
    cancel: impl Future<Output = ()>,
) -> Result<DemoSummary, CliError> {
    let target = if live == V1 { V2 } else { V1 };
    say(format!(
        "demo: canary {live} → {target}, stages 10/25/50/100 %, {} s each, {} requests/s over {} nodes",
        opts.stage_seconds,
        opts.rps,
        data_urls.len()
    ));
    let started = Instant::now();
    let traffic = Traffic::start(data_urls, opts.rps);
    let spec = json!({
        "moduleId": target,
        "strategy": "canary",
        "replicas": "all",
        "strategyConfig": {
            "stages": [10, 25, 50, 100],
            "evaluationPeriod": format!("PT{}S", opts.stage_seconds),
        },
        "healthCheck": { "httpPath": "/health", "intervalMs": 100 },
        "analysis": { "minSampleSize": 20 },
    });
    let created = deployments::deploy(api, &spec, true).await;
    let created = match created {
        Ok(d) => d,
        Err(e) => {
            traffic.stop().await;
            return Err(e);
        }
    };
    let id = created["deploymentId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bar = Bar::new(false);
    tokio::pin!(cancel);
    let mut last = created;
    let finished = loop {
        tokio::select! {
            () = &mut cancel => break false,
            () = tokio::time::sleep(Duration::from_millis(1000)) => {}
        }
        let d: Value = match api.get(&format!("/wasm/deployments/{id}")).await {
            Ok(d) => d,
            Err(e) => {
                traffic.stop().await;
                return Err(e);
            }
        };
        let (requests, errors) = traffic.totals();
        bar.update_with(
            &d,
            &format!(
                "{} · {requests} requests, {errors} errors",
                traffic.live_split()
            ),
        );
        last = d;
        if is_terminal(last["status"].as_str().unwrap_or_default()) {
            break true;
        }
    };
    let by_version = traffic.stop().await;
    let status = if finished {
        bar.finish(&last);
        last["status"].as_str().unwrap_or_default().to_string()
    } else {
        // Ctrl-C: put the live version back everywhere, so the next run
        // starts from a settled service instead of a 409.
        bar.finish(&last);
        match api
            .post(&format!("/wasm/deployments/{id}/abort"), None)
            .await
        {
            Ok(_) => {
                // Let the rollback reach every node before the nodes stop.
                let mut settled = false;
                for _ in 0..150 {
                    match api.get(&format!("/wasm/deployments/{id}")).await {
                        Ok(d) if is_terminal(d["status"].as_str().unwrap_or_default()) => {
                            settled = true;
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                if settled {
                    "interrupted (aborted: the previous version serves)".to_string()
                } else {
                    "interrupted (aborted; the rollback finishes on the next start)".to_string()
                }
            }
            Err(e) => format!("interrupted (abort failed: {e})"),
        }
    };
    Ok(DemoSummary {
        deployment_id: id,
        interrupted: !finished,
        status,
        from: live.to_string(),
        to: target.to_string(),
        by_version,
        elapsed: started.elapsed(),
    })
}

/// Prints the summary table.
pub fn print_summary(s: &DemoSummary) {
    let (requests, errors) = s
        .by_version
        .values()
        .fold((0, 0), |(r, e), v| (r + v.requests, e + v.errors));
    say(format!(
        "demo summary: {} → {} {} in {:.1} s · {requests} requests, {errors} errors",
        s.from,
        s.to,
        s.status,
        s.elapsed.as_secs_f64()
    ));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
    say(output::table(
        &[
            "VERSION", "REQUESTS", "ERRORS", "P50 MS", "P95 MS", "P99 MS",
        ],
        s.by_version.iter().map(|(v, st)| {
            vec![
                v.clone(),
                st.requests.to_string(),
                st.errors.to_string(),
                ms(st.quantile_ms(0.50)),
                ms(st.quantile_ms(0.95)),
                ms(st.quantile_ms(0.99)),
            ]
        }),
    ));
}
