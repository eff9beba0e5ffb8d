//! Strata's model engine: llama-family LLM inference on candle's quantized
//! kernels, built for a network where a model is split across nodes and every
//! execution can be audited.
//!
//! What it is: a GGUF loader ([`Model::load`]), a byte-level BPE tokenizer built
//! from the GGUF metadata ([`Tokenizer`]), seeded sampling ([`Sampler`]),
//! continuous batching with a KV cache per sequence ([`Batcher`]), layer-range
//! execution on explicit hidden states ([`Model::embed`],
//! [`Model::forward_layers`], [`Model::logits`]) with a versioned wire encoding
//! ([`HiddenStates::encode`]), per-layer activation commitments in a Merkle tree
//! ([`CommitmentRecorder`], [`CommitmentTree`]) and the verifier's layer
//! re-check ([`check_layer`], [`verify_layer_opening`]).
//!
//! What it is not: a server, a scheduler across nodes or a network layer; the
//! node and the verifier drive this library.
#![warn(missing_docs)]

mod batch;
mod check;
mod commitment;
mod error;
mod hidden;
mod kernels;
mod kv_cache;
mod model;
mod sampling;
mod tokenizer;
mod weights;

pub use batch::{
    generate, trace_layers, Batcher, FinishReason, Finished, GenerateRequest, SeqId, StepToken,
};
pub use check::{
    check_layer, relative_deviation, verify_layer_opening, LayerCheck, Tolerance, DEFAULT_TOLERANCE,
};
pub use commitment::{
    sketch, CommitmentRecorder, CommitmentTree, LayerEntry, Opening, MAX_ENTRY_BYTES, SKETCH_DIM,
};
pub use error::{EngineError, Result};
pub use hidden::{HiddenHasher, HiddenStates, WireDType, DEFAULT_MAX_HIDDEN_BYTES};
pub use kernels::kernel_name;
pub use kv_cache::KvCache;
pub use model::{Model, Segment};
pub use sampling::{Sampler, SamplingParams};
pub use tokenizer::{ChatMessage, Tokenizer};
pub use weights::{
    default_model_path, model_cache_dir, verify_sha256, LlamaConfig, DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_SHA256,
};

use std::path::Path;

/// A model with its tokenizer, loaded from one GGUF file.
#[derive(Debug)]
pub struct Engine {
    /// The model.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
}

impl Engine {
    /// Loads model and tokenizer from a GGUF file (read once).
    pub fn load(path: &Path) -> Result<Self> {
        let file = weights::GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf_file(&file)?;
        let model = Model::from_gguf_file(file)?;
        Ok(Self { model, tokenizer })
    }

    /// Loads the default model from the cache (see [`default_model_path`]).
    pub fn load_default() -> Result<Self> {
        Self::load(&default_model_path()?)
    }

    /// Tokenizes a chat with the model's template, ready for generation.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.tokenizer.apply_chat_template(messages, true)
    }
}
