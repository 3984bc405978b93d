//! Probes the WASI p2 sandbox through Rust's std, as ordinary guest code would.

use std::io::Write;

wit_bindgen::generate!({ world: "probe", path: "wit" });

struct Probe;

impl Guest for Probe {
    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }
    fn write_file(path: String, contents: String) -> Result<(), String> {
        std::fs::write(&path, contents).map_err(|e| e.to_string())
    }
    fn list_dir(path: String) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn env_var(name: String) -> Option<String> {
        std::env::var(name).ok()
    }
    fn env_count() -> u32 {
        std::env::vars().count() as u32
    }
    fn print_stdout(s: String) {
        // Fails silently when stdout is not granted; the probe only checks
        // that the guest keeps running.
        let _ = std::io::stdout().write_all(s.as_bytes());
    }
    fn wall_clock_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
    fn tcp_connect(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(&addr).map(drop).map_err(|e| e.to_string())
    }
    fn sleep_ms(ms: u64) {
        // Blocks in the host (a WASI clock subscription), where epoch
        // interruption cannot reach.
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    fn health_check() -> bool {
        true
    }
    fn hold_resources(count: u32) -> u32 {
        // Each pollable is an entry in the host's resource table, in host
        // memory: the guest's memory limit does not see it.
        let held: Vec<_> = (0..count)
            .map(|_| wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000))
            .collect();
        held.len() as u32
    }
    fn flood_stdout() -> u64 {
        let chunk = [b'x'; 64 * 1024];
        let mut written = 0u64;
        loop {
            if std::io::stdout().write_all(&chunk).is_ok() {
                written += chunk.len() as u64;
            }
            std::hint::black_box(written);
        }
    }
    fn random_u64() -> u64 {
        // HashMap's RandomState is seeded from WASI random.
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(0u8)
    }
}

export!(Probe);
