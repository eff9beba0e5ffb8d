//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the engine. Every variant is reachable from
/// external input (files, prompts, network messages) and carries enough context to
/// tell the user what to fix; the engine never panics on such input.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The default model file is not in the cache.
    #[error("model file {path} not found: run scripts/fetch-model to download the default model (SmolLM2-135M-Instruct Q4_1) into the cache")]
    ModelMissing {
        /// Where the model was expected.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model file's sha256 differs from the expected one.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        /// The file.
        path: PathBuf,
        /// The expected digest (hex).
        expected: String,
        /// The digest of the file (hex).
        actual: String,
    },
    /// A Hugging Face model directory lacks a file the engine needs.
    #[error("{dir} is not a complete model directory: {file} is missing (a Hugging Face model directory holds config.json, tokenizer.json and model.safetensors or a sharded model.safetensors.index.json)")]
    MissingModelFile {
        /// The directory.
        dir: PathBuf,
        /// The missing file's name.
        file: String,
    },
    /// A safetensors file is corrupt, truncated, holds an unsupported dtype or
    /// has a header over the size limit.
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The GGUF file is corrupt, truncated or not a GGUF file.
    #[error("invalid GGUF file: {0}")]
    Gguf(String),
    /// The model's architecture is not one the engine implements.
    #[error("unsupported model architecture {0:?} (the engine runs llama-family models)")]
    UnsupportedArchitecture(String),
    /// The model's metadata or tensors are inconsistent.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A prompt plus generation would exceed the model's context window.
    #[error("prompt too long: {tokens} tokens plus {max_new} new tokens exceed the context length {context}")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// Requested new tokens.
        max_new: usize,
        /// The model's (or configured) context length.
        context: usize,
    },
    /// An empty prompt cannot be run.
    #[error("empty prompt")]
    EmptyPrompt,
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A hidden-state message could not be decoded.
    #[error("malformed hidden-state message: {0}")]
    BadHiddenStates(String),
    /// A request was inconsistent with the engine's state (wrong layer range, shapes).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Layers outside the part of the model this process loaded (a pipeline
    /// shard holds a range of blocks only).
    #[error("layers {asked:?} are not loaded here (this shard holds layers {loaded:?})")]
    LayerNotLoaded {
        /// The layers asked for.
        asked: std::ops::Range<usize>,
        /// The layers held.
        loaded: std::ops::Range<usize>,
    },
    /// The embedding or the head was needed but this shard does not hold it
    /// (only a pipeline's first hop embeds, only its last hop has the head).
    #[error("the {0} is not loaded here (this shard is not the pipeline's {1} hop)")]
    PartNotLoaded(&'static str, &'static str),
    /// A commitment opening or proof is malformed or does not verify.
    #[error("commitment error: {0}")]
    Commitment(String),
    /// A LoRA adapter file is malformed: not safetensors, a wrong or missing
    /// `strata.*` metadata entry, a tensor with an unknown name, a dtype other
    /// than F32, an unpaired or mis-shaped `lora_a`/`lora_b`, a rank out of
    /// range or a non-finite value.
    #[error("invalid LoRA adapter: {0}")]
    Adapter(String),
    /// A LoRA adapter file is larger than [`crate::MAX_ADAPTER_BYTES`].
    #[error("LoRA adapter of {bytes} bytes is over the {max}-byte limit")]
    AdapterTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A LoRA adapter was trained on another base model than the one loaded.
    #[error("adapter for base model {adapter}, this model is {model}")]
    AdapterBaseModel {
        /// The adapter's `strata.base_model` (hex sha256).
        adapter: String,
        /// The loaded model's sha256 (hex).
        model: String,
    },
    /// A LoRA adapter's tensors do not fit the loaded model's shapes (a layer
    /// it does not have, or a projection of another width).
    #[error("adapter does not fit this model: {0}")]
    AdapterShape(String),
    /// The tokenizer metadata is missing or inconsistent.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// An error from candle's tensor code.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, EngineError>;
