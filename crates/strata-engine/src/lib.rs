//! Strata's model engine: llama-family LLM inference on candle's quantized
//! kernels, built for a network where a model is split across nodes and every
//! execution can be audited.
//!
//! What it is: a loader for GGUF files and Hugging Face model directories
//! (safetensors plus `config.json`, [`Engine::load`]), a byte-level BPE tokenizer
//! built from the GGUF metadata or `tokenizer.json` ([`Tokenizer`]), seeded
//! sampling ([`Sampler`]),
//! continuous batching with a KV cache per sequence ([`Batcher`]), layer-range
//! execution on explicit hidden states ([`Model::embed`],
//! [`Model::forward_layers`], [`Model::logits`]) with a versioned wire encoding
//! ([`HiddenStates::encode`]), per-layer activation commitments in a Merkle tree
//! ([`CommitmentRecorder`], [`CommitmentTree`]) and the verifier's layer
//! re-check ([`check_layer`], [`verify_layer_opening`]).
//!
//! What it is not: a server, a scheduler across nodes or a network layer; the
//! node and the verifier drive this library.
//!
//! Modules, from the bottom up (each uses only those above it):
//!
//! - `error`: [`EngineError`];
//! - `adapter`: LoRA [`Adapter`]s (a policy is a base model plus one), their
//!   file format and identity;
//! - `ops`: the numeric primitives (dot product, RMS norm, SiLU) and the
//!   determinism contract that lets a verifier re-run a layer bit for bit;
//! - `kernels`: quantized matmul kernels (scalar, AVX2, AVX-512 VNNI) and the
//!   attention inner loop; `linear`: a quantized linear map on them or on candle;
//! - `loader`: GGUF files and Hugging Face directories into one set of weights
//!   and a [`LlamaConfig`], whole or a [`Shard`], and a [`ModelLayout`] of
//!   each part's size; `default_model`: the model cache and the default
//!   model's file name and digest;
//! - `hidden`: [`HiddenStates`] and their wire encoding; `kv_cache`: [`KvCache`];
//! - `model`: the transformer (embedding, attention, MLP, residual blocks,
//!   head), which reports each layer to a [`LayerObserver`];
//! - `commitment`: per-layer entries recorded by observing the model, and
//!   their Merkle tree; `check`: the verifier's layer re-check;
//! - `tokenizer`, `sampling`, `batch`: text in and out, token choice, and
//!   continuous batching over the model; `hop`: the same for one pipeline hop
//!   (a [`Shard`] of the blocks, fed tokens or the previous hop's states).
#![warn(missing_docs)]

mod adapter;
mod audit;
mod batch;
mod check;
mod commitment;
mod default_model;
mod error;
mod hidden;
mod hop;
mod kernels;
mod kv_cache;
mod linear;
mod loader;
mod model;
mod ops;
mod sampling;
mod tamper;
mod tokenizer;

pub use adapter::{
    Adapter, LoraPart, LoraTarget, ADAPTER_FORMAT, MAX_ADAPTER_BYTES, MAX_ADAPTER_RANK,
};
pub use audit::{
    check_embedding, check_sampling, check_sampling_from, rederive, rederive_adapted, rederive_hop,
    rederive_hop_adapted, SampleCheck,
};
pub use batch::{
    generate, trace_layers, Batcher, FinishReason, Finished, GenerateRequest, SeqId, StepToken,
};
pub use check::{
    check_layer, check_layer_adapted, relative_deviation, verify_layer_opening,
    verify_layer_opening_adapted, LayerCheck, Tolerance, DEFAULT_TOLERANCE,
};
pub use commitment::{
    sketch, CommitmentRecorder, CommitmentTree, LayerEntry, Opening, MAX_ENTRY_BYTES, SKETCH_DIM,
};
pub use default_model::{
    default_model_path, model_cache_dir, model_choice, verify_sha256, DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_SHA256,
};
pub use error::{EngineError, Result};
pub use hidden::{HiddenHasher, HiddenStates, WireDType, DEFAULT_MAX_HIDDEN_BYTES};
pub use hop::{HopBatcher, HopFinished, HopInput, HopKey, HopOptions, HopOutput};
pub use kernels::kernel_name;
pub use kv_cache::KvCache;
pub use loader::{LlamaConfig, ModelLayout, Shard, MAX_SAFETENSORS_HEADER_BYTES};
pub use model::{LayerObserver, LayerRerun, Model, Segment};
pub use sampling::{Sampler, SamplingParams, TokenLogprobs, MAX_TOP_LOGPROBS};
pub use tamper::LayerTamper;
pub use tokenizer::{ChatMessage, Tokenizer};

use std::path::Path;

/// A model with its tokenizer, loaded from a GGUF file or a model directory.
#[derive(Debug)]
pub struct Engine {
    /// The model.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
}

impl Engine {
    /// Loads model and tokenizer from `path`, which is either
    ///
    /// - a GGUF file (read once; the tokenizer comes from its metadata), or
    /// - a Hugging Face model directory: `config.json` (a llama architecture),
    ///   the weights as `model.safetensors` or as shards listed in
    ///   `model.safetensors.index.json` (f32, f16 or bf16; quantized to Q8_0 at
    ///   load), and `tokenizer.json` (byte-level BPE), with
    ///   `tokenizer_config.json` read for special tokens when present.
    ///
    /// The chat template is ChatML in both cases ([`Tokenizer::apply_chat_template`]).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_shard(path, &Shard::Whole)
    }

    /// [`Engine::load`] for a pipeline hop: only `shard`'s blocks (and the
    /// embedding or head when it is the first or last hop); the tokenizer is
    /// always loaded (it is small, and every hop checks token ids and stops).
    pub fn load_shard(path: &Path, shard: &Shard) -> Result<Self> {
        if loader::hf::is_model_dir(path) {
            // Name a missing file before spending seconds on the weights.
            loader::hf::check_model_dir(path, true)?;
            let model = Model::load_shard(path, shard)?;
            let tokenizer = Tokenizer::from_hf_dir(path)?;
            return Ok(Self { model, tokenizer });
        }
        let file = loader::gguf::GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf_file(&file)?;
        let model = Model::from_gguf_file(file, shard)?;
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

    /// The tokens that end a turn of this model (ChatML's `<|im_end|>`,
    /// `<|endoftext|>`, and the tokenizer's end of sequence): what every
    /// node stops a completion at.
    pub fn end_of_turn_tokens(&self) -> Vec<u32> {
        let mut stop: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| self.tokenizer.token_id(t))
            .collect();
        stop.extend(self.tokenizer.eos());
        stop
    }
}
