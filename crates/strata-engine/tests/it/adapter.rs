//! LoRA adapters on the real model: a zero delta changes no bit, a real one
//! changes the logits, a row's bits do not depend on the adapters of the
//! rows it is batched with, the verifier's re-run of an adapted layer
//! needs the adapter, and an adapter for another model is refused.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use strata_engine::{
    check_layer, check_layer_adapted, generate, rederive, rederive_adapted, rederive_hop_adapted,
    Adapter, Batcher, CommitmentTree, EngineError, GenerateRequest, HiddenStates, HopBatcher,
    HopInput, HopOptions, HopOutput, LoraPart, LoraTarget, Model, Segment, DEFAULT_MODEL_SHA256,
    DEFAULT_TOLERANCE,
};

use crate::common::{chat, engine};

fn model_sha() -> [u8; 32] {
    let mut sha = [0u8; 32];
    hex::decode_to_slice(DEFAULT_MODEL_SHA256, &mut sha).unwrap();
    sha
}

/// A rank-4 adapter on every target of every layer, factors uniform in
/// `±amp`; `zero_b` makes every `B` zero (LoRA's initial state).
fn adapter(m: &Model, seed: u64, amp: f32, zero_b: bool) -> Arc<Adapter> {
    let cfg = m.config();
    let rank = 4;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-amp..amp)).collect() };
    let mut parts = Vec::new();
    for layer in 0..cfg.n_layers {
        for target in LoraTarget::ALL {
            let (i, o) = target.dims(cfg);
            let a = random(rank * i);
            let b = if zero_b {
                vec![0.0; o * rank]
            } else {
                random(o * rank)
            };
            parts.push(LoraPart {
                layer,
                target,
                a,
                b,
            });
        }
    }
    Arc::new(Adapter::new(model_sha(), seed, rank, 8.0, parts).unwrap())
}

/// The whole model over `tokens` in one prefill pass: final states and the
/// last row's logits.
fn run(m: &Model, tokens: &[u32], adapter: Option<&Adapter>) -> (HiddenStates, Vec<f32>) {
    let n = m.n_layers();
    let mut cache = m.new_cache(0..n).unwrap();
    let mut x = m.embed(tokens).unwrap();
    let rows = x.rows();
    let mut segs = [Segment {
        adapter,
        ..Segment::new(&mut cache, rows)
    }];
    m.forward_layers(0..n, &mut x, &mut segs).unwrap();
    let logits = m.logits(&x, &[rows - 1]).unwrap().remove(0);
    (x, logits)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn zero_b_adapter_gives_the_base_models_bits() {
    let m = &engine().model;
    let tokens = chat("What is the capital of France?");
    let zero = adapter(m, 1, 0.5, true);
    let (xb, lb) = run(m, &tokens, None);
    let (xz, lz) = run(m, &tokens, Some(&zero));
    assert_eq!(bits(xb.as_slice()), bits(xz.as_slice()));
    assert_eq!(bits(&lb), bits(&lz));
}

#[test]
fn a_nonzero_adapter_changes_the_logits() {
    let m = &engine().model;
    let tokens = chat("What is the capital of France?");
    let a = adapter(m, 2, 0.05, false);
    let (_, base) = run(m, &tokens, None);
    let (_, adapted) = run(m, &tokens, Some(&a));
    let max_diff = base
        .iter()
        .zip(&adapted)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff > 0.1,
        "the adapter barely moved the logits: {max_diff}"
    );
    // Through the batcher too: the request's adapter reaches the model.
    let req = |adapter| GenerateRequest {
        logprobs: Some(0),
        adapter,
        ..GenerateRequest::greedy(tokens.clone(), 4)
    };
    let plain = generate(m, req(None)).unwrap();
    let tuned = generate(m, req(Some(a))).unwrap();
    assert_ne!(plain.logprobs, tuned.logprobs);
}

/// Three sequences with adapter X, adapter Y and none: each one's states
/// alone are bit for bit its rows of the mixed batch, prefilled together
/// and then decoded together; and prefill agrees with token-by-token
/// decode under an adapter (which runs the delta on one thread, prefill on
/// the pool).
#[test]
fn a_sequence_gets_the_same_bits_alone_and_in_a_mixed_batch() {
    let m = &engine().model;
    let n = m.n_layers();
    let (x, y) = (adapter(m, 3, 0.05, false), adapter(m, 4, 0.05, false));
    // The questions' last tokens: short, so that token-by-token decode is quick.
    let tail = |p: Vec<u32>| p[p.len() - 12..].to_vec();
    let prompts = [
        tail(chat("Name three rivers.")),
        tail(chat("Why is the sky blue?")),
        tail(chat("Say hello.")),
    ];
    let adapters = [Some(&*x), Some(&*y), None];
    let next = [17u32, 900, 4242];

    // Alone: prefill, then one decoded token.
    let mut alone = Vec::new();
    for ((p, a), t) in prompts.iter().zip(adapters).zip(next) {
        let mut cache = m.new_cache(0..n).unwrap();
        let mut out = Vec::new();
        for feed in [p.clone(), vec![t]] {
            let mut h = m.embed(&feed).unwrap();
            let rows = h.rows();
            let mut segs = [Segment {
                adapter: a,
                ..Segment::new(&mut cache, rows)
            }];
            m.forward_layers(0..n, &mut h, &mut segs).unwrap();
            out.push(h);
        }
        alone.push(out);
    }

    // Together.
    let mut caches: Vec<_> = (0..3).map(|_| m.new_cache(0..n).unwrap()).collect();
    for (step, feeds) in [prompts.to_vec(), next.iter().map(|&t| vec![t]).collect()]
        .into_iter()
        .enumerate()
    {
        let mut h = m.embed(&feeds.concat()).unwrap();
        let mut segs: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(&feeds)
            .zip(adapters)
            .map(|((c, f), a)| Segment {
                adapter: a,
                ..Segment::new(c, f.len())
            })
            .collect();
        m.forward_layers(0..n, &mut h, &mut segs).unwrap();
        let mut row = 0;
        for (s, f) in feeds.iter().enumerate() {
            let mine = h.slice_rows(row, f.len()).unwrap();
            assert_eq!(
                bits(mine.as_slice()),
                bits(alone[s][step].as_slice()),
                "sequence {s}, step {step}"
            );
            row += f.len();
        }
    }

    // Prefill vs token by token, under adapter X.
    let p = &prompts[0];
    let mut cache = m.new_cache(0..n).unwrap();
    let mut rows = Vec::new();
    for &t in p {
        let mut h = m.embed(&[t]).unwrap();
        let mut segs = [Segment {
            adapter: Some(&x),
            ..Segment::new(&mut cache, 1)
        }];
        m.forward_layers(0..n, &mut h, &mut segs).unwrap();
        rows.push(h);
    }
    let inc = HiddenStates::concat_rows(&rows).unwrap();
    assert_eq!(bits(inc.as_slice()), bits(alone[0][0].as_slice()));
    // The base sequence is the base model's, and X's is not.
    assert_eq!(
        bits(alone[2][0].as_slice()),
        bits(run(m, &prompts[2], None).0.as_slice())
    );
    assert_ne!(
        bits(alone[0][0].as_slice()),
        bits(run(m, p, None).0.as_slice())
    );
}

/// The batcher serves sequences on different adapters side by side with the
/// tokens each gets alone; the node re-derives an adapted task's root only
/// with its adapter, and the verifier's layer re-check passes only with it.
#[test]
fn adapted_tasks_rederive_and_recheck_with_their_adapter_only() {
    let m = &engine().model;
    let (x, y) = (adapter(m, 5, 0.05, false), adapter(m, 6, 0.05, false));
    let prompt = chat("Describe a cat.");
    let req = |adapter: Option<Arc<Adapter>>, record| GenerateRequest {
        record_commitments: record,
        retain_states: record,
        adapter,
        ..GenerateRequest::greedy(prompt.clone(), 6)
    };
    let alone = generate(m, req(Some(x.clone()), true)).unwrap();
    let mut b = Batcher::new(m);
    b.add(req(Some(y.clone()), false)).unwrap();
    b.step().unwrap();
    let id = b.add(req(Some(x.clone()), true)).unwrap();
    b.add(req(None, false)).unwrap();
    let done = b.run_to_completion().unwrap();
    let served = done.iter().find(|f| f.id == id).unwrap();
    assert_eq!(served.tokens, alone.tokens);
    let root = served.commitments.as_ref().unwrap().root();
    assert_eq!(root, alone.commitments.as_ref().unwrap().root());

    let mut positions = prompt.clone();
    positions.extend_from_slice(&served.tokens[..served.tokens.len() - 1]);
    let with = rederive_adapted(m, &positions, None, Some(&x)).unwrap();
    assert_eq!(CommitmentTree::new(with.entries()).unwrap().root(), root);
    let without = rederive(m, &positions, None).unwrap();
    assert_ne!(CommitmentTree::new(without.entries()).unwrap().root(), root);

    let rec = served.recorder.as_ref().unwrap();
    for layer in [0, 13, 29] {
        let input = rec.states(layer).unwrap();
        let output = rec.states(layer + 1).unwrap();
        let tol = DEFAULT_TOLERANCE;
        let ok = check_layer_adapted(m, layer, &input, &output, None, tol, Some(&x)).unwrap();
        assert!(ok.passed && ok.rel_dev == 0.0, "layer {layer}: {ok:?}");
        let base = check_layer(m, layer, &input, &output, None, tol).unwrap();
        assert!(
            !base.passed,
            "layer {layer} passed without its adapter: {base:?}"
        );
        let other = check_layer_adapted(m, layer, &input, &output, None, tol, Some(&y)).unwrap();
        assert!(
            !other.passed,
            "layer {layer} passed with another adapter: {other:?}"
        );
    }
}

/// Two hops of a route, each running the adapter on its blocks, sample the
/// whole adapted model's tokens, and the second hop re-derives its entries.
#[test]
fn hops_run_the_adapter_on_their_blocks() {
    let m = &engine().model;
    let n = m.n_layers();
    let x = adapter(m, 7, 0.05, false);
    let prompt = chat("Name a planet.");
    let max_new = 5;
    let whole = generate(
        m,
        GenerateRequest {
            adapter: Some(x.clone()),
            ..GenerateRequest::greedy(prompt.clone(), max_new)
        },
    )
    .unwrap()
    .tokens;
    let k = n / 2;
    let mut first = HopBatcher::new(m, 0..k).unwrap();
    let mut last = HopBatcher::new(m, k..n).unwrap();
    let opts = HopOptions {
        adapter: Some(x.clone()),
        record_commitments: true,
        ..HopOptions::greedy(max_new)
    };
    first.open(1, opts.clone()).unwrap();
    last.open(1, opts).unwrap();
    let mut feed = prompt.clone();
    let mut received = Vec::new();
    let mut tokens = Vec::new();
    loop {
        first.push(1, HopInput::Tokens(feed)).unwrap();
        let Some((_, HopOutput::States(s))) = first.step().unwrap().pop() else {
            panic!("the first hop hands on states");
        };
        received.push(s.clone());
        last.push(1, HopInput::States(s)).unwrap();
        let Some((_, HopOutput::Token { token, last: end })) = last.step().unwrap().pop() else {
            panic!("the last hop samples");
        };
        tokens.push(token);
        if end {
            break;
        }
        feed = vec![token];
    }
    assert_eq!(tokens, whole);
    let served = last.close(1).unwrap().commitments.unwrap();
    let input = HopInput::States(HiddenStates::concat_rows(&received).unwrap());
    let rec = rederive_hop_adapted(m, k..n, &input, None, Some(&x)).unwrap();
    assert_eq!(rec.entries(), served.entries());
}

#[test]
fn an_adapter_for_another_model_is_refused() {
    let m = &engine().model;
    let cfg = m.config();
    let good = adapter(m, 8, 0.05, false);
    good.check_for(cfg, &model_sha()).unwrap();
    let mut other = model_sha();
    other[0] ^= 1;
    match good.check_for(cfg, &other) {
        Err(e @ EngineError::AdapterBaseModel { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(DEFAULT_MODEL_SHA256) && msg.contains(&hex::encode(other)),
                "{msg}"
            );
        }
        r => panic!("expected AdapterBaseModel, got {r:?}"),
    }
    // Mis-shaped: a projection one input too wide, and a layer the model
    // lacks. Every entry point refuses them (no panic in the forward pass).
    let (i, o) = LoraTarget::AttnK.dims(cfg);
    let wide = LoraPart {
        layer: 3,
        target: LoraTarget::AttnK,
        a: vec![0.1; 2 * (i + 1)],
        b: vec![0.1; o * 2],
    };
    let deep = LoraPart {
        layer: cfg.n_layers,
        target: LoraTarget::AttnK,
        a: vec![0.1; 2 * i],
        b: vec![0.1; o * 2],
    };
    for part in [wide, deep] {
        let bad = Arc::new(Adapter::new(model_sha(), 1, 2, 4.0, vec![part]).unwrap());
        assert!(matches!(
            bad.check_for(cfg, &model_sha()),
            Err(EngineError::AdapterShape(_))
        ));
        let req = GenerateRequest {
            adapter: Some(bad.clone()),
            ..GenerateRequest::greedy(chat("Hi."), 2)
        };
        assert!(matches!(
            Batcher::new(m).add(req),
            Err(EngineError::AdapterShape(_))
        ));
        let mut hop = HopBatcher::new(m, 0..m.n_layers()).unwrap();
        let opts = HopOptions {
            adapter: Some(bad.clone()),
            ..HopOptions::greedy(2)
        };
        assert!(matches!(
            hop.open(1, opts),
            Err(EngineError::AdapterShape(_))
        ));
        let mut cache = m.new_cache(0..cfg.n_layers).unwrap();
        let mut h = m.embed(&[1, 2]).unwrap();
        let mut segs = [Segment {
            adapter: Some(&bad),
            ..Segment::new(&mut cache, 2)
        }];
        assert!(matches!(
            m.forward_layers(0..cfg.n_layers, &mut h, &mut segs),
            Err(EngineError::AdapterShape(_))
        ));
        assert!(matches!(
            m.rerun_layer_adapted(3, &h, Some(&bad)),
            Err(EngineError::AdapterShape(_))
        ));
    }
}
