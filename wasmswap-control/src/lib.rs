//! `wasmswap-control`: the control plane of a wasmswap fleet.
//!
//! A REST API under `/api/v1` ([`api::router`]) over a [`store::Store`]
//! (SQLite + a blob directory by default; PostgreSQL + S3-compatible
//! storage to scale out), with JWT auth and roles ([`auth`]), per-caller
//! rate limits ([`rate`]), an audit log of every state change, and a client
//! for the node agent API of `wasmswap-host` ([`agent`]).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use wasmswap_control::{ControlConfig, serve};
//! let config = ControlConfig::local("./data")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! serve(listener, config, std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod agent;
pub mod api;
pub mod auth;
pub mod clock;
mod config;
pub mod error;
mod metrics;
pub mod model;
pub mod rate;
pub mod rollout;
mod server;
pub mod store;

pub use config::{AuthSettings, ControlConfig, StoreSettings};
pub use server::{build_state, serve, serve_state};
