//! Ferrocore updates. This slice: the update payload — what `cargo xtask build-image` publishes and
//! what the agent verifies before it writes anything.

pub mod payload;
pub mod version;
