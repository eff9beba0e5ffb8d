//! GGUF files: the header, metadata and tensor table parsed by candle, the
//! llama hyper-parameters read from the metadata, and the tensors converted
//! into [`ModelWeights`] one at a time.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;

use crate::error::{EngineError, Result};
use crate::linear::Linear;

use super::{head_dim, BlockWeights, Head, LlamaConfig, ModelWeights, Parts, Shard};

fn meta_u64(ct: &gguf_file::Content, key: &str) -> Result<u64> {
    use gguf_file::Value as V;
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| EngineError::InvalidModel(format!("missing metadata key {key}")))?;
    let n = match v {
        V::U8(x) => Some(u64::from(*x)),
        V::U16(x) => Some(u64::from(*x)),
        V::U32(x) => Some(u64::from(*x)),
        V::U64(x) => Some(*x),
        V::I8(x) => u64::try_from(*x).ok(),
        V::I16(x) => u64::try_from(*x).ok(),
        V::I32(x) => u64::try_from(*x).ok(),
        V::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    };
    n.ok_or_else(|| {
        EngineError::InvalidModel(format!("metadata {key} is not a non-negative integer"))
    })
}

fn meta_usize(ct: &gguf_file::Content, key: &str, max: usize) -> Result<usize> {
    let n = meta_u64(ct, key)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 && n <= max => Ok(n),
        _ => Err(EngineError::InvalidModel(format!(
            "metadata {key} = {n} is outside 1..={max}"
        ))),
    }
}

fn meta_f32(ct: &gguf_file::Content, key: &str) -> Result<Option<f32>> {
    use gguf_file::Value as V;
    match ct.metadata.get(key) {
        None => Ok(None),
        Some(V::F32(x)) if x.is_finite() => Ok(Some(*x)),
        Some(V::F64(x)) if x.is_finite() => Ok(Some(*x as f32)),
        Some(_) => Err(EngineError::InvalidModel(format!(
            "metadata {key} is not a finite float"
        ))),
    }
}

/// The architecture named in GGUF metadata.
fn architecture(ct: &gguf_file::Content) -> Result<String> {
    match ct.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(s)) => Ok(s.clone()),
        _ => Err(EngineError::InvalidModel(
            "missing metadata general.architecture".into(),
        )),
    }
}

/// Reads the llama hyper-parameters and checks that they are consistent.
pub(crate) fn config_from_gguf(ct: &gguf_file::Content) -> Result<LlamaConfig> {
    let arch = architecture(ct)?;
    if arch != "llama" {
        return Err(EngineError::UnsupportedArchitecture(arch));
    }
    // Generous upper bounds: they only exist so that hostile metadata cannot ask
    // for absurd allocations (RoPE tables are sized by the context length).
    let hidden_size = meta_usize(ct, "llama.embedding_length", 1 << 16)?;
    let n_heads = meta_usize(ct, "llama.attention.head_count", 1024)?;
    let n_kv_heads = match ct.metadata.get("llama.attention.head_count_kv") {
        Some(_) => meta_usize(ct, "llama.attention.head_count_kv", 1024)?,
        None => n_heads,
    };
    let n_layers = meta_usize(ct, "llama.block_count", 1024)?;
    let intermediate_size = meta_usize(ct, "llama.feed_forward_length", 1 << 18)?;
    let context_length = meta_usize(ct, "llama.context_length", 1 << 20)?.min(1 << 16);
    let head_dim = head_dim(hidden_size, n_heads, n_kv_heads)?;
    if let Ok(rope_dim) = meta_u64(ct, "llama.rope.dimension_count") {
        if rope_dim != head_dim as u64 {
            return Err(EngineError::InvalidModel(format!(
                "partial rotary embeddings (rope dim {rope_dim}, head dim {head_dim}) are not supported"
            )));
        }
    }
    let rope_theta = meta_f32(ct, "llama.rope.freq_base")?.unwrap_or(10_000.0);
    let rms_eps = meta_f32(ct, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
    let vocab_size = match ct.tensor_infos.get("token_embd.weight") {
        Some(info) => match info.shape.dims() {
            [v, h] if *h == hidden_size && *v > 0 => *v,
            d => {
                return Err(EngineError::InvalidModel(format!(
                    "token_embd.weight has shape {d:?}, expected [vocab, {hidden_size}]"
                )))
            }
        },
        None => {
            return Err(EngineError::InvalidModel(
                "missing tensor token_embd.weight".into(),
            ))
        }
    };
    Ok(LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        rope_theta,
        rms_eps,
        context_length,
    })
}

/// Anything a GGUF file can be read from.
trait ReadSeek: std::io::Read + std::io::Seek + Send {}
impl<T: std::io::Read + std::io::Seek + Send> ReadSeek for T {}

/// A parsed GGUF file: header, metadata and tensor table in memory, tensor
/// data read one tensor at a time when the model is built, so loading never
/// holds the whole file next to the converted weights.
pub(crate) struct GgufFile {
    pub(crate) content: gguf_file::Content,
    reader: Box<dyn ReadSeek>,
}

impl GgufFile {
    /// Opens and parses a GGUF file (header, metadata and tensor table).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        Self::from_reader(Box::new(std::io::BufReader::new(file)))
    }

    /// Parses GGUF bytes already in memory.
    pub(crate) fn from_bytes(data: Vec<u8>) -> Result<Self> {
        Self::from_reader(Box::new(Cursor::new(data)))
    }

    fn from_reader(mut reader: Box<dyn ReadSeek>) -> Result<Self> {
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| EngineError::Gguf(e.to_string()))?;
        Ok(Self { content, reader })
    }

    fn tensor(&mut self, name: &str, dims: &[usize]) -> Result<QTensor> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::InvalidModel(format!("missing tensor {name}")))?;
        if info.shape.dims() != dims {
            return Err(EngineError::InvalidModel(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                info.shape.dims()
            )));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| EngineError::Gguf(format!("tensor {name}: {e}")))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.tensor(name, &[len])?;
        let v = t.dequantize(&Device::Cpu)?.to_vec1::<f32>()?;
        Ok(v)
    }

    fn linear(&mut self, names: &[(&str, usize)], in_dim: usize) -> Result<Linear> {
        let mut tensors = Vec::with_capacity(names.len());
        for (name, out) in names {
            tensors.push(self.tensor(name, &[*out, in_dim])?);
        }
        Linear::from_tensors(
            tensors.iter().collect(),
            names.iter().map(|(_, o)| *o).collect(),
            in_dim,
        )
    }
}

/// Loads `shard` of a llama-family model from a parsed GGUF file; tensors
/// outside it are never read.
pub(crate) fn load_gguf(mut file: GgufFile, shard: &Shard) -> Result<ModelWeights> {
    let cfg = config_from_gguf(&file.content)?;
    let Parts {
        layers,
        embedding,
        head,
    } = shard.parts(cfg.n_layers)?;
    let h = cfg.hidden_size;
    let tied = !file.content.tensor_infos.contains_key("output.weight");
    // A tied head is the embedding matrix: the last hop reads it too.
    let tok_embd = if embedding || (head && tied) {
        let t = Arc::new(file.tensor("token_embd.weight", &[cfg.vocab_size, h])?);
        if h % t.dtype().block_size() != 0 {
            return Err(EngineError::InvalidModel(format!(
                "hidden size {h} is not a multiple of the embedding's block size"
            )));
        }
        Some(t)
    } else {
        None
    };
    let mut blocks = Vec::with_capacity(layers.len());
    for i in layers.clone() {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let (q, k, v) = (p("attn_q"), p("attn_k"), p("attn_v"));
        let (gate, up) = (p("ffn_gate"), p("ffn_up"));
        blocks.push(BlockWeights {
            attn_norm: file.vector(&p("attn_norm"), h)?,
            wqkv: file.linear(
                &[(&q, cfg.q_dim()), (&k, cfg.kv_dim()), (&v, cfg.kv_dim())],
                h,
            )?,
            wo: file.linear(&[(&p("attn_output"), h)], cfg.q_dim())?,
            ffn_norm: file.vector(&p("ffn_norm"), h)?,
            w_gate_up: file.linear(
                &[(&gate, cfg.intermediate_size), (&up, cfg.intermediate_size)],
                h,
            )?,
            w_down: file.linear(&[(&p("ffn_down"), h)], cfg.intermediate_size)?,
        });
    }
    let head = match (head, &tok_embd) {
        (false, _) => None,
        (true, Some(embd)) if tied => Some(Head {
            norm: file.vector("output_norm.weight", h)?,
            output: Linear::from_tensors(vec![embd.as_ref()], vec![cfg.vocab_size], h)?,
        }),
        (true, _) => Some(Head {
            norm: file.vector("output_norm.weight", h)?,
            output: file.linear(&[("output.weight", cfg.vocab_size)], h)?,
        }),
    };
    Ok(ModelWeights {
        config: cfg,
        tok_embd: tok_embd.filter(|_| embedding),
        blocks,
        layers,
        head,
    })
}
