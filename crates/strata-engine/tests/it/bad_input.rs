//! Bad input gives clear errors, never panics.

use strata_engine::{
    default_model_path, verify_sha256, EngineError, GenerateRequest, HiddenStates, Model,
    Tokenizer, DEFAULT_MAX_HIDDEN_BYTES, DEFAULT_MODEL_SHA256,
};

use crate::common::engine;

fn model_bytes() -> Vec<u8> {
    std::fs::read(default_model_path().unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

#[test]
fn default_model_has_the_pinned_sha256_and_a_wrong_one_is_refused() {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    verify_sha256(&path, DEFAULT_MODEL_SHA256).unwrap();
    let err = verify_sha256(&path, &"0".repeat(64)).unwrap_err();
    assert!(matches!(err, EngineError::Sha256Mismatch { .. }), "{err}");
}

#[test]
fn truncated_gguf_is_an_error() {
    let bytes = model_bytes();
    for cut in [0, 3, 100, 4096, bytes.len() / 2, bytes.len() - 1] {
        let err = Model::from_gguf_bytes(bytes[..cut].to_vec()).unwrap_err();
        assert!(matches!(err, EngineError::Gguf(_)), "cut at {cut}: {err}");
    }
}

#[test]
fn corrupt_gguf_is_an_error() {
    let mut bytes = model_bytes();
    bytes[0] ^= 0xff; // magic
    assert!(matches!(
        Model::from_gguf_bytes(bytes).unwrap_err(),
        EngineError::Gguf(_)
    ));
    let mut bytes = model_bytes();
    // The first metadata key's length prefix: make it absurd.
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Model::from_gguf_bytes(bytes).is_err());
    // Garbage all over the header region must never panic.
    let base = model_bytes();
    for seed in 0..64u64 {
        let mut b = base[..1 << 20].to_vec();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..16 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s as usize) % 4096;
            b[i] = (s >> 32) as u8;
        }
        let _ = Model::from_gguf_bytes(b);
    }
}

#[test]
fn unknown_architecture_is_an_error() {
    use candle_core::quantized::gguf_file::{write, Value};
    let arch = Value::String("mamba".into());
    let mut buf = std::io::Cursor::new(Vec::new());
    write(&mut buf, &[("general.architecture", &arch)], &[]).unwrap();
    let err = Model::from_gguf_bytes(buf.into_inner()).unwrap_err();
    assert!(
        matches!(&err, EngineError::UnsupportedArchitecture(a) if a == "mamba"),
        "{err}"
    );
}

#[test]
fn over_long_prompt_and_bad_tokens_are_errors() {
    let m = &engine().model;
    let ctx = m.config().context_length;
    let mut b = strata_engine::Batcher::new(m);
    let err = b
        .add(GenerateRequest::greedy(vec![1; ctx + 1], 1))
        .unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
    let err = b
        .add(GenerateRequest::greedy(vec![1; ctx - 10], 20))
        .unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
    assert!(matches!(
        b.add(GenerateRequest::greedy(vec![], 5)).unwrap_err(),
        EngineError::EmptyPrompt
    ));
    let err = b
        .add(GenerateRequest::greedy(vec![u32::MAX], 5))
        .unwrap_err();
    assert!(matches!(err, EngineError::BadToken { .. }), "{err}");
    assert!(engine().tokenizer.decode(&[u32::MAX], false).is_err());
}

#[test]
fn malformed_hidden_state_messages_are_errors() {
    let m = &engine().model;
    let x = m.embed(&[1, 2, 3]).unwrap();
    let wire = x.encode(strata_engine::WireDType::F32).unwrap();
    assert!(HiddenStates::decode(&wire[..wire.len() - 3], DEFAULT_MAX_HIDDEN_BYTES).is_err());
    assert!(HiddenStates::decode(b"not a message", DEFAULT_MAX_HIDDEN_BYTES).is_err());
    // Well-formed but the wrong width for the model: refused by the layer call.
    let narrow = HiddenStates::new(3, 8, vec![0.0; 24]).unwrap();
    let mut narrow2 = narrow.clone();
    let mut cache = m.new_cache(0..2).unwrap();
    let err = m
        .forward_layers(
            0..2,
            &mut narrow2,
            &mut [strata_engine::Segment {
                cache: &mut cache,
                rows: 3,
                observer: None,
                adapter: None,
            }],
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
    // A layer range outside the model is refused.
    assert!(m.new_cache(0..m.n_layers() + 1).is_err());
}

#[test]
fn missing_tokenizer_metadata_is_an_error() {
    use candle_core::quantized::gguf_file::{write, Value};
    let arch = Value::String("llama".into());
    let mut buf = std::io::Cursor::new(Vec::new());
    write(&mut buf, &[("general.architecture", &arch)], &[]).unwrap();
    let dir = std::env::temp_dir().join(format!("strata-tok-{}", std::process::id()));
    std::fs::write(&dir, buf.into_inner()).unwrap();
    let err = Tokenizer::from_gguf(&dir).unwrap_err();
    let _ = std::fs::remove_file(&dir);
    assert!(matches!(err, EngineError::Tokenizer(_)), "{err}");
}
