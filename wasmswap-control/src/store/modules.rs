//! Module versions and their binaries.

use bytes::Bytes;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{ENCODING, Store, StoreError, audit, is_unique_violation, json_text, parse_json};
use crate::model::{Actor, Module, ModuleStatus, NewModule, rfc3339};

/// How long an unreferenced binary is kept before the sweeper may remove
/// it. A registration touches its binary's row first, so any registration
/// shorter than this can never see its binary swept from under it.
pub const BLOB_GRACE_MS: i64 = 15 * 60 * 1000;

/// Which modules to list.
#[derive(Debug, Clone, Default)]
pub struct ModuleFilter {
    /// Only this name.
    pub name: Option<String>,
    /// Only this status.
    pub status: Option<ModuleStatus>,
    /// At most this many.
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

/// A module row that may be removed: not deployed, not loaded on a node.
const REMOVABLE: &str = "status <> 'deployed'
    AND NOT EXISTS (SELECT 1 FROM node_modules nm WHERE nm.module_id = modules.id)";

const COLUMNS: &str = "id, name, version, description, checksum, size_bytes, kind, wasi_version,
    exported_functions, imports, required_interfaces, limits, metadata, wit IS NOT NULL AS has_wit,
    status, created_by, created_at";

fn module_from_row(r: &AnyRow) -> Result<Module, StoreError> {
    let id: String = r.try_get("id")?;
    let json = |col: &str| -> Result<String, StoreError> { Ok(r.try_get::<String, _>(col)?) };
    let status: String = r.try_get("status")?;
    // SQLite answers `x IS NOT NULL` with an integer, PostgreSQL with a bool.
    let has_wit = r
        .try_get::<bool, _>("has_wit")
        .or_else(|_| r.try_get::<i64, _>("has_wit").map(|v| v != 0))?;
    Ok(Module {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        description: r.try_get("description")?,
        checksum: r.try_get("checksum")?,
        size_bytes: r.try_get::<i64, _>("size_bytes")? as u64,
        kind: r.try_get("kind")?,
        wasi_version: r.try_get("wasi_version")?,
        exported_functions: parse_json(&json("exported_functions")?, &id)?,
        imports: parse_json(&json("imports")?, &id)?,
        required_interfaces: parse_json(&json("required_interfaces")?, &id)?,
        limits: parse_json(&json("limits")?, &id)?,
        metadata: parse_json(&json("metadata")?, &id)?,
        has_wit,
        status: ModuleStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(id.clone()))?,
        created_by: r.try_get("created_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        module_id: id,
    })
}

/// `{name}-v{version}`.
pub fn module_id(name: &str, version: &semver::Version) -> String {
    format!("{name}-v{version}")
}

impl Store {
    /// Stores a new module version and its binary, then prunes old versions
    /// of the same name beyond the retention count (never deployed ones).
    ///
    /// Order, so that a crash at any point loses nothing acknowledged and
    /// leaves no row naming a missing object: touch the binary's row (so the
    /// sweeper keeps its object), write the object if absent, then commit
    /// the module row and its audit record together.
    pub async fn register_module(
        &self,
        new: NewModule,
        binary: Bytes,
        actor: &Actor,
    ) -> Result<Module, StoreError> {
        let id = module_id(&new.name, &new.version);
        if self.module_exists(&id).await? {
            return Err(StoreError::Conflict(format!("module {id} already exists")));
        }
        let checksum = super::checksum(&binary);
        let size = binary.len() as i64;
        self.claim_blob(&checksum, size).await?;
        let stored = self.blobs.put(&checksum, binary.clone()).await? as i64;

        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await?;
        // Still ours? A registration that outlived the grace period may
        // have lost its object to the sweeper: write it again.
        let touched = sqlx::query(
            "UPDATE blobs SET last_used_at = $2, stored_bytes = $3 WHERE checksum = $1 AND state = 'live'",
        )
        .bind(&checksum)
        .bind(now)
        .bind(stored)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if touched != 1 {
            return Err(StoreError::Busy(format!(
                "binary {checksum} is being removed; retry the registration"
            )));
        }
        // The row is ours and live, so no sweep can start on it now; but
        // the object may have gone meanwhile (a registration that outlived
        // the grace period, or a row re-created by a registration that
        // died before writing its object). Make sure it is there before
        // any module row names it.
        if !self.blobs.exists(&checksum).await? {
            self.blobs.put(&checksum, binary.clone()).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO modules (id, name, version, description, checksum, size_bytes, kind,
                wasi_version, exported_functions, imports, required_interfaces, limits, metadata,
                wit, status, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(new.version.to_string())
        .bind(&new.description)
        .bind(&checksum)
        .bind(size)
        .bind(&new.kind)
        .bind(&new.wasi_version)
        .bind(json_text(&new.exported_functions))
        .bind(json_text(&new.imports))
        .bind(json_text(&new.required_interfaces))
        .bind(json_text(&new.limits))
        .bind(json_text(&new.metadata))
        .bind(new.wit.clone())
        .bind(ModuleStatus::Registered.as_str())
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("module {id} already exists")));
            }
            other => other?,
        };
        audit::record(
            &mut tx,
            now,
            actor,
            "module.register",
            &id,
            &serde_json::json!({ "checksum": checksum, "sizeBytes": size }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(wasm.module.id = %id, wasm.module.checksum = %checksum, "module registered");

        let module = self.get_module(&id).await?;
        if let Err(e) = self.prune(&new.name, Some(&id), actor).await {
            // The registration stands; pruning retries on the next one.
            tracing::warn!(name = %new.name, error = %e, "retention pass failed");
        }
        Ok(module)
    }

    /// Makes sure a live row exists for the binary and is marked as used
    /// now; waits out a sweep that is removing it.
    async fn claim_blob(&self, checksum: &str, size: i64) -> Result<(), StoreError> {
        for attempt in 0..20 {
            let now = self.clock.now_ms();
            let claimed = sqlx::query(
                "INSERT INTO blobs (checksum, size_bytes, stored_bytes, encoding, state, created_at, last_used_at)
                 VALUES ($1, $2, 0, $3, 'live', $4, $4)
                 ON CONFLICT (checksum) DO UPDATE SET last_used_at = excluded.last_used_at
                 WHERE blobs.state = 'live'",
            )
            .bind(checksum)
            .bind(size)
            .bind(ENCODING)
            .bind(now)
            .execute(&self.db)
            .await?
            .rows_affected();
            if claimed == 1 {
                return Ok(());
            }
            tracing::debug!(checksum, attempt, "binary is being swept; waiting");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        Err(StoreError::Busy(format!(
            "binary {checksum} is being removed; retry the registration"
        )))
    }

    async fn module_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM modules WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .is_some())
    }

    /// One module version.
    pub async fn get_module(&self, id: &str) -> Result<Module, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM modules WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("module {id}")))?;
        module_from_row(&row)
    }

    /// Modules matching `filter`, by name then registration time, and how
    /// many match in all.
    pub async fn list_modules(
        &self,
        filter: &ModuleFilter,
    ) -> Result<(Vec<Module>, i64), StoreError> {
        let status = filter.status.map(|s| s.as_str().to_string());
        const WHERE: &str = "WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR status = $2)";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM modules {WHERE}"))
            .bind(filter.name.clone())
            .bind(status.clone())
            .fetch_one(&self.db)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM modules {WHERE} ORDER BY name, created_at, id LIMIT $3 OFFSET $4"
        ))
        .bind(filter.name.clone())
        .bind(status)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(&self.db)
        .await?;
        let modules = rows.iter().map(module_from_row).collect::<Result<_, _>>()?;
        Ok((modules, total))
    }

    /// Every version of one module, oldest version first (semver order).
    pub async fn module_versions(&self, name: &str) -> Result<Vec<Module>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM modules WHERE name = $1"))
            .bind(name)
            .fetch_all(&self.db)
            .await?;
        let mut modules: Vec<Module> =
            rows.iter().map(module_from_row).collect::<Result<_, _>>()?;
        modules.sort_by_cached_key(|m| semver::Version::parse(&m.version).ok());
        Ok(modules)
    }

    /// The component's world as WIT text (`None` for core modules).
    pub async fn module_wit(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT wit FROM modules WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("module {id}")))?;
        Ok(row.try_get("wit")?)
    }

    /// A binary by checksum, verified. `NotFound` unless some module (or a
    /// live binary row) has it.
    pub async fn binary(&self, checksum: &str) -> Result<Bytes, StoreError> {
        let known = sqlx::query("SELECT 1 FROM blobs WHERE checksum = $1 AND state = 'live'")
            .bind(checksum)
            .fetch_optional(&self.db)
            .await?
            .is_some();
        if !known {
            return Err(StoreError::NotFound(format!("binary {checksum}")));
        }
        self.blobs.get(checksum).await
    }

    /// Deletes a module version. Refused while it is deployed or loaded on
    /// a node.
    pub async fn delete_module(&self, id: &str, actor: &Actor) -> Result<Module, StoreError> {
        let module = self.get_module(id).await?;
        let mut tx = self.db.begin().await?;
        let deleted = sqlx::query(&format!(
            "DELETE FROM modules WHERE id = $1 AND {REMOVABLE}"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            let nodes: Vec<String> = sqlx::query(
                "SELECT node_id FROM node_modules WHERE module_id = $1 ORDER BY node_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
            let exists = sqlx::query("SELECT 1 FROM modules WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Err(if !exists {
                StoreError::NotFound(format!("module {id}"))
            } else if !nodes.is_empty() {
                StoreError::Conflict(format!(
                    "module {id} is loaded on {} node(s) ({}); unload it there first",
                    nodes.len(),
                    nodes.join(", ")
                ))
            } else {
                StoreError::Conflict(format!(
                    "module {id} is deployed; roll it back or deploy another version first"
                ))
            });
        }
        let now = self.clock.now_ms();
        audit::record(
            &mut tx,
            now,
            actor,
            "module.delete",
            id,
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(module)
    }

    /// Marks a module deployed or not (the rollout engine's hook: deployed
    /// modules cannot be deleted or pruned).
    pub async fn set_module_status(
        &self,
        id: &str,
        status: ModuleStatus,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("UPDATE modules SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("module {id}")));
        }
        audit::record(
            &mut tx,
            self.clock.now_ms(),
            actor,
            "module.status",
            id,
            &serde_json::json!({ "status": status }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the versions of `name` older (semver order) than the newest
    /// `keep_versions`, except a deployed one, one loaded on a node, and
    /// `keep` (the version just registered, even when it is an old line's
    /// hotfix). Protected old versions are kept on top of the newest ones;
    /// a newer version is never removed to make room. Returns the ids
    /// removed.
    pub async fn prune(
        &self,
        name: &str,
        keep: Option<&str>,
        actor: &Actor,
    ) -> Result<Vec<String>, StoreError> {
        let versions = self.module_versions(name).await?;
        let excess = versions.len().saturating_sub(self.keep_versions);
        let mut removed = Vec::new();
        for m in versions.iter().take(excess) {
            if m.status == ModuleStatus::Deployed || Some(m.module_id.as_str()) == keep {
                continue;
            }
            let mut tx: Transaction<'_, Any> = self.db.begin().await?;
            let n = sqlx::query(&format!(
                "DELETE FROM modules WHERE id = $1 AND {REMOVABLE}"
            ))
            .bind(&m.module_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                audit::record(
                    &mut tx,
                    self.clock.now_ms(),
                    actor,
                    "module.prune",
                    &m.module_id,
                    &serde_json::json!({ "keep": self.keep_versions }),
                )
                .await?;
                removed.push(m.module_id.clone());
            }
            tx.commit().await?;
        }
        if !removed.is_empty() {
            tracing::info!(name, ?removed, "pruned old versions");
        }
        Ok(removed)
    }

    /// Removes binaries no module refers to that have been unused for
    /// `grace_ms` (normally [`BLOB_GRACE_MS`]). Returns their checksums.
    ///
    /// Each is marked `deleting` first (a registration that wants it waits),
    /// then its object is removed, then its row. Rows a previous sweep left
    /// in `deleting` (it crashed, or the object store failed) are finished
    /// here; nothing can refer to them, since a module row is only written
    /// against a `live` one. A failure on one binary does not stop the rest.
    pub async fn sweep_blobs(&self, grace_ms: i64) -> Result<Vec<String>, StoreError> {
        let cutoff = self.clock.now_ms() - grace_ms;
        let candidates = sqlx::query(
            "SELECT checksum FROM blobs b WHERE state = 'deleting'
               OR (state = 'live' AND last_used_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM modules m WHERE m.checksum = b.checksum))",
        )
        .bind(cutoff)
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
        let mut swept = Vec::new();
        for checksum in candidates {
            match self.sweep_one(&checksum, cutoff).await {
                Ok(true) => swept.push(checksum),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(checksum, error = %e, "could not remove an unused binary; next sweep retries")
                }
            }
        }
        Ok(swept)
    }

    async fn sweep_one(&self, checksum: &str, cutoff: i64) -> Result<bool, StoreError> {
        let marked = sqlx::query(
            "UPDATE blobs SET state = 'deleting' WHERE checksum = $1
               AND (state = 'deleting' OR (state = 'live' AND last_used_at <= $2
                    AND NOT EXISTS (SELECT 1 FROM modules m WHERE m.checksum = $1)))",
        )
        .bind(checksum)
        .bind(cutoff)
        .execute(&self.db)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        self.blobs.delete(checksum).await?;
        sqlx::query("DELETE FROM blobs WHERE checksum = $1 AND state = 'deleting'")
            .bind(checksum)
            .execute(&self.db)
            .await?;
        Ok(true)
    }

    /// Checks every module row against the blob store: returns the ids of
    /// modules whose binary is missing or does not verify (empty when all
    /// is well). Reads every binary; meant for `fsck`-style checks.
    pub async fn verify_modules(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, checksum FROM modules ORDER BY id")
            .fetch_all(&self.db)
            .await?;
        let mut bad = Vec::new();
        for r in rows {
            let (id, checksum): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if let Err(e) = self.blobs.get(&checksum).await {
                bad.push((id, e.to_string()));
            }
        }
        Ok(bad)
    }
}
