//! Registered WIT interface versions.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, audit, is_unique_violation, json_text, parse_json};
use crate::model::{Actor, Interface, rfc3339};

/// An interface version to store (already reviewed).
#[derive(Debug, Clone)]
pub struct NewInterface {
    /// WIT package namespace.
    pub namespace: String,
    /// WIT package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The interface of the package.
    pub interface: String,
    /// WIT text.
    pub wit: String,
    /// Policy name.
    pub compatibility: String,
    /// The registry's review.
    pub review: serde_json::Value,
    /// Whether its changes need an approval.
    pub needs_approval: bool,
}

/// `{namespace}/{name}@{version}`.
pub fn interface_id(namespace: &str, name: &str, version: &str) -> String {
    format!("{namespace}/{name}@{version}")
}

const COLUMNS: &str = "id, namespace, name, version, interface_name, wit, compatibility, status,
    review, created_by, created_at, approved_by";

fn from_row(r: &AnyRow) -> Result<Interface, StoreError> {
    let id: String = r.try_get("id")?;
    let review: serde_json::Value = parse_json(&r.try_get::<String, _>("review")?, &id)?;
    let status: String = r.try_get("status")?;
    let approved_by: Option<String> = r.try_get("approved_by")?;
    let needs_approval = review
        .get("needsApproval")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(Interface {
        namespace: r.try_get("namespace")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        interface: r.try_get("interface_name")?,
        compatibility: r.try_get("compatibility")?,
        // Deprecating a draft does not approve it.
        cleared: approved_by.is_some() || !needs_approval,
        status,
        wit: r.try_get("wit")?,
        review,
        created_by: r.try_get("created_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        approved_by,
        interface_id: id,
    })
}

impl Store {
    /// Stores a reviewed interface version as a draft.
    pub async fn insert_interface(
        &self,
        new: &NewInterface,
        actor: &Actor,
    ) -> Result<Interface, StoreError> {
        let id = interface_id(&new.namespace, &new.name, &new.version);
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO interfaces (id, namespace, name, version, interface_name, wit,
                compatibility, status, review, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft', $8, $9, $10)",
        )
        .bind(&id)
        .bind(&new.namespace)
        .bind(&new.name)
        .bind(&new.version)
        .bind(&new.interface)
        .bind(&new.wit)
        .bind(&new.compatibility)
        .bind(json_text(&new.review))
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "interface {id} already exists"
                )));
            }
            other => other?,
        };
        audit::record(
            &mut tx,
            now,
            actor,
            "interface.register",
            &id,
            &serde_json::json!({ "needsApproval": new.needs_approval }),
        )
        .await?;
        tx.commit().await?;
        self.get_interface(&id).await
    }

    /// One interface version.
    pub async fn get_interface(&self, id: &str) -> Result<Interface, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM interfaces WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("interface {id}")))?;
        from_row(&row)
    }

    /// Interface versions, optionally of one namespace/name, by id.
    pub async fn list_interfaces(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<Interface>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM interfaces
             WHERE ($1 IS NULL OR namespace = $1) AND ($2 IS NULL OR name = $2)
             ORDER BY namespace, name, created_at"
        ))
        .bind(namespace.map(str::to_string))
        .bind(name.map(str::to_string))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Sets `draft` → `approved`, or `draft`/`approved` → `deprecated`.
    /// The change is one conditional write, so concurrent requests cannot
    /// both succeed from the same state.
    pub async fn set_interface_status(
        &self,
        id: &str,
        status: &str,
        actor: &Actor,
    ) -> Result<Interface, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        let changed = match status {
            "approved" => sqlx::query(
                "UPDATE interfaces SET status = 'approved', approved_by = $2, approved_at = $3
                 WHERE id = $1 AND status = 'draft'",
            )
            .bind(id)
            .bind(&actor.name)
            .bind(now),
            "deprecated" => sqlx::query(
                "UPDATE interfaces SET status = 'deprecated' WHERE id = $1 AND status IN ('draft', 'approved')",
            )
            .bind(id),
            other => return Err(StoreError::Conflict(format!("no interface status {other:?}"))),
        }
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            let current: Option<String> =
                sqlx::query("SELECT status FROM interfaces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            return Err(match current {
                None => StoreError::NotFound(format!("interface {id}")),
                Some(from) => StoreError::Conflict(format!(
                    "interface {id} is {from}; it cannot become {status}"
                )),
            });
        }
        let action = if status == "approved" {
            "interface.approve"
        } else {
            "interface.deprecate"
        };
        audit::record(
            &mut tx,
            now,
            actor,
            action,
            id,
            &serde_json::json!({ "status": status }),
        )
        .await?;
        tx.commit().await?;
        self.get_interface(id).await
    }
}
