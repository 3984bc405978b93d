//! Control-plane configuration (a TOML file; the binary adds flags and
//! `WASMSWAP_*` environment variables on top).
//!
//! Secrets that are not configured are generated on first start and kept
//! in the data directory (mode 0600): the JWT secret, the node token, and —
//! when no user is configured — an `admin` user whose password is written
//! to `admin-password` there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{Role, SigningKey, UserConfig, hash_password};
use crate::rate::RateLimits;
use crate::store::{BlobConfig, S3Config, StoreConfig};

/// Storage settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://…` for the scale-out store; by default a SQLite file in
    /// the data directory.
    pub database_url: Option<String>,
    /// An S3-compatible bucket for binaries; by default a directory in the
    /// data directory.
    pub s3: Option<S3Config>,
    /// Versions kept per module (deployed ones always kept). By default 5.
    pub keep_versions: Option<usize>,
}

/// Authentication settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (at least 32 bytes). Generated when neither this nor an
    /// Ed25519 key pair is set.
    pub jwt_secret: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM file): tokens signed with EdDSA.
    pub jwt_ed25519_private_key_file: Option<PathBuf>,
    /// The matching public key (SPKI PEM file).
    pub jwt_ed25519_public_key_file: Option<PathBuf>,
    /// Token lifetime, seconds. By default 3600.
    pub token_ttl_secs: Option<u64>,
    /// The `iss` claim. By default `wasmswap-control`.
    pub issuer: Option<String>,
    /// Token shared with the nodes (their registrations, heartbeats and
    /// downloads; the control plane's calls to their agent API).
    pub node_token: Option<String>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// Everything the control plane needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Where to listen. By default `127.0.0.1:8000`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL nodes reach this control plane at. By default `http://{listen}`.
    pub public_url: Option<String>,
    /// Embedded store, generated secrets. By default `./wasmswap-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A node silent for this long is unhealthy. By default 30.
    pub heartbeat_timeout_secs: Option<u64>,
    /// Limit on one call to a node. By default 30.
    pub node_call_timeout_secs: Option<u64>,
    /// Limit on one load (the node fetches and compiles a binary). By
    /// default 120.
    pub node_load_timeout_secs: Option<u64>,
    /// Unreferenced binaries unused this long are removed. By default 900.
    pub blob_grace_secs: Option<u64>,
    /// Milliseconds between housekeeping passes. By default 60000.
    pub housekeeping_interval_ms: Option<u64>,
    /// Milliseconds a client has, from a request's first byte (or from
    /// connecting), to send its request headers before its connection is
    /// closed (slow-loris guard). By default 10000.
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a kept-alive connection may sit idle between requests
    /// before it is closed; keep it above clients' pool idle timeouts
    /// (90 s for reqwest). By default 120000; 1000 to 86400000.
    pub idle_timeout_ms: Option<u64>,
    /// Storage.
    #[serde(default)]
    pub store: StoreSettings,
    /// Authentication.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Requests per minute per caller, by class.
    #[serde(default)]
    pub rate_limits: RateLimits,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("wasmswap-data")
}

/// A secret read from `dir/name`, or generated and written there.
fn stored_secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use rand::Rng as _;
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes: [u8; 32] = rand::rng().random();
    let secret = hex::encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

impl ControlConfig {
    /// Defaults with the data directory `dir`.
    pub fn local(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            listen: default_listen(),
            public_url: None,
            data_dir: dir.into(),
            heartbeat_timeout_secs: None,
            node_call_timeout_secs: None,
            node_load_timeout_secs: None,
            blob_grace_secs: None,
            housekeeping_interval_ms: None,
            header_read_timeout_ms: None,
            idle_timeout_ms: None,
            store: StoreSettings::default(),
            auth: AuthSettings::default(),
            rate_limits: RateLimits::default(),
        })
    }

    /// Parses a TOML file's text.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The store to open.
    pub fn store_config(&self) -> StoreConfig {
        let mut sc = StoreConfig::embedded(&self.data_dir);
        if let Some(url) = &self.store.database_url {
            sc.database_url = url.clone();
        }
        if let Some(s3) = &self.store.s3 {
            sc.blobs = BlobConfig::S3(s3.clone());
        }
        if let Some(k) = self.store.keep_versions {
            sc.keep_versions = k;
        }
        sc
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs.unwrap_or(30).max(1))
    }

    /// The signing key: configured, or a generated HS256 secret.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        use anyhow::Context as _;
        match (
            &self.auth.jwt_ed25519_private_key_file,
            &self.auth.jwt_ed25519_public_key_file,
            &self.auth.jwt_secret,
        ) {
            (Some(private), Some(public), None) => Ok(SigningKey::EdDsa {
                private_pem: std::fs::read_to_string(private)
                    .with_context(|| format!("reading {}", private.display()))?,
                public_pem: std::fs::read_to_string(public)
                    .with_context(|| format!("reading {}", public.display()))?,
            }),
            (None, None, Some(secret)) => Ok(SigningKey::Hs256(secret.as_bytes().to_vec())),
            (None, None, None) => Ok(SigningKey::Hs256(
                stored_secret(&self.data_dir, "jwt-secret")?.into_bytes(),
            )),
            _ => anyhow::bail!(
                "configure either auth.jwt_secret or both auth.jwt_ed25519_private_key_file and auth.jwt_ed25519_public_key_file"
            ),
        }
    }

    /// The node token: configured or generated.
    pub fn node_token(&self) -> anyhow::Result<String> {
        match &self.auth.node_token {
            Some(t) => Ok(t.clone()),
            None => stored_secret(&self.data_dir, "node-token"),
        }
    }

    /// The users: configured, or a bootstrap `admin` whose generated
    /// password is in `{data_dir}/admin-password`.
    pub fn users(&self) -> anyhow::Result<Vec<UserConfig>> {
        if !self.auth.users.is_empty() {
            return Ok(self.auth.users.clone());
        }
        let password = stored_secret(&self.data_dir, "admin-password")?;
        Ok(vec![UserConfig {
            username: "admin".into(),
            password_hash: hash_password(&password),
            role: Role::Admin,
        }])
    }
}
