//! wasmswap-control integration tests: one binary (see STYLE.md), a module
//! per topic. Router tests run without a socket (`oneshot`); the store suite
//! runs against SQLite + a blob directory and against a real PostgreSQL and
//! a real S3-compatible server that `services` starts on 127.0.0.1.

mod api_docs;
mod authz;
mod blob_faults;
mod common;
mod config;
mod crash;
mod execute;
mod hostile;
mod interfaces;
mod jwt;
mod limits;
mod listener;
mod modules;
mod node_faults;
mod nodes;
mod rollout_e2e;
mod rollout_unit;
mod services;
mod store_suite;
