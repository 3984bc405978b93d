//! The records the store keeps and the API returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a module version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModuleStatus {
    /// Stored and validated; not serving anywhere through a deployment.
    Registered,
    /// A deployment serves it: it cannot be deleted or pruned.
    Deployed,
}

impl ModuleStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Deployed => "deployed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "registered" => Some(Self::Registered),
            "deployed" => Some(Self::Deployed),
            _ => None,
        }
    }
}

/// Per-call limits a module asks for (the seed's names and ranges).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleLimits {
    /// Linear memory cap, MiB (1–512). By default 128.
    #[serde(default = "default_memory", rename = "maxMemoryMB")]
    pub max_memory_mb: u32,
    /// CPU share, percent (1–100). By default 50.
    #[serde(default = "default_cpu")]
    pub max_cpu_percent: u32,
    /// Wall-clock limit per call, seconds (1–300). By default 30.
    #[serde(default = "default_time")]
    pub max_execution_time_seconds: u32,
}

fn default_memory() -> u32 {
    128
}
fn default_cpu() -> u32 {
    50
}
fn default_time() -> u32 {
    30
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            max_memory_mb: default_memory(),
            max_cpu_percent: default_cpu(),
            max_execution_time_seconds: default_time(),
        }
    }
}

impl ModuleLimits {
    /// The first limit outside its range, as a message.
    pub fn check(&self) -> Result<(), String> {
        let ranges = [
            ("maxMemoryMB", self.max_memory_mb, 1, 512),
            ("maxCpuPercent", self.max_cpu_percent, 1, 100),
            (
                "maxExecutionTimeSeconds",
                self.max_execution_time_seconds,
                1,
                300,
            ),
        ];
        for (name, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return Err(format!("limits.{name} is {value}; allowed {lo}–{hi}"));
            }
        }
        Ok(())
    }
}

/// One exported function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportedFunction {
    /// Its name (a component's `interface#function` for exported interfaces).
    pub name: String,
    /// Its signature.
    pub signature: String,
}

/// A registered module version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    /// `{name}-v{version}`.
    pub module_id: String,
    /// Module name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Free text.
    pub description: String,
    /// SHA-256 of the binary, hex.
    pub checksum: String,
    /// Size of the binary.
    pub size_bytes: u64,
    /// `module` or `component`.
    pub kind: String,
    /// `preview1`, `preview2` or `none`.
    pub wasi_version: String,
    /// Exports with their signatures.
    pub exported_functions: Vec<ExportedFunction>,
    /// Imports (`module::name`, or interface names for components).
    pub imports: Vec<String>,
    /// Interfaces (`ns/name@version`) the module says it needs.
    pub required_interfaces: Vec<String>,
    /// Per-call limits.
    pub limits: ModuleLimits,
    /// Caller-defined labels.
    pub metadata: BTreeMap<String, String>,
    /// Whether a WIT world is available (components only).
    pub has_wit: bool,
    /// Registered or deployed.
    pub status: ModuleStatus,
    /// Who registered it.
    pub created_by: String,
    /// When, RFC 3339.
    pub created_at: String,
}

/// What registering needs besides the binary.
#[derive(Debug, Clone)]
pub struct NewModule {
    /// Module name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Free text.
    pub description: String,
    /// Requested interfaces.
    pub required_interfaces: Vec<String>,
    /// Limits.
    pub limits: ModuleLimits,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// `module`/`component`.
    pub kind: String,
    /// `preview1`/`preview2`/`none`.
    pub wasi_version: String,
    /// Exports.
    pub exported_functions: Vec<ExportedFunction>,
    /// Imports.
    pub imports: Vec<String>,
    /// The component's world as WIT text.
    pub wit: Option<String>,
}

/// A node's health as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    /// Heartbeats arrive on time.
    Healthy,
    /// No heartbeat within the timeout: excluded from placement.
    Unhealthy,
}

/// Node capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapacity {
    /// Module versions it holds at once.
    pub max_modules: u32,
    /// Concurrent instances.
    pub max_instances: u32,
}

/// An edge node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Unique id.
    pub node_id: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Agent API base URL.
    pub agent_url: String,
    /// Data plane base URL.
    pub data_url: String,
    /// Capacity.
    pub capacity: NodeCapacity,
    /// Host and wasmtime versions.
    pub runtime_version: String,
    /// WASI worlds it runs.
    pub wasi_support: Vec<String>,
    /// Healthy or not.
    pub status: NodeHealth,
    /// Module versions loaded (last heartbeat or load).
    pub loaded_modules: u32,
    /// Module ids it holds.
    pub modules: Vec<String>,
    /// Registered at, RFC 3339.
    pub registered_at: String,
    /// Last heartbeat, RFC 3339.
    pub last_heartbeat_at: String,
}

/// A registered interface version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// `{namespace}/{name}@{version}`.
    pub interface_id: String,
    /// WIT package namespace.
    pub namespace: String,
    /// WIT package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The interface of the package this entry registers.
    pub interface: String,
    /// Whose code changes are judged by: `callers`, `implementers`, `both`, `none`.
    pub compatibility: String,
    /// `draft`, `approved` or `deprecated`.
    pub status: String,
    /// Usable by deployments: approved, deprecated, or a draft that breaks nobody.
    pub cleared: bool,
    /// The WIT text.
    pub wit: String,
    /// The review against the previous version (diff, semver gate).
    #[schema(value_type = Object)]
    pub review: serde_json::Value,
    /// Who registered it.
    pub created_by: String,
    /// When, RFC 3339.
    pub created_at: String,
    /// Who approved it.
    pub approved_by: Option<String>,
}

/// One audited state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Sequence number (increasing).
    pub seq: i64,
    /// When, RFC 3339.
    pub at: String,
    /// Who: a user name, or `node:{id}`.
    pub actor: String,
    /// Their role.
    pub role: String,
    /// What, e.g. `module.register`.
    pub action: String,
    /// On what, e.g. a module id.
    pub target: String,
    /// The request that made it.
    pub request_id: String,
    /// From where (peer address).
    pub client: String,
    /// More about it.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Who did something, written with the change in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// User name or `node:{id}`.
    pub name: String,
    /// Role.
    pub role: String,
    /// Request id.
    pub request_id: String,
    /// Peer address.
    pub client: String,
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
