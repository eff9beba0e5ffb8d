//! Property tests of `strata_pipeline`'s public API: one test binary, one
//! module per concern.

mod common;
mod hostile;
mod join;
mod plan;
