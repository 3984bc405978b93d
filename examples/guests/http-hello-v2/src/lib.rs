//! A wasi-http handler (the `wasi:http/proxy` world), version 2: answers differently from v1.

const VERSION: &str = "v2";
include!("../../http-hello/handler.rs");
