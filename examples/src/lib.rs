//! Code shared by the embedding examples, kept in a library so the examples'
//! own tests can drive it.

pub mod hot_reload;
pub mod wit_diff;
