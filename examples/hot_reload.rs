//! Serve a wasi-http component and hot-reload it when its file changes.
//!
//! ```text
//! cargo run --example hot_reload -- path/to/component.wasm [127.0.0.1:8080]
//! curl -i localhost:8080/hello          # x-wasmswap-version: v1
//! cp other.wasm path/to/component.wasm  # reloaded, no request dropped
//! curl -i localhost:8080/hello          # x-wasmswap-version: v2
//! ```
//!
//! Without arguments it serves the bundled `http-hello` guest.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| test_programs::HTTP_HELLO_V1_COMPONENT.to_string());
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8080".to_string())
        .parse()?;
    wasmswap_examples::hot_reload::run(addr, std::path::Path::new(&path)).await
}
