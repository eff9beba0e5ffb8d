//! Writing Hugging Face model directories for the loader's tests: the
//! default GGUF written out as a checkpoint of the same model would look
//! (dequantized bf16 weights, q/k rows put back in Hugging Face's
//! half-rotation RoPE layout, config.json from the GGUF's hyper-parameters,
//! tokenizer.json from its vocabulary and merges), and tiny synthetic models.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::Device;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value as Json};
use strata_engine::{default_model_path, Engine};

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("strata-st-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One tensor to write: name, shape and its values.
pub(crate) type Named = (String, Vec<usize>, Vec<f32>);

pub(crate) fn bytes_of(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("test writes no {other:?}"),
    }
}

/// Writes `tensors` as one safetensors file with the reference implementation.
pub(crate) fn write_safetensors(path: &Path, tensors: &[Named], dtype: Dtype) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| bytes_of(&t.2, dtype)).collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), b)| {
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), b).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Writes `tensors` as `shards` files plus `model.safetensors.index.json`.
pub(crate) fn write_sharded(dir: &Path, tensors: &[Named], dtype: Dtype, shards: usize) {
    let per = tensors.len().div_ceil(shards);
    let mut map = serde_json::Map::new();
    for (i, chunk) in tensors.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        write_safetensors(&dir.join(&file), chunk, dtype);
        for t in chunk {
            map.insert(t.0.clone(), Json::String(file.clone()));
        }
    }
    write_json(
        &dir.join("model.safetensors.index.json"),
        &json!({"metadata": {}, "weight_map": map}),
    );
}

pub(crate) fn write_json(path: &Path, v: &Json) {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------
// The default GGUF, written out as a Hugging Face directory.
// ---------------------------------------------------------------------------

struct Gguf {
    content: gguf_file::Content,
    file: File,
}

impl Gguf {
    fn open() -> Self {
        let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
        let mut file = File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        Self { content, file }
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A tensor dequantized to f32, with candle's `[rows, cols]` shape.
    fn tensor(&mut self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let t = self
            .content
            .tensor(&mut self.file, name, &Device::Cpu)
            .unwrap();
        let shape = t.shape().dims().to_vec();
        let values = t
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (shape, values)
    }

    fn meta(&self, key: &str) -> &gguf_file::Value {
        self.content
            .metadata
            .get(key)
            .unwrap_or_else(|| panic!("{key}"))
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.meta(key) {
            gguf_file::Value::Array(vs) => {
                vs.iter().map(|v| v.to_string().unwrap().clone()).collect()
            }
            _ => panic!("{key} is not an array"),
        }
    }
}

/// Puts the rows of a GGUF q/k matrix back in Hugging Face's half-rotation
/// order: per head, interleaved row `2i + j` came from row `j·head_dim/2 + i`.
/// Written independently of the loader's permutation on purpose.
fn to_half_rotation(w: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let head_dim = w.len() / cols / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_heads {
        for r in 0..head_dim {
            let (i, j) = (r / 2, r % 2);
            let dst = h * head_dim + j * half + i;
            let src = h * head_dim + r;
            out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
        }
    }
    out
}

#[derive(Clone, Copy)]
pub(crate) struct HfOptions {
    /// Undo llama.cpp's q/k permutation (what a real checkpoint looks like).
    pub(crate) half_rotation_qk: bool,
    /// Two shards plus an index instead of one model.safetensors.
    pub(crate) sharded: bool,
    /// tokenizer.json merges as `["a", "b"]` pairs (newer files) or `"a b"`.
    pub(crate) merges_as_pairs: bool,
}

/// Writes the default model as a Hugging Face directory (bf16 weights).
pub(crate) fn write_hf_dir(dir: &Path, engine: &Engine, opts: HfOptions) {
    let cfg = engine.model.config().clone();
    let mut g = Gguf::open();
    let mut tensors: Vec<Named> = Vec::new();
    let (shape, v) = g.tensor("token_embd.weight");
    tensors.push(("model.embed_tokens.weight".into(), shape, v));
    for i in 0..cfg.n_layers {
        for (gguf, hf, rope_heads) in [
            ("attn_norm", "input_layernorm", None),
            ("attn_q", "self_attn.q_proj", Some(cfg.n_heads)),
            ("attn_k", "self_attn.k_proj", Some(cfg.n_kv_heads)),
            ("attn_v", "self_attn.v_proj", None),
            ("attn_output", "self_attn.o_proj", None),
            ("ffn_norm", "post_attention_layernorm", None),
            ("ffn_gate", "mlp.gate_proj", None),
            ("ffn_up", "mlp.up_proj", None),
            ("ffn_down", "mlp.down_proj", None),
        ] {
            let (shape, mut v) = g.tensor(&format!("blk.{i}.{gguf}.weight"));
            if let (Some(heads), true) = (rope_heads, opts.half_rotation_qk) {
                v = to_half_rotation(&v, heads, shape[1]);
            }
            tensors.push((format!("model.layers.{i}.{hf}.weight"), shape, v));
        }
    }
    let (shape, v) = g.tensor("output_norm.weight");
    tensors.push(("model.norm.weight".into(), shape, v));
    let tied = !g.has("output.weight");
    if !tied {
        let (shape, v) = g.tensor("output.weight");
        tensors.push(("lm_head.weight".into(), shape, v));
    }
    if opts.sharded {
        write_sharded(dir, &tensors, Dtype::BF16, 2);
    } else {
        write_safetensors(&dir.join("model.safetensors"), &tensors, Dtype::BF16);
    }
    drop(tensors);
    write_json(
        &dir.join("config.json"),
        &json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.n_kv_heads,
            "rms_norm_eps": cfg.rms_eps,
            "rope_theta": cfg.rope_theta,
            "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.context_length,
            "tie_word_embeddings": tied,
            "hidden_act": "silu",
            "torch_dtype": "bfloat16",
            "bos_token_id": engine.tokenizer.bos(),
            "eos_token_id": engine.tokenizer.eos(),
        }),
    );
    // tokenizer.json from the GGUF vocabulary, as Hugging Face's byte-level BPE
    // writes it: every token in model.vocab, control/user-defined ones (GGUF
    // types 3 and 4) also in added_tokens.
    let tokens = g.strings("tokenizer.ggml.tokens");
    let types: Vec<i64> = match g.meta("tokenizer.ggml.token_type") {
        gguf_file::Value::Array(vs) => vs.iter().map(|v| v.to_i32().unwrap() as i64).collect(),
        _ => panic!("token_type"),
    };
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == 3 || **ty == 4)
        .map(|(i, (t, ty))| json!({"id": i, "content": t, "special": *ty == 3}))
        .collect();
    let merges: Vec<Json> = g
        .strings("tokenizer.ggml.merges")
        .into_iter()
        .map(|m| match opts.merges_as_pairs {
            true => {
                let (a, b) = m.split_once(' ').unwrap();
                json!([a, b])
            }
            false => json!(m),
        })
        .collect();
    let pre = g.meta("tokenizer.ggml.pre").to_string().unwrap().clone();
    assert_eq!(
        pre, "smollm",
        "the writer below spells SmolLM's pre-tokenizer"
    );
    write_json(
        &dir.join("tokenizer.json"),
        &json!({
            "version": "1.0",
            "added_tokens": added,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges},
        }),
    );
    let name = |id: Option<u32>| tokens[id.unwrap() as usize].clone();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "bos_token": name(engine.tokenizer.bos()),
            "eos_token": name(engine.tokenizer.eos()),
            "chat_template": g.meta("tokenizer.chat_template").to_string().unwrap(),
        }),
    );
}

// ---------------------------------------------------------------------------
// Tiny synthetic models: dtypes, sharding, tied heads, and every refusal.
// ---------------------------------------------------------------------------

pub(crate) const TINY_LAYERS: usize = 2;

pub(crate) fn tiny_config() -> Json {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": true
    })
}

/// Deterministic pseudo-random values in [-0.1, 0.1).
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

pub(crate) fn tiny_tensors() -> Vec<Named> {
    let (h, inter, v, kv) = (64, 96, 300, 32);
    let mut out: Vec<Named> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        let vals = if shape.len() == 1 {
            vec![1.0; n]
        } else {
            values(n, out.len() as u64 + 1)
        };
        out.push((name, shape, vals));
    };
    add("model.embed_tokens.weight".into(), vec![v, h]);
    for i in 0..TINY_LAYERS {
        let p = |s: &str| format!("model.layers.{i}.{s}.weight");
        add(p("input_layernorm"), vec![h]);
        add(p("self_attn.q_proj"), vec![h, h]);
        add(p("self_attn.k_proj"), vec![kv, h]);
        add(p("self_attn.v_proj"), vec![kv, h]);
        add(p("self_attn.o_proj"), vec![h, h]);
        add(p("post_attention_layernorm"), vec![h]);
        add(p("mlp.gate_proj"), vec![inter, h]);
        add(p("mlp.up_proj"), vec![inter, h]);
        add(p("mlp.down_proj"), vec![h, inter]);
    }
    add("model.norm.weight".into(), vec![h]);
    out
}

/// A tiny model directory (no tokenizer: these tests load with `Model::load`).
pub(crate) fn tiny_dir(tag: &str, config: &Json, tensors: &[Named], dtype: Dtype) -> TempDir {
    let dir = TempDir::new(tag);
    write_json(&dir.0.join("config.json"), config);
    write_safetensors(&dir.0.join("model.safetensors"), tensors, dtype);
    dir
}
