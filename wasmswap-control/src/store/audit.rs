//! The audit log: written inside the transaction of the change it records.

use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, json_text, parse_json};
use crate::model::{Actor, AuditRecord, rfc3339};

/// Appends one record in `tx`.
pub(super) async fn record(
    tx: &mut Transaction<'_, Any>,
    at: i64,
    actor: &Actor,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, role, action, target, request_id, client, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(&actor.name)
    .bind(&actor.role)
    .bind(action)
    .bind(target)
    .bind(&actor.request_id)
    .bind(&actor.client)
    .bind(json_text(details))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which audit records to return.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this (`module.` matches every module action).
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

impl Store {
    /// Records a change that touched no other table (e.g. a login).
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        record(&mut tx, self.clock.now_ms(), actor, action, target, details).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit records, newest first, and how many match in all.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<(Vec<AuditRecord>, i64), StoreError> {
        // A prefix match that means the same on both databases (LIKE has
        // wildcards in `_` and differs in case sensitivity).
        let action_prefix = filter.action.clone();
        const WHERE: &str = "WHERE ($1 IS NULL OR actor = $1)
               AND ($2 IS NULL OR substr(action, 1, length($2)) = $2)
               AND ($3 IS NULL OR target = $3)";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM audit {WHERE}"))
            .bind(filter.actor.clone())
            .bind(action_prefix.clone())
            .bind(filter.target.clone())
            .fetch_one(&self.db)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(&format!(
            "SELECT seq, at, actor, role, action, target, request_id, client, details
             FROM audit {WHERE} ORDER BY seq DESC LIMIT $4 OFFSET $5"
        ))
        .bind(filter.actor.clone())
        .bind(action_prefix)
        .bind(filter.target.clone())
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(&self.db)
        .await?;
        let records = rows
            .iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                Ok(AuditRecord {
                    seq,
                    at: rfc3339(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    role: r.try_get("role")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    request_id: r.try_get("request_id")?,
                    client: r.try_get("client")?,
                    details: parse_json(
                        &r.try_get::<String, _>("details")?,
                        &format!("audit {seq}"),
                    )?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((records, total))
    }
}
