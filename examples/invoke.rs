//! Load a module or component and call one export with JSON arguments.
//!
//! ```text
//! cargo run --example invoke -- path/to/guest.wasm greet '["world"]'
//! cargo run --example invoke            # the bundled `types` component
//! ```
//!
//! Prints the artifact's exports, the result as JSON, and the version's
//! counters. Limits and grants are the defaults: 128 MiB, 30 s, 50 % CPU, no
//! WASI capabilities.

// A command-line program: its output is the point.
#![allow(clippy::print_stdout)]

use anyhow::Context;
use wasmswap_core::{Capabilities, Limits, Runtime, Version};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| test_programs::TYPES_COMPONENT.to_string());
    let function = args.next().unwrap_or_else(|| "greet".to_string());
    let json_args = args.next().unwrap_or_else(|| r#"["wasmswap"]"#.to_string());

    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let args: serde_json::Value =
        serde_json::from_str(&json_args).context("arguments must be JSON")?;

    let runtime = Runtime::new()?;
    let artifact = runtime
        .load(&bytes)
        .with_context(|| format!("loading {path}"))?;
    let info = artifact.info();
    println!(
        "{} {:?} ({} bytes, sha256 {})",
        path, info.kind, info.size_bytes, info.id
    );
    for export in &info.exports {
        println!("  export {}: {}", export.name, export.signature);
    }

    let version = Version::new(
        &runtime,
        &artifact,
        "v1",
        Limits::default(),
        Capabilities::none(),
    )?;
    let result = version.invoke_json(&function, &args).await;
    match &result {
        Ok(value) => println!("{function}({args}) = {value}"),
        Err(e) => println!("{function}({args}) failed: {e}"),
    }
    println!("counters: {}", serde_json::to_string(&version.counters())?);
    result.map(|_| ()).map_err(Into::into)
}
