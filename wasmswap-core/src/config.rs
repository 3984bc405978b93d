//! [`RuntimeConfig`]: how the one wasmtime `Engine` behind a [`Runtime`] is
//! built. Setters are infallible and document their defaults; everything is
//! checked together in [`RuntimeConfig::build`].
//!
//! [`Runtime`]: crate::Runtime

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::runtime::Runtime;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Virtual address space the pool may reserve for linear memories. x86_64 and
/// aarch64 give a process 128 TiB; leave most of it to the rest of the process.
const ADDRESS_SPACE_BUDGET: u64 = 64 << 40;

/// Builder for a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub(crate) pooling: bool,
    pub(crate) max_instances: u32,
    pub(crate) max_memory_bytes: u64,
    pub(crate) max_table_elements: u64,
    pub(crate) max_wasm_stack: usize,
    pub(crate) epoch_tick: Duration,
    pub(crate) max_module_bytes: usize,
    pub(crate) compile_timeout: Duration,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) allowed_import_prefixes: Vec<String>,
    pub(crate) simd: bool,
    pub(crate) fuel: bool,
    pub(crate) memory_keep_resident: u64,
    pub(crate) low_priority_lane: bool,
    pub(crate) low_priority_window: Duration,
    pub(crate) isolator: Option<std::sync::Arc<dyn crate::Isolator>>,
    pub(crate) isolation_window: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory_bytes: 512 * MIB,
            max_table_elements: 100_000,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_micros(500),
            max_module_bytes: 50 << 20,
            compile_timeout: Duration::from_secs(60),
            cache_dir: None,
            allowed_import_prefixes: vec![
                "wasi_snapshot_preview1::".into(),
                "wasi:cli/".into(),
                "wasi:io/".into(),
                "wasi:clocks/".into(),
                "wasi:random/".into(),
                "wasi:filesystem/".into(),
                "wasi:sockets/".into(),
                "wasi:http/".into(),
            ],
            simd: true,
            fuel: false,
            memory_keep_resident: 64 * MIB,
            low_priority_lane: false,
            low_priority_window: Duration::from_secs(10),
            isolator: None,
            isolation_window: Duration::from_secs(60),
        }
    }
}

impl RuntimeConfig {
    /// A configuration with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use wasmtime's pooling instance allocator (slots reserved up front,
    /// reused with copy-on-write memory images) instead of allocating each
    /// instance on demand. By default this is `true`.
    pub fn pooling(&mut self, enable: bool) -> &mut Self {
        self.pooling = enable;
        self
    }

    /// How many instances may exist at once across every version; this sizes
    /// the pool's instance, memory, table and stack slots. Loaded but idle
    /// versions use no slot. By default this is 1,000.
    pub fn max_instances(&mut self, n: u32) -> &mut Self {
        self.max_instances = n;
        self
    }

    /// The largest linear memory any version may be given (each version's own
    /// limit is at most this). By default this is 512 MiB.
    pub fn max_memory_bytes(&mut self, bytes: u64) -> &mut Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// The largest table (in elements) any instance may have; modules declaring
    /// more are refused at load time. By default this is 100,000.
    pub fn max_table_elements(&mut self, n: u64) -> &mut Self {
        self.max_table_elements = n;
        self
    }

    /// Maximum wasm stack per call, in bytes; deeper recursion ends in
    /// [`Error::StackOverflow`]. By default this is 512 KiB.
    pub fn max_wasm_stack(&mut self, bytes: usize) -> &mut Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// Period of the epoch ticker thread: the granularity of timeouts and of
    /// CPU-share throttling, and the longest a computing guest holds its
    /// executor thread before yielding to other tasks on it. By default
    /// 500 µs: shorter ticks cut other tenants' tail latency while a guest
    /// computes, at the cost of more ticker wake-ups (see
    /// `benches/benches/hostile.rs` and BENCHMARKS.md).
    pub fn epoch_tick(&mut self, tick: Duration) -> &mut Self {
        self.epoch_tick = tick;
        self
    }

    /// Largest binary accepted by [`Runtime::load`]. By default this is 50 MiB.
    pub fn max_module_bytes(&mut self, bytes: usize) -> &mut Self {
        self.max_module_bytes = bytes;
        self
    }

    /// Longest a single compilation may take before the load fails with
    /// [`LoadError::CompileTimeout`](crate::LoadError::CompileTimeout).
    /// By default this is 60 s.
    pub fn compile_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.compile_timeout = timeout;
        self
    }

    /// Directory for precompiled artifacts, keyed by content hash and engine
    /// compatibility, so a restart or rollback never recompiles. By default
    /// there is no disk cache (only the in-memory one).
    pub fn cache_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Replaces the capability set: a binary may import only names starting
    /// with one of these prefixes (`module::name` for core modules, the
    /// interface name such as `wasi:cli/environment@0.2.0` for components).
    /// By default this is WASI p1 and the p2 `cli`, `io`, `clocks`, `random`,
    /// `filesystem`, `sockets` and `http` packages — the interfaces the
    /// runtime links; what a guest may actually *do* with them is decided per
    /// version by its [`Capabilities`](crate::Capabilities).
    pub fn allowed_imports<I, S>(&mut self, prefixes: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_import_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Enable the SIMD proposal (Rust and C toolchains emit it routinely).
    /// By default this is `true`. Threads, GC, exceptions, memory64 and the
    /// other post-MVP proposals are always off.
    pub fn simd(&mut self, enable: bool) -> &mut Self {
        self.simd = enable;
        self
    }

    /// Instrument compiled code for fuel so versions can set a fuel budget.
    /// Costs a few percent of guest speed. By default this is `false`.
    pub fn fuel(&mut self, enable: bool) -> &mut Self {
        self.fuel = enable;
        self
    }

    /// How much of a pooled linear memory stays resident when its instance
    /// ends: the pages the guest wrote, up to this many bytes, are reset with
    /// `memset` and kept for the slot's next instance instead of being given
    /// back to the kernel (`madvise`) and faulted in again, zero-filled, on
    /// the next touch. Page faults and decommits are kernel memory management
    /// the whole process shares: a guest that fills 32 MiB per call costs
    /// every other tenant on the node far more through them than through its
    /// CPU time (`benches/benches/hostile.rs`, BENCHMARKS.md).
    ///
    /// Only the written pages are found and reset, with Linux's `PAGEMAP_SCAN`
    /// (kernel 6.7 or later). Without it the runtime keeps nothing resident,
    /// because resetting blindly would clear every instance's whole memory.
    /// Nor does it where swap is on when the runtime is built: wasmtime 48's
    /// scan misses written pages the kernel has swapped out, and the slot's
    /// next instance could read them. Do not turn swap on under a running
    /// runtime that keeps memory resident; restart it.
    ///
    /// The cost is resident memory, never given back while the runtime
    /// lives: each pool slot keeps what its last instance wrote, up to this
    /// much, so the worst case is `max_instances` × this (62.5 GiB for the
    /// defaults, if a thousand instances each wrote 64 MiB at once). `0`
    /// gives every page back at the end of each instance; values above
    /// `max_memory_bytes` act as it. By default this is 64 MiB.
    pub fn memory_keep_resident(&mut self, bytes: u64) -> &mut Self {
        self.memory_keep_resident = bytes;
        self
    }

    /// Run the calls that compute for long on threads of their own at the
    /// OS's lowest priority (Linux `SCHED_IDLE`: below even nice 19; other
    /// systems keep normal priority), so that they get only the CPU time
    /// the callers' threads leave idle. A call moves there at the first
    /// epoch tick after it has used 10 ms of CPU (by its thread's own CPU
    /// clock, so a call the OS merely preempted does not count); and for
    /// [`low_priority_window`](Self::low_priority_window) after one of its
    /// calls did, or hit a limit (timeout, CPU time, memory, stack, tables
    /// or resources, fuel), every call of that version starts there.
    ///
    /// On an edge node the callers' threads are the serving threads, and a
    /// guest computing on one holds every other request queued on it for up
    /// to a tick at a time: a tenant that loops or computes for long costs
    /// the others their tail latency. With the lane it costs them next to
    /// nothing (`benches/benches/hostile.rs`: the bystander's p99 under
    /// attack 0.82–0.92× unloaded, against 0.97–1.62× without, in
    /// BENCHMARKS.md).
    ///
    /// The price, and why it is off by default: while every core is busy
    /// (well-behaved traffic, or other processes), calls on the lane get
    /// next to no CPU and end in their timeout — a legitimate tenant's long
    /// computation included. The caller gets that `timeout` on time; the
    /// call's instance is freed when the lane next runs, and a lane thread
    /// takes at most 64 calls (beyond, calls stay on their callers'
    /// threads). Turn it on for nodes that run untrusted tenants, with
    /// headroom. The lane has one single-threaded executor per core,
    /// started when the first call goes there. By default this is `false`.
    pub fn low_priority_lane(&mut self, enable: bool) -> &mut Self {
        self.low_priority_lane = enable;
        self
    }

    /// How long a version's calls start on the low-priority lane after one
    /// of them computed past its CPU burst or hit a limit (see
    /// [`low_priority_lane`](Self::low_priority_lane)); each such call
    /// starts the window again. `0` moves only the calls that compute past
    /// their burst, each at that tick. At most an hour. By default this is
    /// 10 s.
    pub fn low_priority_window(&mut self, window: Duration) -> &mut Self {
        self.low_priority_window = window;
        self
    }

    /// Where the calls (JSON and wasi-http) of a version that hit its memory limit run, for
    /// [`isolation_window`](Self::isolation_window) after it did (see
    /// [`Isolator`](crate::Isolator)): `wasmswap-host` gives a worker
    /// process, so that the tenant's memory-map churn stops slowing every
    /// other tenant's instances. Without one (the default), such calls run
    /// here like any other.
    pub fn isolator(&mut self, isolator: std::sync::Arc<dyn crate::Isolator>) -> &mut Self {
        self.isolator = Some(isolator);
        self
    }

    /// How long a version's calls go to the
    /// [`isolator`](Self::isolator) after one of them hit its memory limit;
    /// each hit, there or here, starts the window again. Between 1 s and an
    /// hour. By default this is 60 s.
    pub fn isolation_window(&mut self, window: Duration) -> &mut Self {
        self.isolation_window = window;
        self
    }

    /// Checks the configuration, builds the engine and starts its epoch ticker.
    pub fn build(&self) -> Result<Runtime> {
        self.validate()?;
        Runtime::from_config(self.clone())
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.max_instances == 0 || self.max_instances > 100_000 {
            return bad(format!(
                "max_instances must be 1..=100000, got {}",
                self.max_instances
            ));
        }
        if self.max_memory_bytes < 64 << 10 || self.max_memory_bytes > 4 * GIB {
            return bad(format!(
                "max_memory_bytes must be between 64 KiB and 4 GiB, got {}",
                self.max_memory_bytes
            ));
        }
        if self.max_table_elements == 0 {
            return bad("max_table_elements must be at least 1".into());
        }
        if self.max_wasm_stack < 16 << 10 || self.max_wasm_stack > 64 << 20 {
            return bad(format!(
                "max_wasm_stack must be between 16 KiB and 64 MiB, got {}",
                self.max_wasm_stack
            ));
        }
        if self.epoch_tick < Duration::from_micros(100) || self.epoch_tick > Duration::from_secs(1)
        {
            return bad(format!(
                "epoch_tick must be between 100µs and 1s, got {:?}",
                self.epoch_tick
            ));
        }
        if self.low_priority_window > Duration::from_secs(3600) {
            return bad(format!(
                "low_priority_window must be at most 1 hour, got {:?}",
                self.low_priority_window
            ));
        }
        if self.isolation_window < Duration::from_secs(1)
            || self.isolation_window > Duration::from_secs(3600)
        {
            return bad(format!(
                "isolation_window must be between 1 s and 1 hour, got {:?}",
                self.isolation_window
            ));
        }
        if self.max_module_bytes == 0 {
            return bad("max_module_bytes must be at least 1".into());
        }
        if self.compile_timeout.is_zero() {
            return bad("compile_timeout must be positive".into());
        }
        if self.pooling
            && self.memory_reservation() * u64::from(self.max_instances) > ADDRESS_SPACE_BUDGET
        {
            return bad(format!(
                "a pool of {} memories of up to {} bytes does not fit the address space budget",
                self.max_instances, self.max_memory_bytes
            ));
        }
        Ok(())
    }

    /// Virtual memory reserved per linear memory. 4 GiB + guard lets Cranelift
    /// drop bounds checks, which is what we want while the pool fits; for very
    /// large pools fall back to reserving only the maximum memory size
    /// (explicit bounds checks, but 10x more slots in the same space).
    pub(crate) fn memory_reservation(&self) -> u64 {
        let fast = 4 * GIB + self.guard_size();
        if fast * u64::from(self.max_instances) <= ADDRESS_SPACE_BUDGET {
            fast
        } else {
            self.max_memory_bytes.next_multiple_of(64 << 10)
        }
    }

    pub(crate) fn guard_size(&self) -> u64 {
        32 * MIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_address_space() {
        let c = RuntimeConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.memory_reservation(), 4 * GIB + 32 * MIB);
    }

    #[test]
    fn large_pools_shrink_their_reservation() {
        let mut c = RuntimeConfig::default();
        c.max_instances(50_000);
        assert!(c.validate().is_ok());
        assert_eq!(c.memory_reservation(), 512 * MIB);
    }

    #[test]
    fn out_of_range_values_name_the_setting() {
        for (cfg, needle) in [
            (
                RuntimeConfig::default().max_instances(0).clone(),
                "max_instances",
            ),
            (
                RuntimeConfig::default().max_memory_bytes(1).clone(),
                "max_memory_bytes",
            ),
            (
                RuntimeConfig::default().max_wasm_stack(1).clone(),
                "max_wasm_stack",
            ),
            (
                RuntimeConfig::default().epoch_tick(Duration::ZERO).clone(),
                "epoch_tick",
            ),
            (
                RuntimeConfig::default()
                    .compile_timeout(Duration::ZERO)
                    .clone(),
                "compile_timeout",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }
}
