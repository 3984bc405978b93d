//! Pins: a node held on a version, or a region's default version.

use sqlx::Row;

use super::{Store, StoreError, audit};
use crate::model::{Actor, rfc3339};

/// A pin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// The service.
    pub service: String,
    /// `node` or `region`.
    pub scope: String,
    /// Node id or region.
    pub target: String,
    /// The version it is held on.
    pub module_id: String,
    /// Whether the nodes are routed to it yet.
    pub applied: bool,
    /// Who set it.
    pub created_by: String,
    /// When, RFC 3339.
    pub created_at: String,
}

impl Store {
    /// Sets (or moves) a pin; the engine applies it.
    pub async fn set_pin(
        &self,
        service: &str,
        scope: &str,
        target: &str,
        module_id: &str,
        actor: &Actor,
    ) -> Result<Pin, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO pins (service, scope, target, module_id, applied, created_by, created_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6)
             ON CONFLICT (service, scope, target) DO UPDATE SET module_id = excluded.module_id,
                applied = 0, created_by = excluded.created_by, created_at = excluded.created_at",
        )
        .bind(service)
        .bind(scope)
        .bind(target)
        .bind(module_id)
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "pin.set",
            &format!("{service}/{scope}/{target}"),
            &serde_json::json!({ "moduleId": module_id }),
        )
        .await?;
        tx.commit().await?;
        self.pins(Some(service))
            .await?
            .into_iter()
            .find(|p| p.scope == scope && p.target == target)
            .ok_or_else(|| StoreError::NotFound("pin".into()))
    }

    /// Removes a pin (the node or region joins the next rollout again).
    pub async fn delete_pin(
        &self,
        service: &str,
        scope: &str,
        target: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("DELETE FROM pins WHERE service = $1 AND scope = $2 AND target = $3")
            .bind(service)
            .bind(scope)
            .bind(target)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "pin {service}/{scope}/{target}"
            )));
        }
        audit::record(
            &mut tx,
            now,
            actor,
            "pin.delete",
            &format!("{service}/{scope}/{target}"),
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pins, of one service or all.
    pub async fn pins(&self, service: Option<&str>) -> Result<Vec<Pin>, StoreError> {
        sqlx::query(
            "SELECT service, scope, target, module_id, applied, created_by, created_at FROM pins
             WHERE ($1 IS NULL OR service = $1) ORDER BY service, scope, target",
        )
        .bind(service.map(str::to_string))
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| {
            Ok(Pin {
                service: r.try_get(0)?,
                scope: r.try_get(1)?,
                target: r.try_get(2)?,
                module_id: r.try_get(3)?,
                applied: r.try_get::<i64, _>(4)? != 0,
                created_by: r.try_get(5)?,
                created_at: rfc3339(r.try_get(6)?),
            })
        })
        .collect()
    }

    /// Marks a pin applied (if it still names `module_id`).
    pub async fn pin_applied(&self, p: &Pin) -> Result<(), StoreError> {
        sqlx::query("UPDATE pins SET applied = 1 WHERE service = $1 AND scope = $2 AND target = $3 AND module_id = $4")
            .bind(&p.service)
            .bind(&p.scope)
            .bind(&p.target)
            .bind(&p.module_id)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
