//! Per-version resource limits. Limits are data (serde, so the control plane
//! can send them); [`StoreLimiter`] enforces them through wasmtime's
//! `ResourceLimiter`, the epoch deadline enforces time and CPU share.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MIB: u64 = 1 << 20;

/// Limits applied to every call of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Linear memory per instance, in MiB (1–512). Default 128.
    #[serde(rename = "maxMemoryMB")]
    pub max_memory_mb: u32,
    /// Wall-clock time per call, in milliseconds (1–300,000). Default 30,000.
    pub timeout_ms: u64,
    /// Share of one core a call may use, in percent (1–100). Once a call has
    /// used 10 ms of CPU, it is paused at epoch ticks whenever its CPU time
    /// exceeds this share of its wall time (CPU time as for `cpu_time_ms`);
    /// shorter calls are never paused.
    /// Default 50.
    pub max_cpu_percent: u8,
    /// CPU time budget per call in milliseconds: time running wasm code —
    /// not time paused by the CPU share, queued behind other tasks, or
    /// inside host calls such as a WASI sleep or read (those are bounded by
    /// the timeout); `None` for no budget
    /// beyond the timeout.
    /// Default `None`.
    pub cpu_time_ms: Option<u64>,
    /// Maximum elements per table. Default 10,000.
    pub max_table_elements: u64,
    /// Maximum instances per store (a component instantiates several core
    /// instances). Default 50.
    pub max_instances: u32,
    /// Maximum tables per store. Default 50.
    pub max_tables: u32,
    /// Maximum linear memories per store. Default 10.
    pub max_memories: u32,
    /// Maximum host resources (handles: streams, pollables, HTTP fields and
    /// bodies…) a component may hold open at once. They live in host
    /// memory, outside the guest's memory limit. Default 10,000.
    pub max_resources: u32,
    /// Fuel budget per call (needs [`RuntimeConfig::fuel`]); `None` for none.
    /// Default `None`.
    ///
    /// [`RuntimeConfig::fuel`]: crate::RuntimeConfig::fuel
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory_mb: 128,
            timeout_ms: 30_000,
            max_cpu_percent: 50,
            cpu_time_ms: None,
            max_table_elements: 10_000,
            max_instances: 50,
            max_tables: 50,
            max_memories: 10,
            max_resources: 10_000,
            fuel: None,
        }
    }
}

impl Limits {
    /// Checks every field against its range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(1..=512).contains(&self.max_memory_mb) {
            return bad(format!(
                "maxMemoryMB must be 1..=512, got {}",
                self.max_memory_mb
            ));
        }
        if !(1..=300_000).contains(&self.timeout_ms) {
            return bad(format!(
                "timeoutMs must be 1..=300000, got {}",
                self.timeout_ms
            ));
        }
        if !(1..=100).contains(&self.max_cpu_percent) {
            return bad(format!(
                "maxCpuPercent must be 1..=100, got {}",
                self.max_cpu_percent
            ));
        }
        if self.cpu_time_ms == Some(0) {
            return bad("cpuTimeMs must be positive".into());
        }
        if self.max_instances == 0
            || self.max_tables == 0
            || self.max_memories == 0
            || self.max_resources == 0
        {
            return bad(
                "maxInstances, maxTables, maxMemories and maxResources must be positive".into(),
            );
        }
        Ok(())
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.max_memory_mb) * MIB
    }

    /// Wall-clock timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// When a call is dropped outright: the timeout plus a short grace.
    /// Epoch interruption ends running guest code at the timeout, but not a
    /// guest blocked in a host call (a WASI sleep, a body that never comes).
    pub(crate) fn backstop(&self) -> Duration {
        self.timeout() + Duration::from_millis(50)
    }

    /// CPU time budget.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu_time_ms.map(Duration::from_millis)
    }
}

/// Enforces [`Limits`] inside one store and remembers what it refused, so a
/// trap that follows a refused `memory.grow` is reported as
/// [`Error::MemoryLimit`] rather than as a bare `unreachable`.
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    pub memory_denied: bool,
    pub table_denied: bool,
    pub memory_high_water: u64,
}

impl StoreLimiter {
    pub(crate) fn new(l: &Limits) -> Self {
        Self {
            memory_bytes: l.memory_bytes(),
            table_elements: l.max_table_elements,
            instances: l.max_instances as usize,
            tables: l.max_tables as usize,
            memories: l.max_memories as usize,
            memory_denied: false,
            table_denied: false,
            memory_high_water: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            // Refuse the growth (memory.grow returns -1, as the spec allows);
            // the guest may cope, and if it traps the flag names the cause.
            self.memory_denied = true;
            return Ok(false);
        }
        self.memory_high_water = self.memory_high_water.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.table_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let l = Limits::default();
        assert_eq!(l.memory_bytes(), 128 * MIB);
        assert_eq!(l.timeout(), Duration::from_secs(30));
        assert_eq!(l.max_cpu_percent, 50);
        assert!(l.validate().is_ok());
    }

    #[test]
    fn ranges_are_enforced_and_named() {
        let cases: Vec<(Limits, &str)> = vec![
            (
                Limits {
                    max_memory_mb: 0,
                    ..Limits::default()
                },
                "maxMemoryMB",
            ),
            (
                Limits {
                    max_memory_mb: 513,
                    ..Limits::default()
                },
                "maxMemoryMB",
            ),
            (
                Limits {
                    timeout_ms: 0,
                    ..Limits::default()
                },
                "timeoutMs",
            ),
            (
                Limits {
                    timeout_ms: 300_001,
                    ..Limits::default()
                },
                "timeoutMs",
            ),
            (
                Limits {
                    max_cpu_percent: 0,
                    ..Limits::default()
                },
                "maxCpuPercent",
            ),
            (
                Limits {
                    max_cpu_percent: 101,
                    ..Limits::default()
                },
                "maxCpuPercent",
            ),
            (
                Limits {
                    cpu_time_ms: Some(0),
                    ..Limits::default()
                },
                "cpuTimeMs",
            ),
        ];
        for (l, field) in cases {
            let e = l.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn json_uses_the_api_field_names() {
        let l: Limits = serde_json::from_str(r#"{"maxMemoryMB":64,"timeoutMs":500}"#).unwrap();
        assert_eq!(l.max_memory_mb, 64);
        assert_eq!(l.timeout_ms, 500);
        assert_eq!(l.max_cpu_percent, 50);
    }
}
