//! Integration tests for wasmswap-core, against real guests built from
//! `examples/guests` (one test binary, so the crate links once).

mod cache;
mod component;
mod core_module;
mod hostile;
mod http;
mod json_fuzz;
mod lane;
mod load;
mod pool;
mod props;
mod sandbox;
mod service;
mod wit;

use std::sync::OnceLock;
use std::time::Duration;

use wasmswap_core::{Capabilities, Limits, Runtime, Version};

/// One runtime shared by most tests, as a host would share one (the
/// defaults: no low-priority lane; `lane.rs` tests that on its own).
pub fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new().expect("default runtime"))
        .clone()
}

/// Loads a built guest and wraps it in a version with default limits.
pub fn version_of(path: &str) -> Version {
    version_with(path, Limits::default(), Capabilities::none())
}

pub fn version_with(path: &str, limits: Limits, caps: Capabilities) -> Version {
    let rt = runtime();
    let artifact = rt.load(&test_programs::bytes(path)).expect("guest loads");
    Version::new(&rt, &artifact, "test", limits, caps).expect("version")
}

pub fn short_limits() -> Limits {
    Limits {
        timeout_ms: 300,
        max_memory_mb: 32,
        max_cpu_percent: 100,
        ..Limits::default()
    }
}

pub const GENEROUS: Duration = Duration::from_secs(20);

/// CPU time the calling thread has used (`/proc/thread-self/stat`,
/// user + system, at the kernel's clock-tick resolution of 10 ms).
pub fn this_thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}
