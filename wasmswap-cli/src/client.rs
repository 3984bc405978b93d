//! The REST client: a base URL and a token, answers as JSON, and errors
//! that map onto the command's exit codes.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What went wrong, by what a script would do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API refused the request.
    #[error("{message} ({code}, HTTP {status}{})", request_id.as_deref().map(|r| format!(", request {r}")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body's `code`.
        code: String,
        /// The error body's `message`.
        message: String,
        /// The request id, for the control plane's log.
        request_id: Option<String>,
    },
    /// No answer from the control plane.
    #[error("cannot reach the control plane at {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// No token: neither `--token`, `WASMSWAP_TOKEN` nor a saved login.
    #[error(
        "not logged in: run `wasmswap login` (or `wasmswap up`, which logs in), or pass --token"
    )]
    NotLoggedIn,
    /// A rollout ended without completing.
    #[error("deployment {id} ended {status}{}", why.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    RolloutFailed {
        /// Deployment id.
        id: String,
        /// Its final status.
        status: String,
        /// What ended it, from its event history (the rollback's or the
        /// failure's reason), when the control plane says.
        why: Option<String>,
    },
    /// A watched rollout stopped where a person has to act (it waits for
    /// `execute` or an approval, or paused after a failed check), or the
    /// watch timed out.
    #[error("deployment {id} {reason}")]
    NeedsAction {
        /// Deployment id.
        id: String,
        /// What it waits for.
        reason: String,
    },
    /// Bad input on our side (a file that cannot be read, bad JSON in a flag).
    #[error("{0}")]
    Input(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Exit codes (stable; documented in `wasmswap --help`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Anything not listed below.
    pub const FAILURE: u8 = 1;
    /// Usage error (bad flags) — clap's own code.
    pub const USAGE: u8 = 2;
    /// Not logged in, token rejected, or the role may not do this (401/403).
    pub const AUTH: u8 = 3;
    /// No such module, deployment, node or interface (404).
    pub const NOT_FOUND: u8 = 4;
    /// The request was refused as invalid or conflicting (400, 409, 413, 415, 422).
    pub const REJECTED: u8 = 5;
    /// The control plane is unreachable, overloaded or failing (5xx, 429).
    pub const UNAVAILABLE: u8 = 6;
    /// A watched rollout ended failed or rolled back.
    pub const ROLLOUT_FAILED: u8 = 7;
    /// A watched rollout waits for someone (execute, approval, resume after
    /// a failed check) or did not end within `--timeout`.
    pub const NEEDS_ACTION: u8 = 8;
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { status, .. } => match status {
                401 | 403 => exit::AUTH,
                404 => exit::NOT_FOUND,
                400 | 409 | 413 | 415 | 422 => exit::REJECTED,
                429 | 500..=599 => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            },
            CliError::Unreachable { .. } => exit::UNAVAILABLE,
            CliError::NotLoggedIn => exit::AUTH,
            CliError::RolloutFailed { .. } => exit::ROLLOUT_FAILED,
            CliError::NeedsAction { .. } => exit::NEEDS_ACTION,
            CliError::Input(_) => exit::USAGE,
            CliError::Other(_) => exit::FAILURE,
        }
    }
}

/// A saved login (`wasmswap login` writes it; every command reads it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Control plane base URL.
    pub url: String,
    /// The JWT.
    pub token: String,
    /// User name.
    pub user: String,
    /// Role.
    pub role: String,
    /// When the token expires (RFC 3339).
    pub expires_at: String,
}

impl Credentials {
    /// Where the login is kept: `$WASMSWAP_CREDENTIALS`, else
    /// `$XDG_CONFIG_HOME/wasmswap/credentials.json`, else
    /// `~/.config/wasmswap/credentials.json`.
    pub fn path() -> PathBuf {
        if let Some(p) = std::env::var_os("WASMSWAP_CREDENTIALS") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("wasmswap").join("credentials.json")
    }

    /// The saved login, if any.
    pub fn load() -> Option<Self> {
        let text = std::fs::read_to_string(Self::path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Saves the login (owner-only permissions: it holds a token).
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(anyhow::Error::from)?;
        let tmp = path.with_extension("json.tmp");
        // A stale temporary file may have other permissions: `mode` only
        // applies to a file this call creates.
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(path)
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// A control plane and, once logged in, a token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The control plane's default address (`wasmswap-control` and `wasmswap up`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";

impl Api {
    /// A client for `base` (`http://host:port`), sending `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("wasmswap-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1{path}`.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST /api/v1{path}` with a JSON body (or none).
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::POST, path, body).await
    }

    /// `DELETE /api/v1{path}`.
    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, path, None).await
    }

    /// `POST /api/v1{path}` with raw bytes of `content_type`.
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Value, CliError> {
        let req = self
            .request(Method::POST, path)?
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        self.finish(req).await
    }

    /// Exchanges a user name and password for a token.
    pub async fn login(&self, user: &str, password: &str) -> Result<Credentials, CliError> {
        let req = self
            .http
            .post(format!("{}/api/v1/authentication/login", self.base))
            .json(&serde_json::json!({ "username": user, "password": password }));
        let v = self.finish(req).await?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(Credentials {
            url: self.base.clone(),
            token: field("token"),
            user: v["user"]["username"].as_str().unwrap_or(user).to_string(),
            role: v["user"]["role"].as_str().unwrap_or_default().to_string(),
            expires_at: field("expiresAt"),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut req = self.request(method, path)?;
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(req).await
    }

    fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder, CliError> {
        let token = self.token.as_deref().ok_or(CliError::NotLoggedIn)?;
        Ok(self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(token))
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        if status.is_success() {
            if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).or_else(|_| {
                // `GET …/wit` answers text.
                Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let err = &body["error"];
        Err(CliError::Api {
            status: status.as_u16(),
            code: err["code"].as_str().unwrap_or("http_error").to_string(),
            message: err["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
            request_id,
        })
    }
}

/// The innermost error's text: "connection refused", not reqwest's wrapper.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
