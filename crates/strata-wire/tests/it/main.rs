//! strata-wire's integration tests, in one binary (one link of the crate
//! and its dependencies instead of one per file).

mod adapted;
mod audit;
mod common;
mod golden;
mod hop;
mod policy;
mod receipt;
mod task;
