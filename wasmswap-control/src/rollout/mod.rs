//! The rollout engine: Canary, Blue-Green, Rolling, Regional and A/B
//! deployments of a module version across nodes, with health gates, metric
//! analysis and automatic rollback.
//!
//! - [`model`]: deployments, strategies and the engine's persisted state;
//! - [`plan`]: each strategy as a list of phases (share per node, hold, gates);
//! - [`analysis`]: candidate-vs-stable metrics and the A/B test;
//! - [`driver`]: the node operations the engine needs (the agent API);
//! - [`engine`]: the durable state machine that walks the phases;
//! - [`ops`]: what the API asks of it (create, execute, pause, promote, …).

pub mod analysis;
pub mod driver;
pub mod engine;
pub mod model;
pub mod ops;
pub mod plan;

pub use engine::{ControlHold, Engine, EngineSettings};
