//! Loading a model from a Hugging Face directory (safetensors + config.json +
//! tokenizer.json).
//!
//! The real-model test writes the default GGUF out as such a directory, the way
//! a Hugging Face checkpoint of the same model would look: dequantized weights
//! in bf16, q/k rows put back in Hugging Face's half-rotation RoPE layout (the
//! inverse of llama.cpp's converter permutation, written here independently of
//! the loader), config.json from the GGUF's hyper-parameters and tokenizer.json
//! from its vocabulary and merges. Loading that directory must give the same
//! tokenizer and, up to requantization, the same model; a directory written
//! without the inverse permutation must not. The other tests build tiny
//! synthetic models to check dtypes, sharding and every refusal.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;
use strata_engine::{
    generate, trace_layers, ChatMessage, Engine, EngineError, GenerateRequest, Model, Segment,
    Shard, MAX_SAFETENSORS_HEADER_BYTES,
};

use crate::common;
use crate::hf_dir::*;

/// Logits at every position of `tokens` (one prefill pass).
fn all_logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let states = trace_layers(model, tokens).unwrap();
    let last = states.last().unwrap();
    let rows: Vec<usize> = (0..last.rows()).collect();
    model.logits(last, &rows).unwrap()
}

/// Final-position logits of `prompt`.
fn last_logits(model: &Model, prompt: &[u32]) -> Vec<f32> {
    all_logits(model, prompt).pop().unwrap()
}

/// How far apart two logit vectors are as distributions: the relative L2
/// distance after removing each vector's mean (adding a constant to every logit
/// changes no probability, and requantization does shift logits almost evenly).
fn logit_distance(a: &[f32], b: &[f32]) -> f32 {
    let centered = |v: &[f32]| {
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        v.iter().map(|x| x - mean).collect::<Vec<f32>>()
    };
    relative_l2(&centered(a), &centered(b))
}

/// `‖a − b‖ / ‖a‖`.
fn relative_l2(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = a.iter().map(|x| x * x).sum();
    (num / den).sqrt()
}

/// The top token and its lead over the runner-up, in logits.
fn top_and_margin(v: &[f32]) -> (u32, f32) {
    let (mut best, mut second) = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            second = v[best];
            best = i;
        } else if i != best && x > second {
            second = x;
        }
    }
    (best as u32, v[best] - second)
}

fn greedy(e: &Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    generate(&e.model, GenerateRequest::greedy(prompt.to_vec(), n))
        .unwrap()
        .tokens
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// New tokens generated per prompt.
const NEW_TOKENS: usize = 32;
/// A greedy choice is "decisive" when the GGUF model's top logit leads the
/// runner-up by at least this much. Requantizing moves logits by about 0.1–0.4
/// (mostly a shift shared by all tokens, which cancels in a lead), so a
/// decisive choice must survive it; a near-tie may flip either way, as it does
/// between llama.cpp and this engine on the same file.
const DECISIVE_MARGIN: f32 = 1.0;
/// Largest [`logit_distance`] between the two models at any position of prompt
/// plus continuation. The GGUF engine multiplies Q4_1 weights by activations
/// rounded to 8 bits; the directory's model multiplies the same weights, rounded
/// to bf16 then Q8_0. Measured: at most 0.085 over 128 positions (the rounding
/// of activations dominates: the raw relative distance is ~0.07 even when the
/// loader keeps the GGUF's exact f32 weight values). q/k in the wrong layout:
/// at least 0.45.
const MAX_LOGIT_DISTANCE: f32 = 0.15;

#[test]
fn hf_directory_of_the_default_model_matches_the_gguf() {
    let gguf = common::engine();
    let good = TempDir::new("good");
    let t = std::time::Instant::now();
    write_hf_dir(
        &good.0,
        gguf,
        HfOptions {
            half_rotation_qk: true,
            sharded: false,
            merges_as_pairs: true,
        },
    );
    eprintln!("wrote the HF directory in {:.1?}", t.elapsed());
    let t = std::time::Instant::now();
    let hf = Engine::load(&good.0).unwrap();
    eprintln!("loaded it in {:.1?}", t.elapsed());
    assert_eq!(hf.model.config(), gguf.model.config());

    // Tokenizer: identical ids for every test string, with and without specials.
    assert_eq!(hf.tokenizer.vocab_size(), gguf.tokenizer.vocab_size());
    assert_eq!(hf.tokenizer.bos(), gguf.tokenizer.bos());
    assert_eq!(hf.tokenizer.eos(), gguf.tokenizer.eos());
    for s in [
        "Hello, world! The year 2024 had 366 days.",
        "  leading spaces,\ttabs\nand new lines\n\n",
        "naïve café, Ünïcödé, 日本語のテキスト, emoji 🦀🎉",
        "<|im_start|>user\nhi<|im_end|>",
        "def f(x):\n    return x**2  # comment",
    ] {
        for special in [false, true] {
            assert_eq!(
                hf.tokenizer.encode(s, special).unwrap(),
                gguf.tokenizer.encode(s, special).unwrap(),
                "{s:?} (allow_special {special})"
            );
        }
    }
    let chat = [ChatMessage::new("user", "What is 12 times 7?")];
    assert_eq!(
        hf.chat_prompt(&chat).unwrap(),
        gguf.chat_prompt(&chat).unwrap()
    );

    // A directory a wrong loader would produce: q/k left in GGUF's layout.
    let wrong = TempDir::new("wrong");
    write_hf_dir(
        &wrong.0,
        gguf,
        HfOptions {
            half_rotation_qk: false,
            sharded: true,
            merges_as_pairs: false,
        },
    );
    let bad = Engine::load(&wrong.0).unwrap();
    // Sharded files and "a b" merges load to the same tokenizer.
    let s = "The 3 quick brown foxes jumped over 12 lazy dogs.";
    assert_eq!(
        bad.tokenizer.encode(s, false).unwrap(),
        gguf.tokenizer.encode(s, false).unwrap()
    );

    // The model. Its weights are the GGUF's Q4_1 values rounded to bf16, then
    // to Q8_0, so logits differ slightly. Checked on the GGUF model's greedy
    // continuation, fed to both (teacher forcing): logits close everywhere, the
    // same choice wherever the GGUF's choice is decisive; and free-running
    // greedy text identical up to the GGUF's first near-tie.
    let (mut decisive_total, mut agree_total) = (0, 0);
    for q in [
        "What is the capital of France?",
        "List three primary colors.",
        "What is 12 times 7?",
    ] {
        let prompt = gguf.chat_prompt(&[ChatMessage::new("user", q)]).unwrap();
        let want = greedy(gguf, &prompt, NEW_TOKENS);
        let seq: Vec<u32> = prompt.iter().chain(&want).copied().collect();
        // Logits predicting want[0..]: positions prompt.len()-1 onwards.
        let skip = prompt.len() - 1;
        let la = &all_logits(&gguf.model, &seq)[skip..];
        let lb = &all_logits(&hf.model, &seq)[skip..];
        let lw = &all_logits(&bad.model, &seq)[skip..];
        let (mut decisive, mut hf_misses, mut bad_misses) = (0, 0, 0);
        let (mut d_good, mut d_bad) = (0f32, f32::INFINITY);
        let mut first_tie = want.len();
        for t in 0..want.len() {
            let (top, margin) = top_and_margin(&la[t]);
            assert_eq!(top, want[t], "greedy picks the top logit");
            d_good = d_good.max(logit_distance(&la[t], &lb[t]));
            d_bad = d_bad.min(logit_distance(&la[t], &lw[t]));
            if margin < DECISIVE_MARGIN {
                first_tie = first_tie.min(t);
                continue;
            }
            decisive += 1;
            hf_misses += usize::from(top_and_margin(&lb[t]).0 != top);
            bad_misses += usize::from(top_and_margin(&lw[t]).0 != top);
        }
        let got = greedy(&hf, &prompt, NEW_TOKENS);
        let agree = common_prefix(&want, &got);
        eprintln!(
            "{q:?}: decisive {decisive}/{NEW_TOKENS}, first near-tie at {first_tie}, \
             free-running agreement {agree}; teacher-forced misses on decisive choices \
             {hf_misses} (unpermuted q/k {bad_misses}); max logit distance {d_good:.3} \
             (unpermuted q/k: min {d_bad:.3})"
        );
        eprintln!("  gguf: {:?}", gguf.tokenizer.decode(&want, false).unwrap());
        eprintln!("  hf:   {:?}", hf.tokenizer.decode(&got, false).unwrap());
        assert_eq!(hf_misses, 0, "{q:?}");
        assert!(
            agree >= first_tie,
            "{q:?}: {agree} tokens agree, first near-tie at {first_tie}"
        );
        assert!(
            d_good < MAX_LOGIT_DISTANCE,
            "{q:?}: logit distance {d_good}"
        );
        // Unpermuted q/k put RoPE's rotation on the wrong pairs: another
        // function, far outside the tolerance, and it chooses differently.
        assert!(
            d_bad > 3.0 * MAX_LOGIT_DISTANCE,
            "{q:?}: unpermuted distance {d_bad}"
        );
        decisive_total += decisive;
        agree_total += decisive - bad_misses;
    }
    assert!(
        decisive_total >= NEW_TOKENS,
        "too few decisive positions to judge"
    );
    assert!(
        agree_total * 2 < decisive_total,
        "unpermuted q/k agreed on {agree_total} of {decisive_total} decisive choices"
    );
}

fn tiny_logits(model: &Model) -> Vec<f32> {
    last_logits(model, &[1, 5, 9, 200, 42, 7])
}

/// [`tiny_logits`] computed by two pipeline shards of the model in `dir`
/// (blocks `[0, 1)` with the embedding, the rest with the head), each loaded
/// on its own.
fn shard_logits(dir: &std::path::Path) -> Vec<f32> {
    let first = Model::load_shard(dir, &Shard::Layers(0..1)).unwrap();
    let n = first.n_layers();
    let last = Model::load_shard(dir, &Shard::Layers(1..n)).unwrap();
    let mut x = first.embed(&[1, 5, 9, 200, 42, 7]).unwrap();
    let rows = x.rows();
    for (m, layers) in [(&first, 0..1), (&last, 1..n)] {
        let mut cache = m.new_cache(layers.clone()).unwrap();
        let seg = Segment {
            cache: &mut cache,
            rows,
            observer: None,
            adapter: None,
        };
        m.forward_layers(layers, &mut x, &mut [seg]).unwrap();
    }
    last.logits(&x, &[rows - 1]).unwrap().pop().unwrap()
}

#[test]
fn tiny_model_loads_from_f32_f16_bf16_and_shards_alike() {
    let tensors = tiny_tensors();
    let f32_dir = tiny_dir("tiny-f32", &tiny_config(), &tensors, Dtype::F32);
    let reference = tiny_logits(&Model::load(&f32_dir.0).unwrap());
    assert!(reference.iter().all(|x| x.is_finite()));
    for dtype in [Dtype::F16, Dtype::BF16] {
        let dir = tiny_dir(&format!("tiny-{dtype:?}"), &tiny_config(), &tensors, dtype);
        let logits = tiny_logits(&Model::load(&dir.0).unwrap());
        // bf16 keeps 8 bits of mantissa, f16 11: both only nudge the logits.
        let d = relative_l2(&reference, &logits);
        assert!(d < 0.05, "{dtype:?}: distance {d}");
    }
    let sharded = TempDir::new("tiny-sharded");
    write_json(&sharded.0.join("config.json"), &tiny_config());
    write_sharded(&sharded.0, &tensors, Dtype::F32, 3);
    assert_eq!(tiny_logits(&Model::load(&sharded.0).unwrap()), reference);
    // Two shards of the directory (the untied head below is checked the same way).
    assert_eq!(shard_logits(&sharded.0), reference);
    // An untied head: lm_head.weight is used, and it is a different matrix.
    let mut untied = tiny_config();
    untied["tie_word_embeddings"] = json!(false);
    let mut with_head = tensors.clone();
    with_head.push(("lm_head.weight".into(), vec![300, 64], values(300 * 64, 99)));
    let dir = tiny_dir("tiny-head", &untied, &with_head, Dtype::F32);
    let logits = tiny_logits(&Model::load(&dir.0).unwrap());
    assert!(relative_l2(&reference, &logits) > 0.5);
    assert_eq!(shard_logits(&dir.0), logits);
    // Untied but no lm_head: refused, not silently tied.
    let dir = tiny_dir("tiny-nohead", &untied, &tensors, Dtype::F32);
    let err = Model::load(&dir.0).unwrap_err();
    assert!(err.to_string().contains("lm_head.weight"), "{err}");
}

#[test]
fn missing_files_are_named() {
    let tensors = tiny_tensors();
    let dir = tiny_dir("missing", &tiny_config(), &tensors, Dtype::F32);
    // No tokenizer.json: the model loads, the engine does not.
    assert!(Model::load(&dir.0).is_ok());
    let err = Engine::load(&dir.0).unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingModelFile { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
    std::fs::remove_file(dir.0.join("model.safetensors")).unwrap();
    let err = Model::load(&dir.0).unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingModelFile { file, .. } if file == "model.safetensors"),
        "{err}"
    );
    std::fs::remove_file(dir.0.join("config.json")).unwrap();
    let err = Engine::load(&dir.0).unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingModelFile { file, .. } if file == "config.json"),
        "{err}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");
    // An index naming a shard that is not there, or a path outside the directory.
    let dir = TempDir::new("missing-shard");
    write_json(&dir.0.join("config.json"), &tiny_config());
    write_sharded(&dir.0, &tensors, Dtype::F32, 2);
    std::fs::remove_file(dir.0.join("model-00002-of-00002.safetensors")).unwrap();
    let err = Model::load(&dir.0).unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingModelFile { file, .. } if file == "model-00002-of-00002.safetensors"),
        "{err}"
    );
    write_json(
        &dir.0.join("model.safetensors.index.json"),
        &json!({"weight_map": {"model.norm.weight": "../model.safetensors"}}),
    );
    let err = Model::load(&dir.0).unwrap_err();
    assert!(err.to_string().contains("plain file name"), "{err}");
}

#[test]
fn unknown_architectures_are_refused() {
    let tensors = tiny_tensors();
    for (model_type, arch) in [
        ("gpt_neox", "GPTNeoXForCausalLM"),
        ("llama", "LlamaForSequenceClassification"),
    ] {
        let mut config = tiny_config();
        config["model_type"] = json!(model_type);
        config["architectures"] = json!([arch]);
        let dir = tiny_dir("arch", &config, &tensors, Dtype::F32);
        let err = Model::load(&dir.0).unwrap_err();
        assert!(
            matches!(err, EngineError::UnsupportedArchitecture(_)),
            "{err}"
        );
    }
    let mut config = tiny_config();
    config.as_object_mut().unwrap().remove("model_type");
    config.as_object_mut().unwrap().remove("architectures");
    let dir = tiny_dir("noarch", &config, &tensors, Dtype::F32);
    let err = Model::load(&dir.0).unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedArchitecture(_)),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_an_error() {
    let dir = tiny_dir("trunc", &tiny_config(), &tiny_tensors(), Dtype::F32);
    let path = dir.0.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [
        0,
        5,
        8,
        40,
        header_end - 1,
        header_end,
        header_end + 100,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = Model::load(&dir.0).unwrap_err();
        assert!(
            matches!(err, EngineError::Safetensors { .. }),
            "cut {cut}: {err}"
        );
        assert!(
            err.to_string().contains("truncated") || err.to_string().contains("JSON"),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn oversized_or_garbled_headers_are_refused() {
    let dir = tiny_dir("header", &tiny_config(), &tiny_tensors(), Dtype::F32);
    let path = dir.0.join("model.safetensors");
    for claimed in [MAX_SAFETENSORS_HEADER_BYTES + 1, 1 << 40, u64::MAX] {
        let mut b = claimed.to_le_bytes().to_vec();
        b.extend_from_slice(&[b'{'; 64]);
        std::fs::write(&path, &b).unwrap();
        let err = Model::load(&dir.0).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }
    // Headers that parse but lie: offsets past the data, wrong byte counts,
    // shapes that overflow, not an object at all.
    for header in [
        json!({"model.norm.weight": {"dtype": "F32", "shape": [64], "data_offsets": [0, 1 << 30]}}),
        json!({"model.norm.weight": {"dtype": "F32", "shape": [64], "data_offsets": [0, 100]}}),
        json!({"model.norm.weight": {"dtype": "F32", "shape": [1u64 << 62, 1u64 << 62], "data_offsets": [0, 256]}}),
        json!({"model.norm.weight": {"dtype": "F32", "shape": [64], "data_offsets": [256, 0]}}),
        json!({"model.norm.weight": {"dtype": "F32", "shape": [64]}}),
        json!(["not", "an", "object"]),
    ] {
        let text = serde_json::to_vec(&header).unwrap();
        let mut b = (text.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(&text);
        b.extend_from_slice(&[0u8; 256]);
        std::fs::write(&path, &b).unwrap();
        let err = Model::load(&dir.0).unwrap_err();
        assert!(
            matches!(err, EngineError::Safetensors { .. }),
            "{header}: {err}"
        );
    }
}

#[test]
fn wrong_shapes_and_dtypes_are_refused() {
    let tensors = tiny_tensors();
    // q_proj with half its rows.
    let mut wrong = tensors.clone();
    let q = wrong
        .iter_mut()
        .find(|t| t.0 == "model.layers.1.self_attn.q_proj.weight")
        .unwrap();
    q.1 = vec![32, 64];
    q.2.truncate(32 * 64);
    let dir = tiny_dir("shape", &tiny_config(), &wrong, Dtype::F32);
    let err = Model::load(&dir.0).unwrap_err();
    assert!(matches!(err, EngineError::InvalidModel(_)), "{err}");
    assert!(
        err.to_string().contains("q_proj") && err.to_string().contains("[32, 64]"),
        "{err}"
    );
    // config.json disagreeing with the weights (vocab size).
    let mut config = tiny_config();
    config["vocab_size"] = json!(301);
    let dir = tiny_dir("vocab", &config, &tensors, Dtype::F32);
    let err = Model::load(&dir.0).unwrap_err();
    assert!(err.to_string().contains("embed_tokens"), "{err}");
    // A missing tensor.
    let dir = tiny_dir(
        "absent",
        &tiny_config(),
        &tensors[..tensors.len() - 1],
        Dtype::F32,
    );
    let err = Model::load(&dir.0).unwrap_err();
    assert!(
        err.to_string().contains("missing tensor model.norm.weight"),
        "{err}"
    );
    // An integer tensor where a float matrix belongs.
    let dir = TempDir::new("dtype");
    write_json(&dir.0.join("config.json"), &tiny_config());
    let mut bytes: HashMap<String, (Dtype, Vec<u8>)> = HashMap::new();
    for (name, _, v) in &tensors {
        let entry = if name == "model.layers.0.mlp.up_proj.weight" {
            (Dtype::I8, vec![1u8; v.len()])
        } else {
            (Dtype::F32, bytes_of(v, Dtype::F32))
        };
        bytes.insert(name.clone(), entry);
    }
    let views = tensors.iter().map(|(name, shape, _)| {
        let (dtype, b) = &bytes[name];
        (
            name.clone(),
            TensorView::new(*dtype, shape.clone(), b).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, &dir.0.join("model.safetensors")).unwrap();
    let err = Model::load(&dir.0).unwrap_err();
    assert!(matches!(err, EngineError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("dtype I8"), "{err}");
}

#[test]
fn malformed_tokenizer_json_is_an_error() {
    let dir = tiny_dir("tok", &tiny_config(), &tiny_tensors(), Dtype::F32);
    let tok = dir.0.join("tokenizer.json");
    for (text, needle) in [
        ("not json", "tokenizer.json"),
        (r#"{"model": {"type": "Unigram", "vocab": []}}"#, "Unigram"),
        (
            r#"{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#,
            "byte-level",
        ),
        (
            r#"{"model": {"type": "BPE", "vocab": {"a": 4000000000}, "merges": []}}"#,
            "ids reach",
        ),
        (
            r#"{"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}"#,
            "Metaspace",
        ),
        (
            r#"{"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}"#,
            "normalizer",
        ),
        (
            r#"{"model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}}"#,
            "byte_fallback",
        ),
    ] {
        std::fs::write(&tok, text).unwrap();
        let err = Engine::load(&dir.0).unwrap_err();
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}
