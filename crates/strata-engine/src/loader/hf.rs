//! Loading llama-family models from a Hugging Face model directory: the
//! hyper-parameters from `config.json`, the weights from safetensors (one
//! `model.safetensors`, or the shards listed in `model.safetensors.index.json`).
//! The tokenizer comes from `tokenizer.json` ([`crate::Tokenizer::from_hf_dir`]).
//!
//! Two things differ from a GGUF file and are converted here, once, so that the
//! forward pass serves both sources unchanged:
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
//! Reading the safetensors files themselves (untrusted headers, shards) is
//! `super::safetensors`'s job.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::linear::Linear;

use super::safetensors::{SafetensorsFiles, INDEX_FILE, SINGLE_FILE};
use super::{head_dim, read_json, BlockWeights, Head, LlamaConfig, ModelWeights, Parts, Shard};

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

/// Loads `shard` of the llama-family model in `dir` into the engine's
/// layout; tensors outside it are never read.
pub(crate) fn load_model_dir(dir: &Path, shard: &Shard) -> Result<ModelWeights> {
    check_model_dir(dir, false)?;
    let json = read_json(dir, "config.json", true)?.unwrap_or_default();
    let HfConfig { config: cfg, tied } = parse_config(&json)?;
    let Parts {
        layers,
        embedding,
        head,
    } = shard.parts(cfg.n_layers)?;
    let mut st = SafetensorsFiles::open(dir)?;
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    // A tied head is the embedding matrix: the last hop reads it too.
    let tok_embd = if embedding || (head && tied) {
        let embed = st.read_f32("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        Some(Arc::new(quantize(embed, cfg.vocab_size, h)?))
    } else {
        None
    };
    let mut blocks = Vec::with_capacity(layers.len());
    for i in layers.clone() {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        let (q, k, v) = (
            p("self_attn.q_proj"),
            p("self_attn.k_proj"),
            p("self_attn.v_proj"),
        );
        let (gate, up) = (p("mlp.gate_proj"), p("mlp.up_proj"));
        blocks.push(BlockWeights {
            attn_norm: st.read_f32(&p("input_layernorm"), &[h])?,
            wqkv: linear(
                &mut st,
                &[
                    (&q, cfg.q_dim(), Some(cfg.n_heads)),
                    (&k, cfg.kv_dim(), Some(cfg.n_kv_heads)),
                    (&v, cfg.kv_dim(), None),
                ],
                h,
            )?,
            wo: linear(&mut st, &[(&p("self_attn.o_proj"), h, None)], cfg.q_dim())?,
            ffn_norm: st.read_f32(&p("post_attention_layernorm"), &[h])?,
            w_gate_up: linear(&mut st, &[(&gate, inter, None), (&up, inter, None)], h)?,
            w_down: linear(&mut st, &[(&p("mlp.down_proj"), h, None)], inter)?,
        });
    }
    let head = if head {
        let norm = st.read_f32("model.norm.weight", &[h])?;
        let output = match &tok_embd {
            Some(embd) if tied => {
                Linear::from_tensors(vec![embd.as_ref()], vec![cfg.vocab_size], h)?
            }
            _ if st.contains("lm_head.weight") => {
                linear(&mut st, &[("lm_head.weight", cfg.vocab_size, None)], h)?
            }
            _ => return Err(EngineError::InvalidModel(
                "missing tensor lm_head.weight (and config.json does not set tie_word_embeddings)"
                    .into(),
            )),
        };
        Some(Head { norm, output })
    } else {
        None
    };
    Ok(ModelWeights {
        config: cfg,
        tok_embd: tok_embd.filter(|_| embedding),
        blocks,
        layers,
        head,
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
    let head_dim = head_dim(hidden_size, n_heads, n_kv_heads)?;
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

/// Reads `[out_i, in_dim]` matrices, applies the RoPE row permutation where a
/// head count is given (q and k), quantizes and stacks them into one matmul.
fn linear(
    st: &mut SafetensorsFiles,
    parts: &[(&str, usize, Option<usize>)],
    in_dim: usize,
) -> Result<Linear> {
    let mut tensors = Vec::with_capacity(parts.len());
    for &(name, out, rope_heads) in parts {
        let mut w = st.read_f32(name, &[out, in_dim])?;
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
