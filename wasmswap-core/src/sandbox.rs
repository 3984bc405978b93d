//! The WASI capability sandbox. Nothing is inherited from the host: no
//! environment, no stdio, no filesystem, no network, and (unless granted) a
//! wall clock frozen at the Unix epoch and a fixed-seed random source, so an
//! ungranted guest is deterministic. Grants are data, applied per call.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::{Error, Result};

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preopen {
    /// Directory on the host.
    pub host_path: PathBuf,
    /// Path the guest sees it at (e.g. `/data`).
    pub guest_path: String,
    /// Whether the guest may create, write and delete. Default read-only.
    #[serde(default)]
    pub writable: bool,
}

/// What a version's guest may see and do. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Capabilities {
    /// Directories visible to the guest. Wasmtime's cap-std layer refuses `..`,
    /// absolute paths and symlinks that lead outside them.
    pub preopens: Vec<Preopen>,
    /// Environment variables, by name and value. Nothing is copied from the
    /// host's own environment.
    pub env: Vec<(String, String)>,
    /// Real wall-clock time (otherwise the clock reads the Unix epoch).
    pub wall_clock: bool,
    /// Real randomness (otherwise a fixed-seed generator).
    pub random: bool,
    /// Hosts the guest may send outbound HTTP requests to (wasi-http guests).
    /// Empty: none.
    pub outbound_http: Vec<String>,
}

impl Capabilities {
    /// Grants nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a read-only preopened directory.
    pub fn preopen(mut self, host_path: impl Into<PathBuf>, guest_path: impl Into<String>) -> Self {
        self.preopens.push(Preopen {
            host_path: host_path.into(),
            guest_path: guest_path.into(),
            writable: false,
        });
        self
    }

    /// Adds a writable preopened directory.
    pub fn preopen_writable(
        mut self,
        host_path: impl Into<PathBuf>,
        guest_path: impl Into<String>,
    ) -> Self {
        self.preopens.push(Preopen {
            host_path: host_path.into(),
            guest_path: guest_path.into(),
            writable: true,
        });
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Grants the real wall clock.
    pub fn wall_clock(mut self) -> Self {
        self.wall_clock = true;
        self
    }

    /// Grants real randomness.
    pub fn random(mut self) -> Self {
        self.random = true;
        self
    }

    /// A copy with no side effects beyond the call's own memory: no writable
    /// directories and no outbound HTTP. Used for mirrored calls.
    pub fn without_side_effects(&self) -> Self {
        Self {
            preopens: self
                .preopens
                .iter()
                .filter(|p| !p.writable)
                .cloned()
                .collect(),
            outbound_http: Vec::new(),
            ..self.clone()
        }
    }

    /// Checks that every preopen exists and is a directory, so a bad grant is
    /// reported when the version is created, not on its first call.
    pub fn validate(&self) -> Result<()> {
        for p in &self.preopens {
            if !p.host_path.is_dir() {
                return Err(Error::Sandbox(format!(
                    "preopen {} is not a directory on the host",
                    p.host_path.display()
                )));
            }
            if p.guest_path.is_empty() {
                return Err(Error::Sandbox("preopen guest path is empty".into()));
            }
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(Error::Sandbox(format!(
                    "invalid environment variable name {name:?}"
                )));
            }
        }
        Ok(())
    }

    /// Builds the WASI context for one call.
    pub(crate) fn builder(&self) -> Result<WasiCtxBuilder> {
        let mut b = WasiCtxBuilder::new();
        // Explicit even where these are the defaults: the sandbox must not
        // change if a wasmtime release changes them.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.socket_addr_check(|_, _| Box::pin(async { false }));
        for (k, v) in &self.env {
            b.env(k, v);
        }
        for p in &self.preopens {
            let perms = if p.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            b.preopened_dir(&p.host_path, &p.guest_path, perms)
                .map_err(|e| Error::Sandbox(format!("preopen {}: {e:#}", p.host_path.display())))?;
        }
        if !self.wall_clock {
            b.wall_clock(FrozenClock);
        }
        if !self.random {
            b.secure_random(rand::rngs::StdRng::seed_from_u64(0));
            b.insecure_random(rand::rngs::StdRng::seed_from_u64(1));
            b.insecure_random_seed(0);
        }
        Ok(b)
    }
}

/// A wall clock that always reads the Unix epoch.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}
