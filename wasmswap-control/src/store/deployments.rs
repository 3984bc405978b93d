//! Deployments and their events. Each write checks the revision it read,
//! so two writers (an API call and the engine) never overwrite each other:
//! the later one gets a conflict and reads again.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, audit, json_text, parse_json};
use crate::model::{Actor, rfc3339};
use crate::rollout::model::{
    Deployment, DeploymentEvent, DeploymentSpec, DeploymentStatus, EngineState,
};

const COLUMNS: &str =
    "id, service, module_id, stable_id, environment, strategy, spec, status, state,
    revision, created_by, approved_by, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<Deployment, StoreError> {
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let state: EngineState = parse_json(&r.try_get::<String, _>("state")?, &id)?;
    let spec: DeploymentSpec = parse_json(&r.try_get::<String, _>("spec")?, &id)?;
    let total = state.plan.len().max(1) as f64;
    let status = DeploymentStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(id.clone()))?;
    let progress = match status {
        DeploymentStatus::Completed => 100.0,
        _ if state.plan.is_empty() => 0.0,
        _ => {
            let done = state.phase as f64 + if state.applied { 0.5 } else { 0.0 };
            (done / total * 100.0).min(99.0)
        }
    };
    Ok(Deployment {
        service: r.try_get("service")?,
        module_id: r.try_get("module_id")?,
        stable_module_id: r.try_get("stable_id")?,
        environment: r.try_get("environment")?,
        strategy: r.try_get("strategy")?,
        current_stage: state.plan.get(state.phase).map(|p| p.name.clone()),
        progress,
        spec,
        status,
        state,
        created_by: r.try_get("created_by")?,
        approved_by: r.try_get("approved_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
        revision: r.try_get("revision")?,
        deployment_id: id,
    })
}

impl Store {
    /// Stores a new deployment.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_deployment(
        &self,
        id: &str,
        service: &str,
        stable_id: Option<&str>,
        spec: &DeploymentSpec,
        status: DeploymentStatus,
        state: &EngineState,
        actor: &Actor,
    ) -> Result<Deployment, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, service, module_id, stable_id, environment, strategy, spec,
                status, state, revision, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $11)",
        )
        .bind(id)
        .bind(service)
        .bind(&spec.module_id)
        .bind(stable_id.map(str::to_string))
        .bind(&spec.environment)
        .bind(&spec.strategy)
        .bind(json_text(spec))
        .bind(status.as_str())
        .bind(json_text(state))
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if super::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "another deployment of {service} is underway; finish, abort or roll it back first"
                )));
            }
            other => other?,
        };
        event_in(
            &mut tx,
            id,
            now,
            "created",
            &format!("{} of {} created", spec.strategy, spec.module_id),
            &serde_json::json!({}),
        )
        .await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "deployment.create",
            id,
            &serde_json::json!({ "moduleId": spec.module_id, "strategy": spec.strategy }),
        )
        .await?;
        tx.commit().await?;
        self.get_deployment(id).await
    }

    /// One deployment.
    pub async fn get_deployment(&self, id: &str) -> Result<Deployment, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM deployments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        from_row(&row)
    }

    /// Deployments, newest first, optionally of one service or status.
    pub async fn list_deployments(
        &self,
        service: Option<&str>,
        status: Option<DeploymentStatus>,
        limit: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE ($1 IS NULL OR service = $1) AND ($2 IS NULL OR status = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(service.map(str::to_string))
        .bind(status.map(|s| s.as_str().to_string()))
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Ids of deployments the engine has work on: in progress, or
    /// completed with an old version still to retire.
    pub async fn engine_work(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT id FROM deployments WHERE status = 'in_progress'
               OR (status = 'completed' AND retire_at IS NOT NULL)
             ORDER BY created_at",
        )
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
    }

    /// Whether another deployment of `service` is underway.
    pub async fn active_deployment_of(&self, service: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT id FROM deployments WHERE service = $1
               AND status IN ('pending', 'awaiting_approval', 'in_progress', 'paused') LIMIT 1",
        )
        .bind(service)
        .fetch_optional(&self.db)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    /// The module serving `service` now: that of its last completed
    /// deployment (A/B: its winner), if any.
    pub async fn live_module(&self, service: &str) -> Result<Option<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE service = $1 AND status IN ('completed', 'rolled_back')
             ORDER BY finished_at DESC, id DESC LIMIT 1"
        ))
        .bind(service)
        .fetch_all(&self.db)
        .await?;
        let Some(d) = rows.first().map(from_row).transpose()? else {
            return Ok(None);
        };
        Ok(match d.status {
            DeploymentStatus::Completed if d.state.winner.as_deref() == Some("A") => {
                d.stable_module_id
            }
            DeploymentStatus::Completed => Some(d.module_id),
            _ => d.stable_module_id,
        })
    }

    /// Writes a deployment's status and state if nobody else wrote since
    /// `d.revision` was read; records `event` and audits `action` (when
    /// given) in the same transaction. `Conflict` when it lost the race.
    pub async fn save_deployment(
        &self,
        d: &Deployment,
        event: Option<(&str, &str, serde_json::Value)>,
        audit_as: Option<(&Actor, &str)>,
    ) -> Result<Deployment, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE deployments SET status = $2, state = $3, approved_by = $4, revision = revision + 1,
                updated_at = $5, retire_at = $7,
                finished_at = CASE WHEN $2 IN ('completed', 'rolled_back', 'failed')
                                   THEN COALESCE(finished_at, $5) ELSE NULL END
             WHERE id = $1 AND revision = $6",
        )
        .bind(&d.deployment_id)
        .bind(d.status.as_str())
        .bind(json_text(&d.state))
        .bind(d.approved_by.clone())
        .bind(now)
        .bind(d.revision)
        .bind(d.state.retire_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "deployment {} changed meanwhile; retry",
                d.deployment_id
            )));
        }
        if let Some((kind, message, details)) = &event {
            event_in(&mut tx, &d.deployment_id, now, kind, message, details).await?;
        }
        if let Some((actor, action)) = audit_as {
            audit::record(
                &mut tx,
                now,
                actor,
                action,
                &d.deployment_id,
                &serde_json::json!({ "status": d.status }),
            )
            .await?;
        }
        tx.commit().await?;
        self.get_deployment(&d.deployment_id).await
    }

    /// A deployment's events, oldest first.
    pub async fn deployment_events(&self, id: &str) -> Result<Vec<DeploymentEvent>, StoreError> {
        sqlx::query("SELECT seq, at, kind, message, details FROM deployment_events WHERE deployment_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                Ok(DeploymentEvent {
                    seq,
                    at: rfc3339(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    details: parse_json(&r.try_get::<String, _>("details")?, &format!("event {seq}"))?,
                })
            })
            .collect()
    }
}

async fn event_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at: i64,
    kind: &str,
    message: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO deployment_events (deployment_id, at, kind, message, details) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(at)
        .bind(kind)
        .bind(message)
        .bind(json_text(details))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
