//! Re-deriving a pipeline hop's commitments for an audit
//! ([`rederive_hop`]): from what each hop received while serving (the head:
//! every token it embedded; a later hop: every row of states it got), one
//! prefill pass over the hop's own shard gives the entries its
//! [`HopBatcher`] recorded, sketches and exit entry included, bit for bit,
//! greedy and seeded, with the sequence batched among others; the last hop's
//! re-derived final states re-sample its tokens, after a failover too.

use std::collections::BTreeMap;
use std::ops::Range;

use strata_engine::{
    check_sampling_from, default_model_path, rederive_hop, CommitmentTree, HiddenStates,
    HopBatcher, HopInput, HopOptions, HopOutput, LayerEntry, Model, SamplingParams, Shard,
    WireDType, DEFAULT_MAX_HIDDEN_BYTES,
};

use crate::common::{chat, engine};

fn shard(layers: Range<usize>) -> Model {
    let path = default_model_path().unwrap_or_else(|e| panic!("{e}"));
    Model::load_shard(&path, &Shard::Layers(layers)).unwrap_or_else(|e| panic!("{e}"))
}

fn seeded(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed,
    }
}

/// What one hop did for one sequence: what it received over all steps,
/// the entries it recorded, and (the last hop) what it sampled.
struct Served {
    input: HopInput,
    entries: Vec<LayerEntry>,
    root: [u8; 32],
    sampled: Vec<u32>,
}

/// Drives sequences (prompt, options; all join at step 0) through `hops`
/// until each ends, keeping every hop's inputs per sequence.
fn serve(hops: &mut [HopBatcher<'_>], jobs: &[(Vec<u32>, HopOptions)]) -> Vec<Vec<Served>> {
    let n = hops.len();
    let mut tokens_in: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut states_in: BTreeMap<(u64, usize), Vec<HiddenStates>> = BTreeMap::new();
    let mut next: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut done: BTreeMap<u64, Vec<Served>> = BTreeMap::new();
    for (key, (prompt, opts)) in jobs.iter().enumerate() {
        for hop in hops.iter_mut() {
            hop.open(key as u64, opts.clone()).unwrap();
        }
        next.insert(key as u64, prompt.clone());
    }
    let mut steps = 0;
    while done.len() < jobs.len() {
        for (key, feed) in std::mem::take(&mut next) {
            tokens_in.entry(key).or_default().extend_from_slice(&feed);
            hops[0].push(key, HopInput::Tokens(feed)).unwrap();
        }
        let mut outputs = hops[0].step().unwrap();
        for (h, hop) in hops.iter_mut().enumerate().skip(1) {
            for (key, out) in outputs {
                let HopOutput::States(x) = out else {
                    panic!("a hop before the last returned a token")
                };
                let wire = x.encode(WireDType::F32).unwrap();
                let x = HiddenStates::decode(&wire, DEFAULT_MAX_HIDDEN_BYTES).unwrap();
                states_in.entry((key, h)).or_default().push(x.clone());
                hop.push(key, HopInput::States(x)).unwrap();
            }
            outputs = hop.step().unwrap();
        }
        for (key, out) in outputs {
            let HopOutput::Token { token, last } = out else {
                panic!("the last hop returned states")
            };
            if !last {
                next.insert(key, vec![token]);
                continue;
            }
            let served = (0..n)
                .map(|h| {
                    let f = hops[h].close(key).unwrap();
                    let tree = f.commitments.unwrap();
                    let input = if h == 0 {
                        HopInput::Tokens(tokens_in[&key].clone())
                    } else {
                        HopInput::States(HiddenStates::concat_rows(&states_in[&(key, h)]).unwrap())
                    };
                    Served {
                        input,
                        entries: tree.entries().to_vec(),
                        root: tree.root(),
                        sampled: f.sampled,
                    }
                })
                .collect();
            done.insert(key, served);
        }
        steps += 1;
        assert!(steps < 200, "the route never finished");
    }
    done.into_values().collect()
}

fn opts(sampling: SamplingParams, sample_offset: u64, max_new: usize) -> HopOptions {
    HopOptions {
        sampling,
        sample_offset,
        stop_tokens: Vec::new(),
        max_new_tokens: max_new,
        record_commitments: true,
        adapter: None,
    }
}

/// Checks every hop of every served sequence against its re-derivation on
/// that hop's own shard.
fn assert_rederived(
    models: &[Model],
    ranges: &[Range<usize>],
    served: &[Vec<Served>],
    params: &[(SamplingParams, u64)],
) {
    for (seq, hops) in served.iter().enumerate() {
        for (h, s) in hops.iter().enumerate() {
            let r = ranges[h].clone();
            let rec = rederive_hop(&models[h], r.clone(), &s.input, None).unwrap();
            assert_eq!(rec.entries(), s.entries, "sequence {seq}, hop {h} ({r:?})");
            let tree = CommitmentTree::for_range(r.start, rec.entries()).unwrap();
            assert_eq!(tree.root(), s.root, "sequence {seq}, hop {h}");
            // Every entry's retained states hash to it (what an opening sends).
            for e in &s.entries {
                let st = rec.states(e.layer as usize).unwrap();
                assert_eq!(st.rows() as u32, e.positions);
                assert_eq!(
                    strata_engine::HiddenHasher::hash(e.layer, &st),
                    e.input_hash
                );
            }
            // The exit states are bit for bit what the next hop received.
            if let Some(HopInput::States(next_in)) = hops.get(h + 1).map(|n| &n.input) {
                let exit = rec.states(r.end).unwrap();
                assert_eq!(exit.as_slice(), next_in.as_slice(), "link {h} -> {}", h + 1);
            }
            if h + 1 == hops.len() {
                // The last hop: token j came from row positions - k + j, with
                // the sampler at step offset + j.
                let finals = rec.states(r.end).unwrap();
                let k = s.sampled.len();
                let (sampling, offset) = params[seq];
                let all: Vec<u32> = (0..k as u32).collect();
                let checks = check_sampling_from(
                    &models[h],
                    &finals,
                    finals.rows() - k,
                    offset,
                    &s.sampled,
                    sampling,
                    &all,
                )
                .unwrap();
                assert!(checks.iter().all(|c| c.passed()), "{checks:?}");
                // The same states at another sampler step do not give them all
                // back (the offset matters for a seeded sampler).
                if sampling.temperature > 0.0 {
                    let shifted = check_sampling_from(
                        &models[h],
                        &finals,
                        finals.rows() - k,
                        offset + 1,
                        &s.sampled,
                        sampling,
                        &all,
                    )
                    .unwrap();
                    assert!(shifted.iter().any(|c| !c.passed()), "seq {seq}");
                }
            }
        }
    }
}

#[test]
fn a_hop_rederives_what_it_served_bit_for_bit() {
    let n = engine().model.n_layers();
    let ranges = vec![0..n / 3, n / 3..2 * n / 3, 2 * n / 3..n];
    let models: Vec<Model> = ranges.iter().cloned().map(shard).collect();
    let mut hops: Vec<HopBatcher<'_>> = models
        .iter()
        .zip(&ranges)
        .map(|(m, r)| HopBatcher::new(m, r.clone()).unwrap())
        .collect();
    // Greedy and seeded, batched together; the third is a failover's
    // continuation (prompt and 4 produced tokens, the sampler at step 4).
    let mut resumed = chat("Tell me a short story about a fox.");
    resumed.extend_from_slice(&[504, 1345, 282, 253]);
    let params = [
        (SamplingParams::greedy(), 0),
        (seeded(7), 0),
        (seeded(23), 4),
    ];
    let jobs = vec![
        (
            chat("Name three rivers in Europe."),
            opts(params[0].0, 0, 9),
        ),
        (chat("Write a haiku about rain."), opts(params[1].0, 0, 7)),
        (resumed, opts(params[2].0, 4, 6)),
    ];
    let served = serve(&mut hops, &jobs);
    assert_rederived(&models, &ranges, &served, &params);
}

#[test]
fn a_two_hop_route_and_bad_inputs() {
    let whole = &engine().model;
    let n = whole.n_layers();
    let ranges = vec![0..7, 7..n];
    let models = vec![shard(0..7), shard(7..n)];
    let mut hops: Vec<HopBatcher<'_>> = models
        .iter()
        .zip(&ranges)
        .map(|(m, r)| HopBatcher::new(m, r.clone()).unwrap())
        .collect();
    let params = [(seeded(99), 0)];
    let served = serve(
        &mut hops,
        &[(chat("What is 12 times 12?"), opts(params[0].0, 0, 5))],
    );
    assert_rederived(&models, &ranges, &served, &params);

    // Refused: the wrong kind of input for the range, empty or misshapen
    // input, a range the shard does not hold.
    let states = |rows: usize, cols: usize| {
        HopInput::States(HiddenStates::new(rows, cols, vec![0.5; rows * cols]).unwrap())
    };
    let hidden = whole.config().hidden_size;
    assert!(rederive_hop(&models[1], 7..n, &HopInput::Tokens(vec![1, 2]), None).is_err());
    assert!(rederive_hop(&models[0], 0..7, &states(2, hidden), None).is_err());
    assert!(rederive_hop(&models[0], 0..7, &HopInput::Tokens(vec![]), None).is_err());
    assert!(rederive_hop(&models[1], 7..n, &states(0, hidden), None).is_err());
    assert!(rederive_hop(&models[1], 7..n, &states(2, hidden + 1), None).is_err());
    assert!(rederive_hop(&models[1], 3..n, &states(2, hidden), None).is_err());
    assert!(rederive_hop(&models[1], 7..7, &states(2, hidden), None).is_err());
}
