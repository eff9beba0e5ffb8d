//! strata-engine's integration tests, in one binary. The model-heavy ones
//! share one loaded default model (`common::engine`); the engine and candle's
//! kernels are compiled optimised even in the test profile (Cargo.toml).

mod adapter;
mod bad_input;
mod common;
mod engine;
mod golden;
mod hf_dir;
mod hop_audit;
mod hops;
mod safetensors;
mod shards;
mod tokenizer;
mod verification;
