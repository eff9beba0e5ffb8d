//! Tests of `strata_pipeline`'s public API (properties of the plans, the
//! caller's side against a scripted network): one test binary, one
//! module per concern.

mod common;
mod hostile;
mod join;
mod plan;
mod serve;
