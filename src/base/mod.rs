//! The leaves: what every layer above shares. Nothing here uses a module outside
//! `base` (see the layering rule in the crate documentation).

pub mod arena;
pub mod budget;
pub mod hex;
pub mod json;
pub mod metrics;
pub mod random;
pub mod route;
pub mod shutdown;
pub mod spans;
pub mod trace;
pub mod types;
