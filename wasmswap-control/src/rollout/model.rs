//! What a deployment is: the request, its strategy, and the engine's
//! persisted state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Created; waits for `execute`.
    Pending,
    /// A production deployment (or one whose gates asked for it) waits for
    /// an admin's approval.
    AwaitingApproval,
    /// The engine is moving traffic.
    InProgress,
    /// Stopped by a person (or by a failure with `pauseOnFailure`): routes
    /// stay as they are until `resume`, `promote`, `abort` or `rollback`.
    Paused,
    /// Every target serves the new version (or, for A/B, the winner).
    Completed,
    /// A gate refused it before any traffic moved.
    Failed,
    /// Traffic went back to the previous version.
    RolledBack,
}

impl DeploymentStatus {
    /// Whether the engine still has work to do.
    pub fn is_active(self) -> bool {
        matches!(self, Self::InProgress)
    }

    /// Whether nothing more can happen (but a rollback of a completed one).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::RolledBack)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingApproval => "awaiting_approval",
            Self::InProgress => "in_progress",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

fn default_stages() -> Vec<f64> {
    vec![10.0, 25.0, 50.0, 100.0]
}
fn default_period() -> String {
    "PT1M".into()
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn yes() -> bool {
    true
}
fn default_health_timeout() -> String {
    "PT30S".into()
}
fn default_retention() -> String {
    "PT1H".into()
}
fn default_b() -> f64 {
    50.0
}

/// How a canary's share is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// A weighted, sticky split inside every target node.
    #[default]
    Weight,
    /// The share as a fraction of the target nodes, each fully switched.
    Nodes,
}

/// A strategy and its settings (the seed's field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "strategy", rename_all = "kebab-case")]
pub enum Strategy {
    /// Stages of growing traffic, each held and evaluated.
    #[serde(rename_all = "camelCase")]
    Canary {
        /// Traffic percentages, ending at 100. By default 10, 25, 50, 100.
        #[serde(default = "default_stages")]
        stages: Vec<f64>,
        /// How long each stage is held (ISO-8601, e.g. `PT5M`). By default `PT1M`.
        #[serde(default = "default_period")]
        evaluation_period: String,
        /// Passing evaluations needed to move on. By default 1.
        #[serde(default = "one")]
        success_threshold: u32,
        /// Failing evaluations that fail the stage. By default 3.
        #[serde(default = "three")]
        failure_threshold: u32,
        /// Move on by itself when a stage passes; else pause for `promote`. By default true.
        #[serde(default = "yes")]
        auto_promote: bool,
        /// A split inside each node, or a share of the nodes.
        #[serde(default)]
        granularity: Granularity,
    },
    /// The new version warm beside the old on every node, checked, then one switch.
    #[serde(rename_all = "camelCase")]
    BlueGreen {
        /// How long green may take to pass its health checks. By default `PT30S`.
        #[serde(default = "default_health_timeout")]
        health_check_timeout: String,
        /// Keep blue loaded after the switch (for instant rollback). By default true.
        #[serde(default = "yes")]
        keep_blue_environment: bool,
        /// With `keepBlueEnvironment` false: how long blue stays before it is
        /// unloaded. By default `PT1H`.
        #[serde(default = "default_retention")]
        blue_retention_period: String,
    },
    /// Batches of nodes, checked after each.
    #[serde(rename_all = "camelCase")]
    Rolling {
        /// Nodes per batch. By default 1.
        #[serde(default = "one")]
        batch_size: u32,
        /// Pause between batches (ISO-8601). By default `PT0S`.
        #[serde(default)]
        batch_delay: Option<String>,
        /// How long a batch may take to pass its health checks. By default `PT30S`.
        #[serde(default = "default_health_timeout")]
        health_check_timeout: String,
        /// On a failed batch: pause (true) or roll back (false). By default true.
        #[serde(default = "yes")]
        pause_on_failure: bool,
    },
    /// Region by region.
    #[serde(rename_all = "camelCase")]
    Regional {
        /// Region order (by default: the targets' regions, sorted).
        #[serde(default)]
        region_order: Vec<String>,
        /// Held between regions (ISO-8601). By default `PT1M`.
        #[serde(default = "default_period")]
        inter_region_delay: String,
        /// A failed region rolls back everything (true) or only itself (false). By default true.
        #[serde(default = "yes")]
        abort_on_region_failure: bool,
    },
    /// A sticky split for an experiment, then the better variant wins.
    #[serde(rename_all = "camelCase")]
    Ab {
        /// Variant B's (the new version's) share. By default 50.
        #[serde(default = "default_b")]
        variant_b_percentage: f64,
        /// How long the experiment runs (ISO-8601). By default `PT1M`.
        #[serde(default = "default_period")]
        experiment_duration: String,
        /// Promote the winner by itself; else pause for `promote`. By default true.
        #[serde(default = "yes")]
        auto_promote: bool,
    },
}

impl Strategy {
    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue-green",
            Strategy::Rolling { .. } => "rolling",
            Strategy::Regional { .. } => "regional",
            Strategy::Ab { .. } => "ab",
        }
    }
}

/// The health check run against a version on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Function to call (default `health_check` / `health-check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// For wasi-http versions: a path to GET instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Successes that make it healthy. By default 1.
    #[serde(default = "one")]
    pub success_threshold: u32,
    /// Failures that make it unhealthy. By default 3.
    #[serde(default = "three")]
    pub failure_threshold: u32,
    /// Pause between checks, ms. By default 100.
    #[serde(default = "hundred")]
    pub interval_ms: u64,
    /// Limit per check, ms. By default 5000.
    #[serde(default = "five_thousand")]
    pub timeout_ms: u64,
}

fn hundred() -> u64 {
    100
}
fn five_thousand() -> u64 {
    5000
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            function: None,
            http_path: None,
            success_threshold: 1,
            failure_threshold: 3,
            interval_ms: 100,
            timeout_ms: 5000,
        }
    }
}

/// Thresholds of the metric analysis and the automatic rollback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Analysis {
    /// Calls the candidate must have served before any decision. By default 50.
    pub min_sample_size: u64,
    /// Candidate error rate that fails it (and rolls back). By default 0.10.
    pub max_error_rate: f64,
    /// Candidate trap ("crash") rate that fails it. By default 0.05.
    pub max_crash_rate: f64,
    /// Candidate p95 latency may be at most this many times the stable's
    /// (plus 5 ms). By default 2.0.
    pub max_latency_ratio: f64,
    /// Candidate memory high-water may be at most this many times the
    /// stable's. By default 2.0.
    pub max_memory_ratio: f64,
    /// Significance level of the A/B test. By default 0.05.
    pub significance: f64,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            min_sample_size: 50,
            max_error_rate: 0.10,
            max_crash_rate: 0.05,
            max_latency_ratio: 2.0,
            max_memory_ratio: 2.0,
            significance: 0.05,
        }
    }
}

/// How many nodes per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Replicas {
    /// At most this many (1–3) healthy nodes with room per region.
    Count(u32),
    /// `"all"`: every healthy node with room.
    All(AllNodes),
}

/// The word `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllNodes {
    /// Every node.
    All,
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas::All(AllNodes::All)
    }
}

/// A deployment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The module version to roll out.
    pub module_id: String,
    /// Regions to deploy to (every healthy node in them, or `replicas` per region).
    #[serde(default)]
    pub target_regions: Vec<String>,
    /// Or these nodes.
    #[serde(default)]
    pub target_nodes: Vec<String>,
    /// Nodes per region: 1–3, or `"all"` (default).
    #[serde(default)]
    pub replicas: Replicas,
    /// `production` needs an admin's approval; anything else does not.
    #[serde(default = "default_env")]
    pub environment: String,
    /// `canary`, `blue-green`, `rolling`, `regional` or `ab`.
    #[schema(pattern = "^(canary|blue-green|rolling|regional|ab)$")]
    pub strategy: String,
    /// The strategy's settings (see [`Strategy`]; all optional; `null` or
    /// absent: the defaults).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub strategy_config: serde_json::Value,
    /// Checked against the new version on each node before it gets traffic
    /// and between steps.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Roll back by itself on the triggers (health, error, crash, memory).
    #[serde(default = "yes")]
    pub auto_rollback_enabled: bool,
    /// Metric analysis thresholds.
    #[serde(default)]
    pub analysis: Analysis,
}

fn default_env() -> String {
    "production".into()
}

impl DeploymentSpec {
    /// The typed strategy from `strategy` and `strategyConfig`.
    pub fn parse_strategy(&self) -> Result<Strategy, String> {
        let mut obj = match &self.strategy_config {
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::Object(m) => m.clone(),
            _ => return Err("strategyConfig must be an object".into()),
        };
        obj.insert(
            "strategy".into(),
            serde_json::Value::String(self.strategy.clone()),
        );
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| e.to_string())
    }
}

/// One step of a plan: the candidate's share on each node, held for a time,
/// then checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// A name for people (`stage 2: 25 %`, `region eu`).
    pub name: String,
    /// Candidate share per node, 0–100. Nodes not listed keep the stable version.
    pub weights: BTreeMap<String, f64>,
    /// How long traffic stays like this before the gate, ms.
    pub hold_ms: u64,
    /// Health-check the candidate on the nodes with a share before moving on.
    pub health_gate: bool,
    /// Compare candidate and stable metrics before moving on.
    pub metrics_gate: bool,
    /// Decide an A/B experiment here.
    pub ab_gate: bool,
    /// Limit on the health checks of this phase, ms.
    pub health_timeout_ms: u64,
    /// The region this phase moves (Regional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A gate's decision, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateDecision {
    /// Which gate: `wit`, `capabilities`, `health`, `metrics`, `ab`, `auto-rollback`.
    pub gate: String,
    /// Phase index (none for the gates before traffic moves).
    pub phase: Option<usize>,
    /// `pass`, `fail`, `insufficient-data`, `needs-approval`.
    pub outcome: String,
    /// Why, for people.
    pub reason: String,
    /// The numbers it decided on.
    #[schema(value_type = Object)]
    pub numbers: serde_json::Value,
    /// When, Unix ms.
    pub at: i64,
}

/// A node's part in a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// Node id.
    pub node_id: String,
    /// Region.
    pub region: String,
    /// `pending`, `loaded`, `routed`, `healthy`, `failed`, `rolled-back`.
    pub state: String,
    /// The candidate's share on it now.
    pub weight: f64,
    /// The last error with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The engine's persisted state of one deployment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineState {
    /// The phases, fixed when traffic starts to move.
    pub plan: Vec<Phase>,
    /// The phase being held (index into `plan`).
    pub phase: usize,
    /// Whether the phase's routes are set on every node.
    pub applied: bool,
    /// When the phase's routes were set, Unix ms.
    pub phase_started_at: Option<i64>,
    /// Evaluations passed / failed in this phase.
    pub passes: u32,
    /// Evaluations failed in this phase.
    pub failures: u32,
    /// Nodes and their part.
    pub nodes: Vec<NodeState>,
    /// Gate decisions, oldest first.
    pub gates: Vec<GateDecision>,
    /// Counters of both versions per node when the phase started (for
    /// deltas; `null` before traffic moves).
    #[schema(value_type = Option<Object>)]
    pub baseline: serde_json::Value,
    /// Regions that failed and were rolled back alone (Regional).
    pub failed_regions: Vec<String>,
    /// A/B: the winner (`A` stable, `B` candidate), once decided.
    pub winner: Option<String>,
    /// Waits for `promote` (a passed stage without autoPromote, an A/B result).
    pub awaiting_promotion: bool,
    /// Blue-Green: when the old version is unloaded, Unix ms.
    pub retire_at: Option<i64>,
    /// A rollback in progress: the routes are being restored.
    pub rolling_back: bool,
    /// Latest per-version metrics (summed over the nodes; `null` until a
    /// phase is held).
    #[schema(value_type = Option<Object>)]
    pub metrics: serde_json::Value,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Id.
    pub deployment_id: String,
    /// The service (module name).
    pub service: String,
    /// The version rolled out.
    pub module_id: String,
    /// The version it replaces (none for a first deployment).
    pub stable_module_id: Option<String>,
    /// Environment.
    pub environment: String,
    /// Strategy name.
    pub strategy: String,
    /// The request.
    pub spec: DeploymentSpec,
    /// Status.
    pub status: DeploymentStatus,
    /// 0–100.
    pub progress: f64,
    /// The phase's name.
    pub current_stage: Option<String>,
    /// Engine state (plan, per-node state, gate decisions, metrics).
    pub state: EngineState,
    /// Who created it.
    pub created_by: String,
    /// Who approved it (production).
    pub approved_by: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Write counter (optimistic concurrency).
    #[serde(skip)]
    pub revision: i64,
}

/// A deployment's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentEvent {
    /// Order.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Kind (`created`, `phase`, `gate`, `paused`, `rolled-back`, …).
    pub kind: String,
    /// For people.
    pub message: String,
    /// Numbers.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}
