//! `wasmswap deploy`, `status [--watch]`, and the rollout controls
//! (promote, pause, resume, abort, rollback, approve).

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::client::{Api, CliError};
use crate::modules::encode;
use crate::output::{self, candidate_share, is_terminal, s, say};

/// `deploy`: creates the deployment and, unless `start` is false, starts it.
pub async fn deploy(api: &Api, spec: &Value, start: bool) -> Result<Value, CliError> {
    let created = api.post("/wasm/deployments", Some(spec)).await?;
    let id = created["deploymentId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !start {
        return Ok(created);
    }
    match api
        .post(&format!("/wasm/deployments/{}/execute", encode(&id)), None)
        .await
    {
        Ok(d) => Ok(d),
        Err(e) => {
            // A pending deployment counts as the service's active one and
            // would refuse every later deploy: take it back.
            let abort = api
                .post(&format!("/wasm/deployments/{}/abort", encode(&id)), None)
                .await;
            let what = if abort.is_ok() {
                "was created, could not start, and was aborted"
            } else {
                "was created but could not start; abort it with `wasmswap abort`"
            };
            Err(CliError::Other(anyhow::anyhow!(
                "deployment {id} {what}: {e}"
            )))
        }
    }
}

/// A control: `promote`, `pause`, `resume`, `abort`, `rollback`, `approve`.
pub async fn control(
    api: &Api,
    id: &str,
    action: &str,
    body: Option<&Value>,
) -> Result<Value, CliError> {
    api.post(&format!("/wasm/deployments/{}/{action}", encode(id)), body)
        .await
}

/// `status` without an id: the deployments, newest first.
pub async fn list(api: &Api, service: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut path = "/wasm/deployments?limit=50".to_string();
    if let Some(svc) = service {
        path.push_str(&format!("&service={}", encode(svc)));
    }
    let v = api.get(&path).await?;
    if json {
        output::json(&v);
        return Ok(());
    }
    let rows = v.as_array().cloned().unwrap_or_default();
    say(output::table(
        &[
            "DEPLOYMENT",
            "SERVICE",
            "FROM",
            "TO",
            "STRATEGY",
            "STATUS",
            "PROGRESS",
            "STAGE",
            "CREATED",
        ],
        rows.iter().map(|d| {
            vec![
                s(d, "deploymentId"),
                s(d, "service"),
                s(d, "stableModuleId"),
                s(d, "moduleId"),
                s(d, "strategy"),
                s(d, "status"),
                format!("{:.0} %", d["progress"].as_f64().unwrap_or(0.0)),
                s(d, "currentStage"),
                s(d, "createdAt"),
            ]
        }),
    ));
    Ok(())
}

/// One line on a deployment's state: status, stage, split, numbers.
pub fn summary_line(d: &Value) -> String {
    let share = candidate_share(d);
    let mut line = format!(
        "{} · {} · traffic {} {:.0} % / {} {:.0} %",
        s(d, "status"),
        s(d, "currentStage"),
        d["stableModuleId"].as_str().unwrap_or("(none)"),
        100.0 - share,
        s(d, "moduleId"),
        share
    );
    let a = &d["state"]["metrics"]["analysis"];
    if a.is_object() {
        line.push_str(&format!(
            " · errors {} % vs {} % · p95 {} vs {} ms",
            output::num(
                &a["candidate"]["errorRate"]
                    .as_f64()
                    .map(|r| r * 100.0)
                    .into(),
                1
            ),
            output::num(
                &a["stable"]["errorRate"].as_f64().map(|r| r * 100.0).into(),
                1
            ),
            output::num(&a["candidate"]["p95Ms"], 1),
            output::num(&a["stable"]["p95Ms"], 1),
        ));
    }
    if d["state"]["awaitingPromotion"].as_bool() == Some(true) {
        line.push_str(" · waiting for `promote`");
    }
    if d["state"]["rollingBack"].as_bool() == Some(true) {
        line.push_str(" · rolling back");
    }
    line
}

/// Prints one deployment.
pub fn show(d: &Value, json: bool) {
    if json {
        return output::json(d);
    }
    say(format!("Deployment {}", s(d, "deploymentId")));
    say(format!(
        "  {} {} → {} ({}, {})",
        s(d, "service"),
        d["stableModuleId"].as_str().unwrap_or("(first)"),
        s(d, "moduleId"),
        s(d, "strategy"),
        s(d, "environment")
    ));
    say(format!(
        "  {} {:.0} %  {}",
        output::bar(d["progress"].as_f64().unwrap_or(0.0), 30),
        d["progress"].as_f64().unwrap_or(0.0),
        summary_line(d)
    ));
    let nodes = d["state"]["nodes"].as_array().cloned().unwrap_or_default();
    if !nodes.is_empty() {
        say(output::table(
            &["NODE", "REGION", "STATE", "CANDIDATE %", "ERROR"],
            nodes.iter().map(|n| {
                vec![
                    s(n, "nodeId"),
                    s(n, "region"),
                    s(n, "state"),
                    output::num(&n["weight"], 1),
                    s(n, "error"),
                ]
            }),
        ));
    }
    if let Some(g) = d["state"]["gates"].as_array().and_then(|g| g.last()) {
        say(format!(
            "  last gate: {} {} — {}",
            s(g, "gate"),
            s(g, "outcome"),
            s(g, "reason")
        ));
    }
}

/// Shows a deployment's progress until it ends: a progress bar on a
/// terminal, one line per change otherwise. Returns the final deployment;
/// an error if it ended failed or rolled back, waits for someone, or is
/// still going after `timeout` seconds.
pub async fn watch(
    api: &Api,
    id: &str,
    json: bool,
    timeout: Option<u64>,
) -> Result<Value, CliError> {
    let d = follow(
        api,
        id,
        &Bar::new(json),
        timeout,
        Duration::from_millis(500),
    )
    .await?;
    if json {
        output::json(&d);
    }
    completed(api, id, d).await
}

/// Event kinds that say why a deployment did not complete.
const ENDING_EVENTS: [&str; 4] = ["rolling-back", "aborting", "aborted", "failed"];

/// `d` (a deployment that ended) if it completed, else why not: the
/// reason comes from its latest rollback, abort or failure event, so a
/// pipeline's log says what to fix rather than only that it failed.
pub async fn completed(api: &Api, id: &str, d: Value) -> Result<Value, CliError> {
    let status = s(&d, "status");
    if status == "completed" {
        return Ok(d);
    }
    // Best effort: the status alone is still an answer.
    let why = api
        .get(&format!("/wasm/deployments/{}/events", encode(id)))
        .await
        .ok()
        .and_then(|events| {
            events.as_array()?.iter().rev().find_map(|e| {
                ENDING_EVENTS
                    .contains(&e["kind"].as_str()?)
                    .then(|| s(e, "message"))
            })
        });
    Err(CliError::RolloutFailed {
        id: id.to_string(),
        status,
        why,
    })
}

/// Polls deployment `id` every `every`, showing it on `bar`, until it ends
/// (completed, failed or rolled back: returned), waits for someone, or
/// `timeout` seconds pass (both errors).
pub async fn follow(
    api: &Api,
    id: &str,
    bar: &Bar,
    timeout: Option<u64>,
    every: Duration,
) -> Result<Value, CliError> {
    let path = format!("/wasm/deployments/{}", encode(id));
    let deadline = timeout.map(|t| std::time::Instant::now() + Duration::from_secs(t));
    loop {
        let d = api.get(&path).await?;
        bar.update(&d);
        let status = s(&d, "status");
        if is_terminal(&status) {
            bar.finish(&d);
            return Ok(d);
        }
        let stuck = waits_for_someone(&d).or_else(|| {
            deadline
                .filter(|t| std::time::Instant::now() >= *t)
                .map(|_| format!("is still {status} after {} s", timeout.unwrap_or(0)))
        });
        if let Some(reason) = stuck {
            bar.finish(&d);
            return Err(CliError::NeedsAction {
                id: id.to_string(),
                reason,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Why a deployment will not move without someone, if it will not: it
/// waits for `execute` or an approval, or paused after a failed check.
pub fn waits_for_someone(d: &Value) -> Option<String> {
    match d["status"].as_str()? {
        "pending" => Some("is pending: start it with `POST …/execute`".into()),
        "awaiting_approval" => Some("awaits an admin's approval (`wasmswap approve ID`)".into()),
        "paused" => {
            let gate = d["state"]["gates"].as_array()?.last()?;
            (gate["outcome"] == "fail").then(|| {
                format!(
                    "paused after a failed {} check ({}): resume or roll back",
                    s(gate, "gate"),
                    s(gate, "reason")
                )
            })
        }
        _ => None,
    }
}

/// A deployment's progress: indicatif on a terminal, plain lines otherwise
/// (logs, CI), nothing with `--json`.
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
    last: parking_lot::Mutex<String>,
}

impl Bar {
    /// A bar on stdout when it is a terminal.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let b = ProgressBar::new(100);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30.green/red}] {pos:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("█▉░"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self {
            bar,
            quiet,
            last: parking_lot::Mutex::new(String::new()),
        }
    }

    /// Shows `d` (with `extra` appended, e.g. live traffic counts).
    pub fn update_with(&self, d: &Value, extra: &str) {
        let progress = d["progress"].as_f64().unwrap_or(0.0);
        let line = summary_line(d);
        if let Some(b) = &self.bar {
            b.set_position(progress.round() as u64);
            b.set_message(format!("{line}{extra}"));
        } else if !self.quiet {
            // Without a terminal: a line when the status or stage changes.
            let key = format!("{} {}", s(d, "status"), s(d, "currentStage"));
            let mut last = self.last.lock();
            if *last != key {
                *last = key;
                say(format!("[{progress:>3.0}%] {line}{extra}"));
            }
        }
    }

    /// Shows `d`.
    pub fn update(&self, d: &Value) {
        self.update_with(d, "");
    }

    /// Ends the bar with the final state.
    pub fn finish(&self, d: &Value) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if !self.quiet {
            say(format!(
                "deployment {}: {}",
                s(d, "deploymentId"),
                summary_line(d)
            ));
        }
    }
}

/// The JSON spec `deploy`'s flags describe.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// Module to roll out.
    pub module_id: String,
    /// `canary`, `blue-green`, `rolling`, `regional`, `ab`.
    pub strategy: String,
    /// Strategy settings (merged over the defaults).
    pub strategy_config: Value,
    /// Regions to deploy to (all when empty).
    pub regions: Vec<String>,
    /// Nodes to deploy to (all when empty).
    pub nodes: Vec<String>,
    /// Replicas: a count or `all`.
    pub replicas: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Health-check HTTP path (wasi-http services).
    pub health_path: Option<String>,
    /// Health-check function (JSON services).
    pub health_function: Option<String>,
    /// Whether the triggers may roll back by themselves.
    pub auto_rollback: bool,
    /// Minimum calls before metrics are judged.
    pub min_samples: Option<u64>,
}

impl DeploySpec {
    /// The request body.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "moduleId": self.module_id,
            "strategy": self.strategy,
            "strategyConfig": self.strategy_config,
            "autoRollbackEnabled": self.auto_rollback,
        });
        if !self.regions.is_empty() {
            v["targetRegions"] = json!(self.regions);
        }
        if !self.nodes.is_empty() {
            v["targetNodes"] = json!(self.nodes);
        }
        if let Some(r) = &self.replicas {
            v["replicas"] = r.parse::<u32>().map_or_else(|_| json!(r), |n| json!(n));
        }
        if let Some(e) = &self.environment {
            v["environment"] = json!(e);
        }
        let mut hc = serde_json::Map::new();
        if let Some(p) = &self.health_path {
            hc.insert("httpPath".into(), json!(p));
        }
        if let Some(f) = &self.health_function {
            hc.insert("function".into(), json!(f));
        }
        if !hc.is_empty() {
            v["healthCheck"] = Value::Object(hc);
        }
        if let Some(n) = self.min_samples {
            v["analysis"] = json!({ "minSampleSize": n });
        }
        v
    }
}
