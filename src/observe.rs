//! Observability: what the gateway counts and how it is read.

pub mod audit;
pub mod metrics;
pub mod trace;
