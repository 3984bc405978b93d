//! Density: load N distinct small modules (each with a data segment, so each
//! gets its own copy-on-write memory image) into one runtime, keep them all
//! loaded, call a sample of them, and report resident memory.
//!
//! ```text
//! cargo run --release --example density            # 10,000 modules
//! cargo run --release --example density -- 20000
//! ```

// A command-line program: its output is the point.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use serde_json::json;
use wasmswap_core::{Capabilities, Limits, Runtime, Version};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let runtime = Runtime::new()?;
    let before = rss_kib();
    let started = Instant::now();
    let mut versions = Vec::with_capacity(n);
    for i in 0..n {
        let wasm = wat::parse_str(format!(
            "(module (memory 1) (data (i32.const 0) \"module {i}\")
               (func (export \"id\") (result i32) i32.const {i}))"
        ))?;
        let artifact = runtime.load(&wasm)?;
        versions.push(Version::new(
            &runtime,
            &artifact,
            format!("m{i}"),
            Limits::default(),
            Capabilities::none(),
        )?);
    }
    let load_time = started.elapsed();
    assert_eq!(runtime.loaded_count(), n);
    // Every 100th module still answers with its own id.
    for (i, v) in versions.iter().enumerate().step_by(100) {
        assert_eq!(v.invoke_json("id", &json!([])).await?, json!(i));
    }
    let after = rss_kib();
    println!(
        "{n} modules loaded in {:.1} s; RSS {:.1} MiB -> {:.1} MiB ({:.1} KiB per module)",
        load_time.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / n as f64
    );
    Ok(())
}
