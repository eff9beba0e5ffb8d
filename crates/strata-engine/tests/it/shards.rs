//! Pipeline shards loaded from the file: three hops that each hold a third of
//! the blocks (the first with the embedding, the last with the head) produce
//! the whole model's tokens, hold less than it, refuse what they lack, and
//! hold what the file's layout said they would.

use std::ops::Range;

use strata_engine::{
    default_model_path, generate, EngineError, GenerateRequest, HiddenStates, Model, ModelLayout,
    Sampler, SamplingParams, Segment, Shard, WireDType, DEFAULT_MAX_HIDDEN_BYTES,
};

use crate::common::{chat, engine};

fn shard(layers: Range<usize>) -> Model {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    Model::load_shard(&path, &Shard::Layers(layers)).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `x` through `layers` of `m` with `cache`, then across a process
/// boundary's encoding.
fn hop(m: &Model, layers: Range<usize>, x: &mut HiddenStates, cache: &mut strata_engine::KvCache) {
    let rows = x.rows();
    m.forward_layers(
        layers,
        x,
        &mut [Segment {
            cache,
            rows,
            observer: None,
            adapter: None,
        }],
    )
    .unwrap();
    let wire = x.encode(WireDType::F32).unwrap();
    *x = HiddenStates::decode(&wire, DEFAULT_MAX_HIDDEN_BYTES).unwrap();
}

#[test]
fn three_loaded_shards_give_the_whole_models_tokens() {
    let whole = &engine().model;
    let n = whole.n_layers();
    let (a, b) = (n / 3, 2 * n / 3);
    let hops = [shard(0..a), shard(a..b), shard(b..n)];
    assert_eq!(hops[1].layers(), a..b);
    assert!(hops[0].has_embedding() && !hops[0].has_head());
    assert!(!hops[1].has_embedding() && !hops[1].has_head());
    assert!(!hops[2].has_embedding() && hops[2].has_head());
    for h in &hops {
        assert!(
            h.weight_bytes() < whole.weight_bytes(),
            "a shard holds {} bytes, the whole model {}",
            h.weight_bytes(),
            whole.weight_bytes()
        );
    }
    let blocks_only = hops[1].weight_bytes();
    assert!(blocks_only * 2 < whole.weight_bytes());

    let prompt = chat("Name three rivers in Europe.");
    let expected = generate(whole, GenerateRequest::greedy(prompt.clone(), 12))
        .unwrap()
        .tokens;
    let ranges = [0..a, a..b, b..n];
    let mut caches: Vec<_> = hops
        .iter()
        .zip(&ranges)
        .map(|(h, r)| h.new_cache(r.clone()).unwrap())
        .collect();
    let mut sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    let mut tokens = Vec::new();
    let mut feed = prompt;
    for _ in 0..12 {
        let mut x = hops[0].embed(&feed).unwrap();
        for ((h, r), cache) in hops.iter().zip(&ranges).zip(caches.iter_mut()) {
            hop(h, r.clone(), &mut x, cache);
        }
        let logits = hops[2].logits(&x, &[x.rows() - 1]).unwrap();
        let t = sampler.sample(&logits[0]).unwrap();
        tokens.push(t);
        feed = vec![t];
    }
    assert_eq!(tokens, expected);
}

#[test]
fn a_shard_refuses_what_it_does_not_hold() {
    let n = engine().model.n_layers();
    let middle = shard(10..20);
    let x = HiddenStates::new(
        1,
        middle.config().hidden_size,
        vec![0.5; middle.config().hidden_size],
    )
    .unwrap();
    assert!(matches!(
        middle.embed(&[1, 2]),
        Err(EngineError::PartNotLoaded("embedding", _))
    ));
    assert!(matches!(
        middle.logits(&x, &[0]),
        Err(EngineError::PartNotLoaded("head", _))
    ));
    for asked in [0..10, 9..11, 19..21, 0..n] {
        assert!(
            matches!(
                middle.new_cache(asked.clone()),
                Err(EngineError::LayerNotLoaded { .. })
            ),
            "{asked:?}"
        );
    }
    assert!(matches!(
        middle.rerun_layer(25, &x),
        Err(EngineError::LayerNotLoaded { .. })
    ));
    // What it holds works.
    let mut cache = middle.new_cache(12..15).unwrap();
    let mut y = x.clone();
    hop(&middle, 12..15, &mut y, &mut cache);
    assert_eq!(y.rows(), 1);
    assert!(middle.rerun_layer(10, &x).is_ok());
}

#[test]
fn bad_shards_are_refused_before_loading() {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    let n = engine().model.n_layers();
    #[allow(clippy::reversed_empty_ranges)]
    let bad = [5..5, 7..3, 0..n + 1, n..n + 1];
    for layers in bad {
        let err = Model::load_shard(&path, &Shard::Layers(layers.clone())).unwrap_err();
        assert!(
            matches!(err, EngineError::InvalidRequest(_)),
            "{layers:?}: {err}"
        );
    }
}

#[test]
fn the_layout_says_what_each_shard_will_hold() {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    let layout = ModelLayout::read(&path).unwrap();
    let whole = &engine().model;
    let n = whole.n_layers();
    assert_eq!(layout.layer_bytes.len(), n);
    assert_eq!(layout.config, *whole.config());
    assert!(layout.embedding_bytes > 0 && layout.head_bytes >= layout.embedding_bytes);
    let close = |predicted: u64, held: usize, what: &str| {
        let (p, h) = (predicted as f64, held as f64);
        assert!(
            (p - h).abs() <= 0.02 * h,
            "{what}: layout says {p} bytes, the loaded shard holds {h}"
        );
    };
    close(layout.shard_bytes(0..n), whole.weight_bytes(), "whole");
    for layers in [0..10, 10..20, 20..n] {
        close(
            layout.shard_bytes(layers.clone()),
            shard(layers.clone()).weight_bytes(),
            &format!("{layers:?}"),
        );
    }
    // Keys and values of every position, in f32.
    assert_eq!(
        layout.kv_bytes_per_position(),
        2 * whole.config().kv_dim() as u64 * 4
    );
}
