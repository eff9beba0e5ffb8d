//! Loading llama-family models from a Hugging Face model directory: the
//! hyper-parameters from `config.json`, the weights from safetensors (one
//! `model.safetensors`, or the shards listed in `model.safetensors.index.json`).
//! The tokenizer comes from `tokenizer.json` ([`crate::Tokenizer::from_hf_dir`]).
//!
//! Two things differ from a GGUF file and are converted here, once, so that the
//! forward pass in `model.rs` serves both sources unchanged:
//!
//! - **Rows of `q_proj` and `k_proj`.** Hugging Face llama rotates each head's
//!   dimension `i` together with `i + head_dim/2` ("half" or neox RoPE).
//!   llama.cpp's converter permutes these rows so that each rotated pair is
//!   adjacent (`2i`, `2i+1`), the interleaved RoPE the engine applies. The loader
//!   applies the same permutation (`interleave_rope_rows`). Both forms rotate
//!   the same pairs by the same angles, and attention scores are dot products of
//!   q and k permuted alike, so the model computes the same function.
//! - **Number format.** The weights are f32, f16 or bf16; the engine's matmul
//!   kernels take block-quantized matrices. Every matrix (and the embedding) is
//!   quantized to Q8_0 at load: blocks of 32 weights with one f16 scale, a
//!   rounding error of at most 1/254 of the block's largest weight. That keeps
//!   the fast native kernel and memory at ~1.06 bytes per weight, at the cost
//!   of outputs close to, not bit-equal with, an f32 evaluation. Norm gains stay
//!   f32. A matrix whose input width is not a multiple of 32 stays f32 (candle's
//!   slower path).
//!
//! The safetensors header is untrusted input: its length is bounded by
//! [`MAX_SAFETENSORS_HEADER_BYTES`], and every tensor's dtype, shape and byte
//! range is checked against the file before anything is read, so a corrupt or
//! truncated file is an error, never a panic or a huge allocation.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::tokenizer::read_json;
use crate::weights::{BlockWeights, Linear, LlamaConfig, ModelWeights};

/// Largest safetensors header accepted. Real headers take about 100 bytes per
/// tensor (a few hundred KB for the largest checkpoints); the bound only
/// stops a hostile length prefix from asking for a huge allocation.
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 16 << 20;

/// Weights file of an unsharded checkpoint.
const SINGLE_FILE: &str = "model.safetensors";
/// Index of a sharded checkpoint (`weight_map`: tensor name → shard file).
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Whether `path` names a Hugging Face model directory rather than a GGUF file.
pub(crate) fn is_model_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Checks, before any heavy work, that the directory holds every file a model
/// needs, naming the first one missing.
pub(crate) fn check_model_dir(dir: &Path, need_tokenizer: bool) -> Result<()> {
    let missing = |file: &str| EngineError::MissingModelFile {
        dir: dir.to_path_buf(),
        file: file.to_string(),
    };
    if !dir.join("config.json").is_file() {
        return Err(missing("config.json"));
    }
    if !dir.join(SINGLE_FILE).is_file() && !dir.join(INDEX_FILE).is_file() {
        return Err(missing(SINGLE_FILE));
    }
    if need_tokenizer && !dir.join("tokenizer.json").is_file() {
        return Err(missing("tokenizer.json"));
    }
    Ok(())
}

/// Loads the weights of the llama-family model in `dir` into the engine's layout.
pub(crate) fn load_model_dir(dir: &Path) -> Result<ModelWeights> {
    check_model_dir(dir, false)?;
    let json = read_json(dir, "config.json", true)?.unwrap_or_default();
    let HfConfig { config: cfg, tied } = parse_config(&json)?;
    let mut st = SafetensorsFiles::open(dir)?;
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let embed = st.read_f32("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
    let tok_embd = Arc::new(quantize(embed, cfg.vocab_size, h)?);
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        let (q, k, v) = (
            p("self_attn.q_proj"),
            p("self_attn.k_proj"),
            p("self_attn.v_proj"),
        );
        let (gate, up) = (p("mlp.gate_proj"), p("mlp.up_proj"));
        blocks.push(BlockWeights {
            attn_norm: st.read_f32(&p("input_layernorm"), &[h])?,
            wqkv: st.linear(
                &[
                    (&q, cfg.q_dim(), Some(cfg.n_heads)),
                    (&k, cfg.kv_dim(), Some(cfg.n_kv_heads)),
                    (&v, cfg.kv_dim(), None),
                ],
                h,
            )?,
            wo: st.linear(&[(&p("self_attn.o_proj"), h, None)], cfg.q_dim())?,
            ffn_norm: st.read_f32(&p("post_attention_layernorm"), &[h])?,
            w_gate_up: st.linear(&[(&gate, inter, None), (&up, inter, None)], h)?,
            w_down: st.linear(&[(&p("mlp.down_proj"), h, None)], inter)?,
        });
    }
    let output_norm = st.read_f32("model.norm.weight", &[h])?;
    let output = if tied {
        Linear::from_tensors(vec![tok_embd.as_ref()], vec![cfg.vocab_size], h)?
    } else if st.contains("lm_head.weight") {
        st.linear(&[("lm_head.weight", cfg.vocab_size, None)], h)?
    } else {
        return Err(EngineError::InvalidModel(
            "missing tensor lm_head.weight (and config.json does not set tie_word_embeddings)"
                .into(),
        ));
    };
    Ok(ModelWeights {
        config: cfg,
        tok_embd,
        blocks,
        output_norm,
        output,
    })
}

/// The hyper-parameters of `config.json` in the engine's terms.
#[derive(Debug)]
struct HfConfig {
    config: LlamaConfig,
    /// `tie_word_embeddings`: the head reuses the embedding (no `lm_head.weight`).
    tied: bool,
}

/// Reads a llama `config.json`, refusing anything the forward pass does not
/// implement (other architectures, biases, RoPE scaling, partial rotary
/// dimensions, activations other than SiLU) rather than running it wrongly.
fn parse_config(j: &Json) -> Result<HfConfig> {
    let model_type = j.get("model_type").and_then(Json::as_str);
    let archs: Vec<&str> = j
        .get("architectures")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let named = model_type.or(archs.first().copied());
    let llama = model_type.is_none_or(|t| t == "llama")
        && (archs.is_empty() || archs.contains(&"LlamaForCausalLM"));
    match named {
        Some(_) if llama => {}
        Some(name) => return Err(EngineError::UnsupportedArchitecture(name.to_string())),
        None => {
            return Err(EngineError::UnsupportedArchitecture(
                "unknown (config.json names neither model_type nor architectures)".into(),
            ))
        }
    }
    let bad = |what: String| EngineError::InvalidModel(format!("config.json: {what}"));
    // The same generous bounds as for GGUF metadata: they only stop hostile
    // values from asking for absurd allocations.
    let int = |key: &str, max: usize| -> Result<usize> {
        match j.get(key).and_then(Json::as_u64) {
            Some(n) if n > 0 && n <= max as u64 => Ok(n as usize),
            Some(n) => Err(bad(format!("{key} = {n} is outside 1..={max}"))),
            None => Err(bad(format!("{key} is missing or not a positive integer"))),
        }
    };
    let float = |key: &str, default: f64| -> Result<f32> {
        match j.get(key) {
            None | Some(Json::Null) => Ok(default as f32),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(x as f32),
                _ => Err(bad(format!("{key} is not a positive number"))),
            },
        }
    };
    let hidden_size = int("hidden_size", 1 << 16)?;
    let n_heads = int("num_attention_heads", 1024)?;
    let n_kv_heads = match j.get("num_key_value_heads") {
        None | Some(Json::Null) => n_heads,
        Some(_) => int("num_key_value_heads", 1024)?,
    };
    let n_layers = int("num_hidden_layers", 1024)?;
    let intermediate_size = int("intermediate_size", 1 << 18)?;
    let vocab_size = int("vocab_size", 1 << 24)?;
    let context_length = match j.get("max_position_embeddings") {
        None | Some(Json::Null) => 4096,
        Some(_) => int("max_position_embeddings", 1 << 20)?,
    }
    // RoPE tables are sized by the context: the same cap as for GGUF.
    .min(1 << 16);
    let head_dim = crate::weights::head_dim(hidden_size, n_heads, n_kv_heads)?;
    if let Some(d) = j.get("head_dim").and_then(Json::as_u64) {
        if d != head_dim as u64 {
            return Err(bad(format!(
                "head_dim {d} differs from hidden_size / num_attention_heads = {head_dim} (not supported)"
            )));
        }
    }
    if let Some(act) = j.get("hidden_act").and_then(Json::as_str) {
        if act != "silu" {
            return Err(bad(format!(
                "hidden_act {act:?} is not supported (silu only)"
            )));
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if j.get(key).and_then(Json::as_bool) == Some(true) {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    match j.get("rope_scaling") {
        None | Some(Json::Null) => {}
        Some(s) => {
            return Err(bad(format!(
                "rope_scaling {s} is not supported (plain RoPE only)"
            )))
        }
    }
    let tied = match j.get("tie_word_embeddings") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(bad("tie_word_embeddings is not a boolean".into())),
    };
    Ok(HfConfig {
        config: LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            // Hugging Face's LlamaConfig defaults.
            rope_theta: float("rope_theta", 10_000.0)?,
            rms_eps: float("rms_norm_eps", 1e-6)?,
            context_length,
        },
        tied,
    })
}

/// Permutes the rows of a q or k projection (`[n_heads · head_dim, in_dim]`,
/// row-major) from Hugging Face's half-rotation layout to the interleaved one:
/// per head, view the rows as `(2, head_dim/2)` and transpose to `(head_dim/2, 2)`,
/// so output row `2i + j` is input row `j · head_dim/2 + i`. This is llama.cpp's
/// converter permutation (`reshape(n_head, 2, hd/2, in).swapaxes(1, 2)`).
pub(crate) fn interleave_rope_rows(w: &[f32], n_heads: usize, in_dim: usize) -> Vec<f32> {
    let rows = w.len() / in_dim.max(1);
    let head_dim = rows / n_heads.max(1);
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + j * half + i;
                out.extend_from_slice(&w[src * in_dim..(src + 1) * in_dim]);
            }
        }
    }
    out
}

/// Quantizes a `[rows, cols]` f32 matrix to the engine's matmul format (Q8_0),
/// or keeps it f32 when `cols` is not a whole number of Q8_0 blocks.
fn quantize(data: Vec<f32>, rows: usize, cols: usize) -> Result<QTensor> {
    let dtype = if cols.is_multiple_of(GgmlDType::Q8_0.block_size()) {
        GgmlDType::Q8_0
    } else {
        GgmlDType::F32
    };
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu)?;
    Ok(QTensor::quantize(&t, dtype)?)
}

/// Element types the loader reads; any other dtype is refused when its tensor
/// is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F16,
    BF16,
}

/// Size in bytes of one element of a safetensors dtype (`None`: sub-byte or unknown).
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// One tensor's place in one shard.
#[derive(Debug, Clone)]
struct TensorEntry {
    shard: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute file offset of the first byte.
    offset: u64,
    len: u64,
}

/// The tensors of a checkpoint's safetensors files, by name; data is read
/// tensor by tensor when asked for, so memory holds one tensor at a time.
struct SafetensorsFiles {
    shards: Vec<(PathBuf, File)>,
    tensors: HashMap<String, TensorEntry>,
}

impl SafetensorsFiles {
    /// Opens `model.safetensors`, or every shard that
    /// `model.safetensors.index.json` names, and checks their headers.
    fn open(dir: &Path) -> Result<Self> {
        let names: Vec<String> = if dir.join(SINGLE_FILE).is_file() {
            vec![SINGLE_FILE.to_string()]
        } else {
            let index = read_json(dir, INDEX_FILE, true)?.unwrap_or_default();
            let map = index
                .get("weight_map")
                .and_then(Json::as_object)
                .ok_or_else(|| {
                    EngineError::InvalidModel(format!("{INDEX_FILE} has no weight_map object"))
                })?;
            let mut files = BTreeSet::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    EngineError::InvalidModel(format!(
                        "{INDEX_FILE}: {tensor} maps to a non-string"
                    ))
                })?;
                // Shards are files next to the index, never paths elsewhere.
                if file.contains(['/', '\\']) || file.starts_with('.') || file.is_empty() {
                    return Err(EngineError::InvalidModel(format!(
                        "{INDEX_FILE}: shard name {file:?} is not a plain file name"
                    )));
                }
                files.insert(file.to_string());
            }
            files.into_iter().collect()
        };
        let mut shards = Vec::with_capacity(names.len());
        let mut tensors = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(EngineError::MissingModelFile {
                    dir: dir.to_path_buf(),
                    file: name.clone(),
                });
            }
            let mut file = File::open(&path).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            for (tensor, mut entry) in read_header(&path, &mut file)? {
                entry.shard = i;
                if tensors.insert(tensor.clone(), entry).is_some() {
                    return Err(EngineError::InvalidModel(format!(
                        "tensor {tensor} appears in more than one shard"
                    )));
                }
            }
            shards.push((path, file));
        }
        Ok(Self { shards, tensors })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Reads tensor `name`, which must have shape `dims`, as f32 values.
    fn read_f32(&mut self, name: &str, dims: &[usize]) -> Result<Vec<f32>> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| EngineError::InvalidModel(format!("missing tensor {name}")))?;
        if e.shape != dims {
            return Err(EngineError::InvalidModel(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                e.shape
            )));
        }
        let (path, file) = &mut self.shards[e.shard];
        let dtype = match e.dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => {
                return Err(EngineError::Safetensors {
                    path: path.clone(),
                    reason: format!(
                        "tensor {name} has dtype {other}; only F32, F16 and BF16 are supported"
                    ),
                })
            }
        };
        // The header check guarantees len = elements × size, and fits the file.
        let mut bytes = vec![0u8; e.len as usize];
        let io = |source| EngineError::Io {
            path: path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(e.offset)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(match dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// Reads `[out_i, in_dim]` matrices, applies the RoPE row permutation where a
    /// head count is given (q and k), quantizes and stacks them into one matmul.
    fn linear(&mut self, parts: &[(&str, usize, Option<usize>)], in_dim: usize) -> Result<Linear> {
        let mut tensors = Vec::with_capacity(parts.len());
        for &(name, out, rope_heads) in parts {
            let mut w = self.read_f32(name, &[out, in_dim])?;
            if let Some(n_heads) = rope_heads {
                w = interleave_rope_rows(&w, n_heads, in_dim);
            }
            tensors.push(quantize(w, out, in_dim)?);
        }
        Linear::from_tensors(
            tensors.iter().collect(),
            parts.iter().map(|p| p.1).collect(),
            in_dim,
        )
    }
}

/// Parses and checks a safetensors header: an 8-byte little-endian length, then
/// that many bytes of JSON mapping tensor names to `dtype`, `shape` and
/// `data_offsets` (relative to the end of the header). Returns each tensor with
/// its absolute byte range; `shard` is left 0 for the caller to set.
fn read_header(path: &Path, file: &mut File) -> Result<Vec<(String, TensorEntry)>> {
    let bad = |reason: String| EngineError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(bad(format!("truncated: {file_len} bytes, no header")));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_SAFETENSORS_HEADER_BYTES {
        return Err(bad(format!(
            "header of {header_len} bytes exceeds the limit of {MAX_SAFETENSORS_HEADER_BYTES}"
        )));
    }
    if header_len > file_len - 8 {
        return Err(bad(format!(
            "truncated: the header claims {header_len} bytes, the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, Json> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            info.get(key)
                .ok_or_else(|| bad(format!("tensor {name} has no {key}")))
        };
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad(format!("tensor {name}: dtype is not a string")))?
            .to_string();
        let shape = field("shape")?
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| bad(format!("tensor {name}: shape is not a list of sizes")))?;
        let offsets = field("data_offsets")?
            .as_array()
            .and_then(|a| match a.as_slice() {
                [b, e] => Some((b.as_u64()?, e.as_u64()?)),
                _ => None,
            });
        let Some((begin, end)) = offsets.filter(|(b, e)| b <= e) else {
            return Err(bad(format!(
                "tensor {name}: data_offsets is not [begin, end]"
            )));
        };
        if end > data_len {
            return Err(bad(format!(
                "truncated: tensor {name} ends at data byte {end}, the file holds {data_len}"
            )));
        }
        // A known dtype fixes the byte length; unknown ones are refused if read.
        if let Some(size) = dtype_size(&dtype) {
            let expected = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d as u64));
            if expected != Some(end - begin) {
                return Err(bad(format!(
                    "tensor {name}: {} bytes for shape {shape:?} of {dtype}",
                    end - begin
                )));
            }
        }
        out.push((
            name,
            TensorEntry {
                shard: 0,
                dtype,
                shape,
                offset: data_start + begin,
                len: end - begin,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_rope_rows_is_llama_cpp_permutation() {
        // Two heads of dimension 4, one input column: rows name themselves.
        let w: Vec<f32> = (0..8).map(|r| r as f32).collect();
        // Per head, HF rows (0 1 | 2 3) pair as (0,2) and (1,3); interleaved
        // order puts each pair side by side: 0 2 1 3.
        assert_eq!(
            interleave_rope_rows(&w, 2, 1),
            [0., 2., 1., 3., 4., 6., 5., 7.]
        );
        // Whole rows move together.
        let w: Vec<f32> = (0..8).flat_map(|r| [r as f32, -(r as f32)]).collect();
        let p = interleave_rope_rows(&w, 2, 2);
        assert_eq!(&p[2..4], &[2., -2.]);
    }

    #[test]
    fn config_refuses_what_the_forward_pass_does_not_implement() {
        let base = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": true
        });
        let c = parse_config(&base).unwrap();
        assert_eq!(
            (c.config.head_dim, c.config.n_kv_heads, c.tied),
            (16, 2, true)
        );
        let with = |key: &str, v: Json| {
            let mut j = base.clone();
            j[key] = v;
            parse_config(&j).unwrap_err().to_string()
        };
        assert!(with("model_type", "gpt2".into()).contains("gpt2"));
        assert!(
            with("rope_scaling", serde_json::json!({"type": "llama3"})).contains("rope_scaling")
        );
        assert!(with("attention_bias", true.into()).contains("attention_bias"));
        assert!(
            with("num_key_value_heads", 3.into()).contains("not a multiple of the kv head count 3")
        );
        assert!(with("hidden_size", (1u64 << 40).into()).contains("outside"));
        assert!(with("hidden_act", "gelu".into()).contains("silu"));
    }
}
