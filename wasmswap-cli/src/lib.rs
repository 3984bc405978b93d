//! The `wasmswap` command.
//!
//! - `wasmswap up [--demo]` starts a local cluster in one process (the
//!   control plane with its embedded store, edge nodes in two regions, the
//!   bundled example service) — see [`cluster`] and [`demo`];
//! - every other subcommand is a client of the control plane's REST API
//!   ([`client`]): login, modules, deploy, status `--watch`, the rollout
//!   controls, nodes and interfaces, as tables or, with `--json`, as the
//!   API's JSON; exit codes in [`client::exit`].

pub mod client;
pub mod cluster;
pub mod demo;
pub mod deployments;
pub mod fleet;
pub mod modules;
pub mod output;
