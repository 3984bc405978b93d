//! Edge nodes: registrations, heartbeats, what each holds.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, audit, json_text, parse_json};
use crate::model::{Actor, Node, NodeCapacity, NodeHealth, rfc3339};

/// A node's registration (what `wasmswap-host` sends on start).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeUpdate {
    /// Unique id (`[A-Za-z0-9._-]`, at most 64 characters).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub node_id: String,
    /// Region (`[A-Za-z0-9._-]`, at most 64 characters).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub region: String,
    /// Zone within the region (`[A-Za-z0-9._-]`, at most 64 characters).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._-]{0,64}$")]
    pub zone: String,
    /// Capacity.
    pub capacity: NodeCapacity,
    /// Host and wasmtime versions.
    #[serde(default)]
    pub runtime_version: String,
    /// WASI worlds it runs.
    #[serde(default)]
    pub wasi_support: Vec<String>,
    /// Agent API base URL (`http://…`).
    pub agent_url: String,
    /// Data plane base URL (`http://…`).
    pub data_url: String,
}

/// A heartbeat's content (what `wasmswap-host` sends periodically).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node (must match the path).
    pub node_id: String,
    /// Versions loaded.
    pub loaded_modules: u32,
    /// Services with routes, versions and counters, as the agent reports them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub services: Vec<serde_json::Value>,
}

impl NodeReport {
    /// Module ids (`{service}-v{version}`) the report says are loaded.
    fn module_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for s in &self.services {
            let Some(service) = s.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            for v in s
                .get("versions")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(version) = v.get("version").and_then(|v| v.as_str()) {
                    ids.push(format!("{service}-v{version}"));
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

/// How long a reservation made for a load survives heartbeats that do not
/// list the module yet (a load takes a fetch and a compile).
const RESERVATION_GRACE_MS: i64 = 120_000;

const COLUMNS: &str = "id, region, zone, agent_url, data_url, max_modules, max_instances,
    runtime_version, wasi_support, registered_at, last_heartbeat_at, loaded_modules";

impl Store {
    fn node_from_row(
        &self,
        r: &AnyRow,
        modules: Vec<String>,
        heartbeat_timeout_ms: i64,
    ) -> Result<Node, StoreError> {
        let id: String = r.try_get("id")?;
        let last: i64 = r.try_get("last_heartbeat_at")?;
        let status = if self.clock.now_ms() - last > heartbeat_timeout_ms {
            NodeHealth::Unhealthy
        } else {
            NodeHealth::Healthy
        };
        let loaded: i64 = r.try_get("loaded_modules")?;
        Ok(Node {
            region: r.try_get("region")?,
            zone: r.try_get("zone")?,
            agent_url: r.try_get("agent_url")?,
            data_url: r.try_get("data_url")?,
            capacity: NodeCapacity {
                max_modules: r.try_get::<i64, _>("max_modules")? as u32,
                max_instances: r.try_get::<i64, _>("max_instances")? as u32,
            },
            runtime_version: r.try_get("runtime_version")?,
            wasi_support: parse_json(&r.try_get::<String, _>("wasi_support")?, &id)?,
            status,
            loaded_modules: (loaded as u32).max(modules.len() as u32),
            modules,
            registered_at: rfc3339(r.try_get("registered_at")?),
            last_heartbeat_at: rfc3339(last),
            node_id: id,
        })
    }

    async fn node_modules(&self, id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT module_id FROM node_modules WHERE node_id = $1 ORDER BY module_id")
            .bind(id)
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Registers a node, or updates a known one (a restarted node registers
    /// again). Counts as a heartbeat. Returns whether it was new.
    ///
    /// Update first, insert when nothing was updated: the transaction takes
    /// the write lock with its first statement (SQLite), and two concurrent
    /// registrations of one node cannot both report it new.
    pub async fn register_node(&self, n: &NodeUpdate, actor: &Actor) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let updated = sqlx::query(
            "UPDATE nodes SET region = $2, zone = $3, agent_url = $4, data_url = $5,
                max_modules = $6, max_instances = $7, runtime_version = $8, wasi_support = $9,
                last_heartbeat_at = $10
             WHERE id = $1",
        )
        .bind(&n.node_id)
        .bind(&n.region)
        .bind(&n.zone)
        .bind(&n.agent_url)
        .bind(&n.data_url)
        .bind(i64::from(n.capacity.max_modules))
        .bind(i64::from(n.capacity.max_instances))
        .bind(&n.runtime_version)
        .bind(json_text(&n.wasi_support))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let created = updated == 0;
        if created {
            let inserted = sqlx::query(
                "INSERT INTO nodes (id, region, zone, agent_url, data_url, max_modules, max_instances,
                    runtime_version, wasi_support, registered_at, last_heartbeat_at, loaded_modules, services)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 0, '[]')",
            )
            .bind(&n.node_id)
            .bind(&n.region)
            .bind(&n.zone)
            .bind(&n.agent_url)
            .bind(&n.data_url)
            .bind(i64::from(n.capacity.max_modules))
            .bind(i64::from(n.capacity.max_instances))
            .bind(&n.runtime_version)
            .bind(json_text(&n.wasi_support))
            .bind(now)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                return Err(if super::is_unique_violation(&e) {
                    StoreError::Busy(format!(
                        "node {} is registering concurrently; retry",
                        n.node_id
                    ))
                } else {
                    e.into()
                });
            }
        }
        let action = if created {
            "node.register"
        } else {
            "node.reregister"
        };
        audit::record(
            &mut tx,
            now,
            actor,
            action,
            &n.node_id,
            &serde_json::json!({ "region": n.region, "zone": n.zone, "agentUrl": n.agent_url }),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Records a heartbeat and what the node holds. `NotFound` for an
    /// unknown node (it then registers again). Heartbeats are not audited:
    /// they change no state anyone decided.
    pub async fn heartbeat(&self, report: &NodeReport) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE nodes SET last_heartbeat_at = $2, loaded_modules = $3, services = $4 WHERE id = $1",
        )
        .bind(&report.node_id)
        .bind(now)
        .bind(i64::from(report.loaded_modules))
        .bind(json_text(&report.services))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("node {}", report.node_id)));
        }
        // The report is the truth about what the node holds, except for
        // places reserved moments ago whose load may still be on its way.
        sqlx::query("DELETE FROM node_modules WHERE node_id = $1 AND loaded_at < $2")
            .bind(&report.node_id)
            .bind(now - RESERVATION_GRACE_MS)
            .execute(&mut *tx)
            .await?;
        for id in report.module_ids() {
            sqlx::query(
                "INSERT INTO node_modules (node_id, module_id, loaded_at) VALUES ($1, $2, $3)
                 ON CONFLICT (node_id, module_id) DO UPDATE SET loaded_at = excluded.loaded_at",
            )
            .bind(&report.node_id)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reserves a place for `module_id` on a node before the control plane
    /// loads it there, unless the node already holds `max_modules`; the
    /// check and the reservation are one statement. Returns false when the
    /// node is full. Audited as `node.load`.
    pub async fn reserve_slot(
        &self,
        node_id: &str,
        module_id: &str,
        max_modules: u32,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let reserved = sqlx::query(
            "INSERT INTO node_modules (node_id, module_id, loaded_at)
             SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM node_modules WHERE node_id = $1) < $4
               AND (SELECT loaded_modules FROM nodes WHERE id = $1) < $4
             ON CONFLICT (node_id, module_id) DO NOTHING",
        )
        .bind(node_id)
        .bind(module_id)
        .bind(now)
        .bind(i64::from(max_modules))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if reserved == 0 {
            let held =
                sqlx::query("SELECT 1 FROM node_modules WHERE node_id = $1 AND module_id = $2")
                    .bind(node_id)
                    .bind(module_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            return Ok(held);
        }
        audit::record(
            &mut tx,
            now,
            actor,
            "node.load",
            node_id,
            &serde_json::json!({ "moduleId": module_id }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Notes that a node holds `module_id` (the rollout engine loaded it).
    pub async fn note_held(&self, node_id: &str, module_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO node_modules (node_id, module_id, loaded_at) VALUES ($1, $2, $3)
             ON CONFLICT (node_id, module_id) DO UPDATE SET loaded_at = excluded.loaded_at",
        )
        .bind(node_id)
        .bind(module_id)
        .bind(self.clock.now_ms())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Gives back a reservation whose load failed.
    pub async fn release_slot(&self, node_id: &str, module_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM node_modules WHERE node_id = $1 AND module_id = $2")
            .bind(node_id)
            .bind(module_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// One node.
    pub async fn get_node(&self, id: &str, heartbeat_timeout_ms: i64) -> Result<Node, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM nodes WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("node {id}")))?;
        let modules = self.node_modules(id).await?;
        self.node_from_row(&row, modules, heartbeat_timeout_ms)
    }

    /// Every node (optionally one region's), by region then id.
    pub async fn list_nodes(
        &self,
        region: Option<&str>,
        heartbeat_timeout_ms: i64,
    ) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM nodes WHERE ($1 IS NULL OR region = $1) ORDER BY region, id"
        ))
        .bind(region.map(str::to_string))
        .fetch_all(&self.db)
        .await?;
        // What every listed node holds, in one query rather than one per node.
        let mut held: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in sqlx::query(
            "SELECT nm.node_id, nm.module_id FROM node_modules nm JOIN nodes n ON n.id = nm.node_id
             WHERE ($1 IS NULL OR n.region = $1) ORDER BY nm.module_id",
        )
        .bind(region.map(str::to_string))
        .fetch_all(&self.db)
        .await?
        {
            held.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let modules = held.remove(&id).unwrap_or_default();
                self.node_from_row(r, modules, heartbeat_timeout_ms)
            })
            .collect()
    }

    /// The last services report of a node.
    pub async fn node_services(&self, id: &str) -> Result<serde_json::Value, StoreError> {
        let row = sqlx::query("SELECT services FROM nodes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("node {id}")))?;
        parse_json(&row.try_get::<String, _>(0)?, id)
    }

    /// Forgets a node.
    pub async fn delete_node(&self, id: &str, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM node_modules WHERE node_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("node {id}")));
        }
        audit::record(
            &mut tx,
            self.clock.now_ms(),
            actor,
            "node.delete",
            id,
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
