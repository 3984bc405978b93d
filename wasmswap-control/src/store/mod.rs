//! Persistence: metadata in SQL, binaries in an object store.
//!
//! Two deployments of the same code:
//! - **embedded** (the default, zero setup): a SQLite file and a directory
//!   of content-addressed blobs under one data directory;
//! - **scale-out**: PostgreSQL for metadata (several control-plane replicas
//!   share it) and an S3-compatible bucket (S3, MinIO, …) for binaries.
//!
//! Rather than two hand-written implementations of one trait, the SQL goes
//! through `sqlx`'s `Any` driver (one set of queries, portable between the
//! two databases; the migrations differ only in column types) and the
//! binaries through `object_store`'s `ObjectStore` trait (local directory
//! or S3). One code path means the suite that runs against both backends
//! exercises every line of both.
//!
//! Invariants:
//! - a module row is committed only after its binary's object is durable,
//!   and a binary row's object is removed only once nothing refers to it and
//!   it has been unused for a grace period (see [`Store::sweep_blobs`]);
//! - every state change is written with its audit record in one transaction.

mod audit;
mod blobs;
mod deployments;
mod interfaces;
mod modules;
mod nodes;
mod pins;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use audit::AuditFilter;
pub use blobs::{Blobs, ENCODING, checksum};
pub use interfaces::{NewInterface, interface_id};
pub use modules::{BLOB_GRACE_MS, ModuleFilter, module_id};
pub use nodes::{NodeReport, NodeUpdate};
pub use pins::Pin;

use crate::clock::Clock;

/// Why the blob store refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    /// No space left (`ENOSPC`, a quota).
    #[error("full")]
    Full,
    /// Read-only or not permitted (`EROFS`, `EACCES`, an S3 403).
    #[error("read-only")]
    ReadOnly,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already, or its state forbids the change.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The object store failed.
    #[error("blob store error: {0}")]
    Blob(String),
    /// The object store refused to take a binary: nothing was written.
    #[error("the blob store is {0}")]
    BlobUnwritable(Unwritable),
    /// A row names a binary whose object is gone.
    #[error("binary {0} is missing from the blob store")]
    BlobMissing(String),
    /// A stored binary does not match its checksum.
    #[error("binary {checksum} is corrupt: {reason}")]
    BlobCorrupt {
        /// The checksum it should have.
        checksum: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored JSON column does not parse (written by a newer version?).
    #[error("stored record {0} is unreadable")]
    Corrupt(String),
    /// Temporarily unavailable (a binary being removed, a lock held);
    /// retrying shortly succeeds.
    #[error("{0}")]
    Busy(String),
    /// The configuration cannot be used.
    #[error("store configuration: {0}")]
    Config(String),
}

/// Where binaries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConfig {
    /// A local directory.
    Dir(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint, e.g. `http://127.0.0.1:9000` (omit for AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bucket name (must exist).
    pub bucket: String,
    /// Region. By default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Allow plain `http://` endpoints (local MinIO, tests).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://path/control.db` or `postgres://…`.
    pub database_url: String,
    /// Where binaries go.
    pub blobs: BlobConfig,
    /// How many versions of each module to keep (deployed ones are always
    /// kept). By default 5.
    pub keep_versions: usize,
    /// How long a query waits for a free connection. By default 10 s.
    /// (Tests under paused tokio time set it very long: paused time jumps
    /// ahead while a query waits on SQLite's worker thread.)
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// The embedded default under `dir`: `dir/control.db` and `dir/blobs/`.
    pub fn embedded(dir: &Path) -> Self {
        Self {
            database_url: format!("sqlite://{}?mode=rwc", dir.join("control.db").display()),
            blobs: BlobConfig::Dir(dir.join("blobs")),
            keep_versions: 5,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The control plane's store: a cheap-clone handle.
#[derive(Debug, Clone)]
pub struct Store {
    db: AnyPool,
    backend: Backend,
    blobs: Blobs,
    clock: Clock,
    keep_versions: usize,
    /// Serializes [`Store::lock`] holders of one key inside this process
    /// (different keys do not wait for each other, as with PostgreSQL's
    /// advisory locks).
    local_locks:
        Arc<parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while a read-review-write sequence must not interleave with
/// another for the same key; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    /// PostgreSQL: a transaction holding `pg_advisory_xact_lock`, so other
    /// control-plane replicas wait too. Dropping it rolls back and releases.
    _shared: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn object_store(config: &BlobConfig) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match config {
        BlobConfig::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create blob directory {}: {e}",
                    dir.display()
                ))
            })?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| StoreError::Config(e.to_string()))?;
            Ok(Arc::new(fs))
        }
        BlobConfig::S3(s3) => {
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_access_key_id(&s3.access_key_id)
                .with_secret_access_key(&s3.secret_access_key)
                .with_allow_http(s3.allow_http);
            if let Some(endpoint) = &s3.endpoint {
                // Path-style addressing: what MinIO and other local servers expect.
                b = b
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            Ok(Arc::new(
                b.build().map_err(|e| StoreError::Config(e.to_string()))?,
            ))
        }
    }
}

impl Store {
    /// Opens (creating when needed) and migrates the store.
    pub async fn open(config: &StoreConfig, clock: Clock) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if config.database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if config.database_url.starts_with("postgres:")
            || config.database_url.starts_with("postgresql:")
        {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "database_url must start with sqlite: or postgres:, not {:?}",
                config.database_url.split(':').next().unwrap_or_default()
            )));
        };
        if backend == Backend::Sqlite
            && let Some(path) = config
                .database_url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
            && let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(config.acquire_timeout);
        if backend == Backend::Sqlite {
            // One file, one process: no reason to recycle connections.
            options = options.idle_timeout(None).max_lifetime(None);
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers do not block the writer. synchronous=FULL
                    // keeps an acknowledged commit across power loss too.
                    // Foreign keys are off by default in SQLite.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let db = options.connect(&config.database_url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&db).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&db).await?,
        }
        let blobs = match &config.blobs {
            BlobConfig::Dir(dir) => Blobs::local(object_store(&config.blobs)?, dir.clone()),
            BlobConfig::S3(_) => Blobs::new(object_store(&config.blobs)?),
        };
        tracing::info!(?backend, "store opened");
        Ok(Self {
            db,
            backend,
            blobs,
            clock,
            keep_versions: config.keep_versions.max(1),
            local_locks: Arc::default(),
        })
    }

    /// The blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The clock the store stamps records with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The SQL pool (the rollout engine keeps its state here too).
    pub fn pool(&self) -> &AnyPool {
        &self.db
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Takes the lock for `key`: one holder at a time in this process and,
    /// on PostgreSQL, across every replica sharing the database. (The
    /// embedded store is one process by construction.)
    pub async fn lock(&self, key: &str) -> Result<KeyLock, StoreError> {
        let local = self.local_lock(key).lock_owned().await;
        let shared = if self.is_postgres() {
            let mut tx = self.db.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            Some(tx)
        } else {
            None
        };
        Ok(KeyLock {
            _local: local,
            _shared: shared,
        })
    }

    /// This process's mutex for `key`. Mutexes nobody holds or waits for
    /// are dropped on the way, so the map stays as small as the contention.
    fn local_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.local_locks.lock();
        locks.retain(|_, m| Arc::strong_count(m) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Like [`Store::lock`], but gives up at once (`None`) when someone
    /// else holds it.
    pub async fn try_lock(&self, key: &str) -> Result<Option<KeyLock>, StoreError> {
        let Ok(local) = self.local_lock(key).try_lock_owned() else {
            return Ok(None);
        };
        let shared = if self.is_postgres() {
            use sqlx::Row as _;
            let mut tx = self.db.begin().await?;
            let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if !got {
                return Ok(None);
            }
            Some(tx)
        } else {
            None
        };
        Ok(Some(KeyLock {
            _local: local,
            _shared: shared,
        }))
    }

    /// A cheap query, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.db).await?;
        Ok(())
    }

    /// Closes the pool (waits for connections to return).
    pub async fn close(&self) {
        self.db.close().await;
    }
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(what.to_string()))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
