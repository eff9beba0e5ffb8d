//! Pipeline hops ([`HopBatcher`]) over shards loaded from the file: three
//! hops, hidden states crossing each boundary in their wire encoding, several
//! sequences joining at different steps, give the single node's tokens and
//! commitments bit for bit; a failover's continuation goes on exactly where
//! the dead route stopped; bad inputs are refused before anything runs.

use std::collections::BTreeMap;
use std::ops::Range;

use strata_engine::{
    default_model_path, generate, EngineError, GenerateRequest, HiddenStates, HopBatcher, HopInput,
    HopOptions, HopOutput, LayerEntry, Model, SamplingParams, Shard, WireDType,
    DEFAULT_MAX_HIDDEN_BYTES,
};

use crate::common::{chat, engine};

fn shard(layers: Range<usize>) -> Model {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    Model::load_shard(&path, &Shard::Layers(layers)).unwrap_or_else(|e| panic!("{e}"))
}

/// Three shards of the default model, a third of the blocks each.
fn three_shards() -> (Vec<Model>, Vec<Range<usize>>) {
    let n = engine().model.n_layers();
    let ranges = vec![0..n / 3, n / 3..2 * n / 3, 2 * n / 3..n];
    (ranges.iter().cloned().map(shard).collect(), ranges)
}

fn seeded(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed,
    }
}

/// One sequence a test drives through the hops: its options and the step at
/// which it joins.
struct Job {
    prompt: Vec<u32>,
    opts: HopOptions,
    joins_at: usize,
}

/// Drives `jobs` through `hops` (a route, first to last) until each ends;
/// returns every sequence's tokens and each hop's commitment entries.
fn run_route(
    hops: &mut [HopBatcher<'_>],
    jobs: &[Job],
) -> BTreeMap<u64, (Vec<u32>, Vec<Vec<LayerEntry>>)> {
    let mut next: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut tokens: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut done = BTreeMap::new();
    let mut step = 0;
    while done.len() < jobs.len() {
        for (key, job) in jobs.iter().enumerate() {
            let key = key as u64;
            if job.joins_at == step {
                for hop in hops.iter_mut() {
                    hop.open(key, job.opts.clone()).unwrap();
                }
                next.insert(key, job.prompt.clone());
            }
        }
        for (key, feed) in std::mem::take(&mut next) {
            hops[0].push(key, HopInput::Tokens(feed)).unwrap();
        }
        let mut outputs = hops[0].step().unwrap();
        for hop in hops[1..].iter_mut() {
            for (key, out) in outputs {
                let HopOutput::States(x) = out else {
                    panic!("a hop before the last returned a token")
                };
                // Across the process boundary.
                let wire = x.encode(WireDType::F32).unwrap();
                let x = HiddenStates::decode(&wire, DEFAULT_MAX_HIDDEN_BYTES).unwrap();
                hop.push(key, HopInput::States(x)).unwrap();
            }
            outputs = hop.step().unwrap();
        }
        for (key, out) in outputs {
            let HopOutput::Token { token, last } = out else {
                panic!("the last hop returned states")
            };
            tokens.entry(key).or_default().push(token);
            if last {
                let entries = hops
                    .iter_mut()
                    .map(|h| {
                        let f = h.close(key).unwrap();
                        f.commitments
                            .map(|t| t.entries().to_vec())
                            .unwrap_or_default()
                    })
                    .collect();
                done.insert(key, (tokens.remove(&key).unwrap_or_default(), entries));
            } else {
                next.insert(key, vec![token]);
            }
        }
        step += 1;
        assert!(step < 200, "the route never finished");
    }
    done
}

#[test]
fn three_hops_serve_many_sequences_like_one_node() {
    let whole = &engine().model;
    let (models, ranges) = three_shards();
    let mut hops: Vec<HopBatcher<'_>> = models
        .iter()
        .zip(&ranges)
        .map(|(m, r)| HopBatcher::new(m, r.clone()).unwrap())
        .collect();
    let prompts = [
        chat("Name three rivers in Europe."),
        chat("Write a haiku about rain."),
        chat("What is 12 times 12?"),
    ];
    let sampling = [SamplingParams::greedy(), seeded(7), seeded(11)];
    let jobs: Vec<Job> = (0..3)
        .map(|i| Job {
            prompt: prompts[i].clone(),
            opts: HopOptions {
                sampling: sampling[i],
                sample_offset: 0,
                stop_tokens: Vec::new(),
                max_new_tokens: 10,
                record_commitments: true,
                adapter: None,
            },
            joins_at: [0, 0, 3][i],
        })
        .collect();
    let served = run_route(&mut hops, &jobs);
    assert!(hops.iter().all(HopBatcher::is_empty));
    for (key, job) in jobs.iter().enumerate() {
        let alone = generate(
            whole,
            GenerateRequest {
                sampling: job.opts.sampling,
                record_commitments: true,
                ..GenerateRequest::greedy(job.prompt.clone(), 10)
            },
        )
        .unwrap();
        let (tokens, hop_entries) = &served[&(key as u64)];
        assert_eq!(tokens, &alone.tokens, "sequence {key}");
        let single = alone.commitments.unwrap().entries().to_vec();
        for (entries, r) in hop_entries.iter().zip(&ranges) {
            // Entries a..b are the single node's, sketches included.
            assert_eq!(entries.len(), r.len() + 1);
            assert_eq!(&entries[..r.len()], &single[r.clone()]);
            // The exit entry commits the states handed on: the single node's
            // input of layer b (or its final states).
            let exit = &entries[r.len()];
            assert_eq!(exit.layer as usize, r.end);
            assert_eq!(exit.input_hash, single[r.end].input_hash);
            assert_eq!(exit.positions, single[r.end].positions);
        }
        // Each link: hop k's exit entry is hop k+1's first.
        for pair in hop_entries.windows(2) {
            let exit = pair[0].last().unwrap();
            assert_eq!(exit.input_hash, pair[1][0].input_hash);
        }
    }
}

#[test]
fn a_failover_continues_the_stream_exactly() {
    let whole = &engine().model;
    let prompt = chat("Tell me a short story about a fox.");
    let params = seeded(23);
    let full = generate(
        whole,
        GenerateRequest {
            sampling: params,
            ..GenerateRequest::greedy(prompt.clone(), 14)
        },
    )
    .unwrap()
    .tokens;
    // The first route died after 5 tokens; a new route re-prefills the prompt
    // and those tokens and continues the sampler at step 5.
    let k = 5;
    let (models, ranges) = three_shards();
    let mut hops: Vec<HopBatcher<'_>> = models
        .iter()
        .zip(&ranges)
        .map(|(m, r)| HopBatcher::new(m, r.clone()).unwrap())
        .collect();
    let resumed = [prompt, full[..k].to_vec()].concat();
    let job = Job {
        prompt: resumed,
        opts: HopOptions {
            sampling: params,
            sample_offset: k as u64,
            stop_tokens: Vec::new(),
            max_new_tokens: full.len() - k,
            record_commitments: false,
            adapter: None,
        },
        joins_at: 0,
    };
    let served = run_route(&mut hops, &[job]);
    assert_eq!(served[&0].0, full[k..].to_vec());
}

#[test]
fn hops_refuse_bad_input_before_running_it() {
    let (models, ranges) = three_shards();
    let hidden = models[1].config().hidden_size;
    let mut first = HopBatcher::new(&models[0], ranges[0].clone()).unwrap();
    let mut middle = HopBatcher::new(&models[1], ranges[1].clone()).unwrap();
    let states = |rows: usize, cols: usize| {
        HopInput::States(HiddenStates::new(rows, cols, vec![0.25; rows * cols]).unwrap())
    };
    // A hop for layers its shard does not hold, or a range it cannot run.
    assert!(matches!(
        HopBatcher::new(&models[1], ranges[0].clone()),
        Err(EngineError::LayerNotLoaded { .. })
    ));
    let a = ranges[1].start;
    assert!(HopBatcher::new(&models[1], a..a).is_err());

    middle.open(1, HopOptions::greedy(4)).unwrap();
    assert!(
        middle.open(1, HopOptions::greedy(4)).is_err(),
        "opened twice"
    );
    assert!(
        middle.push(9, states(1, hidden)).is_err(),
        "unknown sequence"
    );
    assert!(
        middle.push(1, HopInput::Tokens(vec![1, 2])).is_err(),
        "tokens to a middle hop"
    );
    assert!(
        middle.push(1, states(2, hidden + 1)).is_err(),
        "wrong width"
    );
    assert!(middle.push(1, states(0, hidden)).is_err(), "no rows");
    let context = models[1].config().context_length;
    assert!(
        middle.push(1, states(context + 1, hidden)).is_err(),
        "past the context"
    );
    middle.push(1, states(3, hidden)).unwrap();
    assert!(
        middle.push(1, states(1, hidden)).is_err(),
        "two inputs in one step"
    );
    // Nothing refused ran: the one good input is all the step sees.
    let out = middle.step().unwrap();
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0].1, HopOutput::States(x) if x.rows() == 3));
    assert_eq!(middle.close(1).unwrap().positions, 3);
    assert!(middle.close(1).is_err(), "closed twice");

    first.open(2, HopOptions::greedy(4)).unwrap();
    assert!(
        first.push(2, states(1, hidden)).is_err(),
        "states to the first hop"
    );
    let vocab = models[0].config().vocab_size as u32;
    assert!(matches!(
        first.push(2, HopInput::Tokens(vec![1, vocab])),
        Err(EngineError::BadToken { .. })
    ));
    assert!(first.step().unwrap().is_empty());
}
