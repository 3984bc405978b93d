//! Who is calling and what they may do: JWTs for people and pipelines, a
//! shared token for edge nodes, and the role matrix.
//!
//! Tokens are verified against exactly one algorithm — the one the
//! configured key is for — so `alg: none`, or an HMAC token keyed with a
//! public key, never passes. `exp`, `iat`, `sub` and `iss` are required
//! (`exp` as a number); the leeway for clock skew is 30 s. The role comes
//! from the configuration at each request, not from the token, so removing
//! a user or lowering their role takes effect at once.

use std::collections::HashMap;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Leeway for clock skew between the issuer and the verifier, seconds.
pub const LEEWAY_SECS: u64 = 30;

/// A user's role (the seed's matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including approvals and production deployments.
    Admin,
    /// Register modules and interfaces, deploy outside production, execute.
    Developer,
    /// Read everything, roll back, read the audit log.
    Operator,
    /// Read only.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Developer, Role::Operator, Role::Viewer];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Something an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// Read modules, nodes, interfaces, metrics.
    Read,
    /// Register a module version.
    RegisterModule,
    /// Delete a module version.
    DeleteModule,
    /// Register an interface version.
    RegisterInterface,
    /// Approve an interface version (accept its breaking changes).
    ApproveInterface,
    /// Deprecate an interface version.
    DeprecateInterface,
    /// Run a function on a node.
    Execute,
    /// Register or remove nodes by hand.
    ManageNodes,
    /// Send heartbeats as a node.
    NodeAgent,
    /// Read the audit log.
    ReadAudit,
    /// Deploy outside production.
    Deploy,
    /// Deploy to production (or approve a production deployment).
    DeployProduction,
    /// Pause, resume, promote or abort a rollout.
    ControlRollout,
    /// Roll a deployment back.
    Rollback,
}

impl Permission {
    fn allowed(self, role: Role) -> bool {
        use Permission::*;
        match role {
            Role::Admin => self != NodeAgent,
            Role::Developer => matches!(
                self,
                Read | RegisterModule | RegisterInterface | Execute | Deploy | ControlRollout
            ),
            Role::Operator => matches!(self, Read | ReadAudit | Rollback | ControlRollout),
            Role::Viewer => self == Read,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A configured user.
    User {
        /// User name.
        name: String,
        /// Current role.
        role: Role,
    },
    /// An edge node holding the shared node token.
    Node,
}

impl Caller {
    /// The name written to the audit log.
    pub fn name(&self) -> &str {
        match self {
            Caller::User { name, .. } => name,
            Caller::Node => "node",
        }
    }

    /// The role written to the audit log.
    pub fn role_name(&self) -> &'static str {
        match self {
            Caller::User { role, .. } => role.as_str(),
            Caller::Node => "node",
        }
    }

    /// 403 unless the caller may do `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        let ok = match self {
            Caller::User { role, .. } => p.allowed(*role),
            Caller::Node => matches!(p, Permission::NodeAgent),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} may not do this ({p:?})",
                self.role_name()
            )))
        }
    }
}

/// The claims in a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub sub: String,
    /// Role when issued (informational: the configuration decides).
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Token id.
    pub jti: String,
}

/// A configured user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub username: String,
    /// PHC-format argon2 hash (`wasmswap-control hash-password` prints one).
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// How tokens are signed.
#[derive(Clone)]
pub enum SigningKey {
    /// HMAC-SHA256 with a shared secret (at least 32 bytes).
    Hs256(Vec<u8>),
    /// Ed25519 (`EdDSA`) key pair in PEM: private to sign, public to verify.
    EdDsa {
        /// PKCS#8 private key PEM.
        private_pem: String,
        /// SPKI public key PEM.
        public_pem: String,
    },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Hs256(_) => "SigningKey::Hs256(..)",
            SigningKey::EdDsa { .. } => "SigningKey::EdDsa(..)",
        })
    }
}

/// Why a login or a token failed (the client sees one generic message per
/// case; the log says more).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key could not be used.
    #[error("bad signing key: {0}")]
    Key(String),
}

/// Issues and verifies tokens; checks passwords.
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    algorithm: Algorithm,
    issuer: String,
    ttl_secs: u64,
    users: HashMap<String, UserConfig>,
    node_token: Option<String>,
    /// A valid hash of a random password: unknown users are checked against
    /// it so that a login takes as long whether or not the user exists.
    dummy_hash: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Its expiry, Unix seconds.
    pub expires_at: u64,
    /// Who it is for.
    pub user: String,
    /// Their role.
    pub role: Role,
}

impl Authenticator {
    /// An authenticator for `users`, signing with `key`.
    pub fn new(
        key: &SigningKey,
        issuer: impl Into<String>,
        ttl_secs: u64,
        users: Vec<UserConfig>,
        node_token: Option<String>,
    ) -> Result<Self, AuthError> {
        let (encoding, decoding, algorithm) = match key {
            SigningKey::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err(AuthError::Key(
                        "the HS256 secret must be at least 32 bytes".into(),
                    ));
                }
                (
                    EncodingKey::from_secret(secret),
                    DecodingKey::from_secret(secret),
                    Algorithm::HS256,
                )
            }
            SigningKey::EdDsa {
                private_pem,
                public_pem,
            } => (
                EncodingKey::from_ed_pem(private_pem.as_bytes())
                    .map_err(|e| AuthError::Key(format!("Ed25519 private key: {e}")))?,
                DecodingKey::from_ed_pem(public_pem.as_bytes())
                    .map_err(|e| AuthError::Key(format!("Ed25519 public key: {e}")))?,
                Algorithm::EdDSA,
            ),
        };
        for u in &users {
            PasswordHash::new(&u.password_hash).map_err(|e| {
                AuthError::Key(format!(
                    "user {}: password_hash is not a PHC string: {e}",
                    u.username
                ))
            })?;
        }
        if let Some(t) = &node_token
            && t.len() < 16
        {
            return Err(AuthError::Key(
                "the node token must be at least 16 characters".into(),
            ));
        }
        Ok(Self {
            encoding,
            decoding,
            algorithm,
            issuer: issuer.into(),
            ttl_secs: ttl_secs.max(60),
            users: users.into_iter().map(|u| (u.username.clone(), u)).collect(),
            node_token,
            dummy_hash: hash_password(&uuid::Uuid::new_v4().to_string()),
        })
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks a password; issues a token. `None` for a wrong user or
    /// password (the caller cannot tell which). Blocks for the argon2 time:
    /// call from `spawn_blocking`.
    pub fn login(&self, username: &str, password: &str) -> Option<Issued> {
        let user = self.users.get(username);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let user = user.filter(|_| ok)?;
        self.issue(&user.username, user.role).ok()
    }

    /// Issues a token for `user` (used by `login`, and by tools that mint
    /// tokens for pipelines).
    pub fn issue(&self, user: &str, role: Role) -> Result<Issued, jsonwebtoken::errors::Error> {
        let iat = now_secs();
        let claims = Claims {
            sub: user.to_string(),
            role,
            iss: self.issuer.clone(),
            iat,
            exp: iat + self.ttl_secs,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)?;
        Ok(Issued {
            token,
            expires_at: claims.exp,
            user: claims.sub,
            role,
        })
    }

    /// The caller a bearer token stands for.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        if let Some(node_token) = &self.node_token
            && constant_time_eq(token.as_bytes(), node_token.as_bytes())
        {
            return Ok(Caller::Node);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.set_issuer(&[&self.issuer]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                tracing::debug!(error = %e, "token refused");
                match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        ApiError::unauthorized("token expired; log in again")
                    }
                    _ => ApiError::unauthorized("invalid token"),
                }
            })?;
        let user = self
            .users
            .get(&data.claims.sub)
            .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        Ok(Caller::User {
            name: user.username.clone(),
            role: user.role,
        })
    }
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
