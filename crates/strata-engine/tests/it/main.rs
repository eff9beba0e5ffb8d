//! strata-engine's integration tests, in one binary. The model-heavy ones
//! share one loaded default model (`common::engine`); `scripts/test` runs
//! this crate's tests in release, where the engine is fast enough.

mod bad_input;
mod common;
mod engine;
mod golden;
mod hf_dir;
mod safetensors;
mod tokenizer;
mod verification;
