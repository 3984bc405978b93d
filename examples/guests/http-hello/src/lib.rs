//! A wasi-http handler (the `wasi:http/proxy` world), version 1.

const VERSION: &str = "v1";
include!("../handler.rs");
