//! How many bytes each part of a model takes, read from a GGUF file's tensor
//! table without loading any weights: what a node needs to say which layers it
//! can hold in the memory it offers, before it loads them.

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::error::{EngineError, Result};
use crate::linear::Linear;

use super::gguf::{config_from_gguf, GgufFile};
use super::LlamaConfig;

/// The sizes of a model's parts, in bytes of weights as the engine will hold
/// them (matrices repacked for the native kernels, the embedding and norms
/// as stored), computed from shapes and formats alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLayout {
    /// The model's hyper-parameters.
    pub config: LlamaConfig,
    /// The token embedding (a pipeline's first hop holds it).
    pub embedding_bytes: u64,
    /// The final norm and the head; with tied embeddings the head is the
    /// embedding matrix, which the last hop then holds a copy of.
    pub head_bytes: u64,
    /// Each block's weights, by layer.
    pub layer_bytes: Vec<u64>,
}

impl ModelLayout {
    /// Reads the layout of the GGUF file at `path` (its header and tensor
    /// table only). Model directories are not supported yet.
    pub fn read(path: &Path) -> Result<Self> {
        if super::hf::is_model_dir(path) {
            return Err(EngineError::InvalidRequest(
                "the layout of a model directory is not supported yet (use a GGUF file)".into(),
            ));
        }
        Self::from_content(&GgufFile::open(path)?.content)
    }

    fn from_content(ct: &gguf_file::Content) -> Result<Self> {
        let config = config_from_gguf(ct)?;
        let info = |name: &str| {
            ct.tensor_infos
                .get(name)
                .ok_or_else(|| EngineError::InvalidModel(format!("missing tensor {name}")))
        };
        // As stored in the file: the embedding and the norms are kept so.
        let stored = |name: &str| -> Result<u64> {
            let t = info(name)?;
            let dtype = t.ggml_dtype;
            Ok((t.shape.elem_count() / dtype.block_size().max(1) * dtype.type_size()) as u64)
        };
        // As `Linear` will hold the stacked tensors (repacked when native).
        let linear = |names: &[String]| -> Result<u64> {
            let infos = names.iter().map(|n| info(n)).collect::<Result<Vec<_>>>()?;
            let dtype = infos[0].ggml_dtype;
            if infos.iter().all(|t| t.ggml_dtype == dtype) {
                let (rows, cols) = infos.iter().fold((0, 0), |(r, _), t| match t.shape.dims() {
                    [o, i] => (r + o, *i),
                    _ => (r, 0),
                });
                Ok(Linear::bytes_for(dtype, rows, cols) as u64)
            } else {
                names.iter().map(|n| stored(n)).sum()
            }
        };
        let embedding_bytes = stored("token_embd.weight")?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let head_bytes = linear(&[output.to_string()])? + stored("output_norm.weight")?;
        let mut layer_bytes = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let total = stored(&p("attn_norm"))?
                + stored(&p("ffn_norm"))?
                + linear(&[p("attn_q"), p("attn_k"), p("attn_v")])?
                + linear(&[p("attn_output")])?
                + linear(&[p("ffn_gate"), p("ffn_up")])?
                + linear(&[p("ffn_down")])?;
            layer_bytes.push(total);
        }
        Ok(Self {
            config,
            embedding_bytes,
            head_bytes,
            layer_bytes,
        })
    }

    /// Bytes of the KV cache per position per layer (keys and values, f32).
    pub fn kv_bytes_per_position(&self) -> u64 {
        2 * self.config.kv_dim() as u64 * 4
    }

    /// Bytes of weights a hop holding blocks `layers` needs, with the
    /// embedding when it starts at block 0 and the head when it ends at the last.
    pub fn shard_bytes(&self, layers: std::ops::Range<usize>) -> u64 {
        let end = layers.end.min(self.layer_bytes.len());
        let start = layers.start.min(end);
        let blocks: u64 = self.layer_bytes[start..end].iter().sum();
        let embedding = if start == 0 { self.embedding_bytes } else { 0 };
        let head = if end == self.layer_bytes.len() && end > start {
            self.head_bytes
        } else {
            0
        };
        blocks + embedding + head
    }
}
