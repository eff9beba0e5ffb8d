//! Loading model weights into the engine's layout, from either source the
//! engine reads:
//!
//! - `gguf`: a GGUF file (llama.cpp's format: metadata plus quantized tensors,
//!   kept in their block format);
//! - `hf`: a Hugging Face model directory (`config.json` plus safetensors,
//!   quantized to Q8_0 at load), read through `safetensors` (the file format).
//!
//! Both produce the same [`ModelWeights`] with a checked [`LlamaConfig`]. The
//! loaders validate every shape the forward pass later relies on, so the model
//! code can index slices without re-checking: weights that load cannot make the
//! forward pass panic.

pub(crate) mod gguf;
pub(crate) mod hf;
mod layout;
mod safetensors;
mod shard;

pub use layout::ModelLayout;
pub use safetensors::MAX_SAFETENSORS_HEADER_BYTES;
pub(crate) use shard::Parts;
pub use shard::Shard;

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::linear::Linear;

/// Hyper-parameters of a llama-family model, read from GGUF metadata or `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMS-norm epsilon.
    pub rms_eps: f32,
    /// Maximum positions (context window).
    pub context_length: usize,
}

impl LlamaConfig {
    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}

/// The width of one attention head, after checking that the head counts
/// divide the residual width and each other and that heads split into RoPE
/// pairs: the shapes every loader must agree on before the forward pass
/// slices by them.
pub(crate) fn head_dim(hidden_size: usize, n_heads: usize, n_kv_heads: usize) -> Result<usize> {
    if !hidden_size.is_multiple_of(n_heads) {
        return Err(EngineError::InvalidModel(format!(
            "embedding length {hidden_size} is not a multiple of the head count {n_heads}"
        )));
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(EngineError::InvalidModel(format!(
            "head count {n_heads} is not a multiple of the kv head count {n_kv_heads}"
        )));
    }
    let head_dim = hidden_size / n_heads;
    if !head_dim.is_multiple_of(2) {
        return Err(EngineError::InvalidModel(format!(
            "odd head dimension {head_dim}"
        )));
    }
    Ok(head_dim)
}

/// Weights of one transformer block.
#[derive(Debug, Clone)]
pub(crate) struct BlockWeights {
    pub(crate) attn_norm: Vec<f32>,
    /// Fused `[wq; wk; wv]`: hidden → q_dim + 2·kv_dim.
    pub(crate) wqkv: Linear,
    /// Attention output projection: q_dim → hidden.
    pub(crate) wo: Linear,
    pub(crate) ffn_norm: Vec<f32>,
    /// Fused `[w_gate; w_up]`: hidden → 2·intermediate.
    pub(crate) w_gate_up: Linear,
    /// MLP down projection: intermediate → hidden.
    pub(crate) w_down: Linear,
}

/// The weights of a llama-family model, or of the [`Shard`] of it asked for.
#[derive(Debug, Clone)]
pub(crate) struct ModelWeights {
    pub(crate) config: LlamaConfig,
    /// The embedding, when the shard is a pipeline's first hop.
    pub(crate) tok_embd: Option<Arc<QTensor>>,
    /// Blocks `layers`, in order.
    pub(crate) blocks: Vec<BlockWeights>,
    /// Which blocks `blocks` are.
    pub(crate) layers: std::ops::Range<usize>,
    /// The final norm and the head, when the shard is the last hop.
    pub(crate) head: Option<Head>,
}

/// The final RMS norm and the output projection (hidden → vocab).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) norm: Vec<f32>,
    pub(crate) output: Linear,
}

/// Largest JSON file read from a model directory (tokenizer.json files of
/// large vocabularies are tens of MB); a bound so a hostile file cannot exhaust memory.
const MAX_JSON_BYTES: u64 = 256 << 20;

/// Reads and parses `dir/name`; a missing optional file is `None`.
pub(crate) fn read_json(dir: &Path, name: &str, required: bool) -> Result<Option<Json>> {
    let path = dir.join(name);
    if !path.is_file() {
        return if required {
            Err(EngineError::MissingModelFile {
                dir: dir.to_path_buf(),
                file: name.to_string(),
            })
        } else {
            Ok(None)
        };
    }
    let io = |source| EngineError::Io {
        path: path.clone(),
        source,
    };
    let len = std::fs::metadata(&path).map_err(io)?.len();
    if len > MAX_JSON_BYTES {
        return Err(EngineError::InvalidModel(format!(
            "{} is {len} bytes, more than the {MAX_JSON_BYTES} allowed",
            path.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", path.display())))
}
