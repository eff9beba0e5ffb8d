//! Range-aware audits of pipeline hops with the real model: a task served
//! by three hops ([`HopBatcher`], blocks 0..10, 10..20, 20..30), each hop's
//! version-3 receipt signed as its node signs it, its record archived, its
//! opening built by the node's own `build_hop_opening` and checked as a
//! verifier does. Honest hops pass (head, middle, last; greedy, seeded, and
//! after a failover's sampler offset); a hop that served garbage fails, by
//! the check that catches it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use strata_chain::{Keypair, Signer};
use strata_engine::{
    rederive_hop, ChatMessage, CommitmentTree, Engine, HiddenStates, HopBatcher, HopInput,
    HopOptions, HopOutput, LayerTamper, WireDType,
};
use strata_node::archive::{HopInput as Received, HopRecord};
use strata_node::cheat::Cheat;
use strata_node::openings::{build_hop_opening, sampling_params};
use strata_verifier::check::{check_opening, Checked};
use strata_wire::audit::{AuditOutcome, FailedCheck, TaskOpening};
use strata_wire::receipt::HOP_RECEIPT_VERSION;
use strata_wire::{
    hop_task_id, parse_hex32, tokens_hash, HopPart, Receipt, ReceiptBody, Sampling, Voucher,
};

/// The route's blocks.
const RANGES: [Range<usize>; 3] = [0..10, 10..20, 20..30];
/// Layers each hop's audit re-runs (as a plan draws them: inside its blocks).
const LAYERS: [&[u32]; 3] = [&[0, 3, 9], &[10, 13, 19], &[20, 24, 29]];
/// Output steps the last hop's audit re-samples.
const STEPS: [u32; 3] = [0, 2, 5];
/// Tokens the last hop samples.
const MAX_NEW: usize = 7;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| match Engine::load_default() {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    })
}

fn model_hash() -> [u8; 32] {
    parse_hex32(strata_engine::DEFAULT_MODEL_SHA256).unwrap()
}

fn seeded() -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        seed: 4242,
    }
}

/// One served hop: what its node archives.
#[derive(Clone)]
struct Hop {
    record: HopRecord,
    node: Arc<Keypair>,
}

/// Serves `prompt` (a failover's continuation when `sample_offset > 0`)
/// through the three hops, as their nodes would, and returns each hop's
/// signed receipt and archive record.
fn serve(prompt: Vec<u32>, sampling: Sampling, sample_offset: u32, task: u8) -> Vec<Hop> {
    let model = &engine().model;
    let n = model.n_layers();
    assert_eq!(RANGES[2].end, n, "the tests assume a 30-block model");
    let mut hops: Vec<HopBatcher<'_>> = RANGES
        .iter()
        .map(|r| HopBatcher::new(model, r.clone()).unwrap())
        .collect();
    let opts = HopOptions {
        sampling: sampling_params(&sampling),
        sample_offset: u64::from(sample_offset),
        stop_tokens: Vec::new(),
        max_new_tokens: MAX_NEW,
        record_commitments: true,
        adapter: None,
    };
    for hop in hops.iter_mut() {
        hop.open(1, opts.clone()).unwrap();
    }
    let mut tokens_in = Vec::new();
    let mut states_in: BTreeMap<usize, Vec<HiddenStates>> = BTreeMap::new();
    let mut feed = prompt.clone();
    loop {
        tokens_in.extend_from_slice(&feed);
        hops[0].push(1, HopInput::Tokens(feed.clone())).unwrap();
        let mut out = hops[0].step().unwrap();
        for (h, hop) in hops.iter_mut().enumerate().skip(1) {
            let Some((_, HopOutput::States(x))) = out.pop() else {
                panic!("no states from hop {}", h - 1)
            };
            let wire = x.encode(WireDType::F32).unwrap();
            let x = HiddenStates::decode(&wire, usize::MAX).unwrap();
            states_in.entry(h).or_default().push(x.clone());
            hop.push(1, HopInput::States(x)).unwrap();
            out = hop.step().unwrap();
        }
        let Some((_, HopOutput::Token { token, last })) = out.pop() else {
            panic!("no token from the last hop")
        };
        if last {
            break;
        }
        feed = vec![token];
    }
    let task_id = [task; 32];
    let client = Keypair::new();
    let finished: Vec<_> = hops.iter_mut().map(|h| h.close(1).unwrap()).collect();
    let sampled = finished[2].sampled.clone();
    let nodes: Vec<Arc<Keypair>> = (0..3).map(|_| Arc::new(Keypair::new())).collect();
    (0..3)
        .map(|i| {
            let f = &finished[i];
            let tree = f.commitments.as_ref().unwrap();
            let entries = tree.entries();
            let r = &RANGES[i];
            let node = &nodes[i];
            let hop = HopPart {
                task_id,
                segment: 0,
                index: i as u8,
                count: 3,
                start: r.start as u16,
                end: r.end as u16,
                n_layers: n as u16,
                positions: f.positions as u32,
                cells: (f.positions * r.len()) as u64,
                sample_offset,
                input_states: entries[0].input_hash,
                output_states: entries[entries.len() - 1].input_hash,
                prev: if i > 0 {
                    nodes[i - 1].pubkey().to_bytes()
                } else {
                    [0; 32]
                },
                next: if i < 2 {
                    nodes[i + 1].pubkey().to_bytes()
                } else {
                    [0; 32]
                },
            };
            let (head, last) = (i == 0, i == 2);
            let body = ReceiptBody {
                version: HOP_RECEIPT_VERSION,
                task_id: hop_task_id(&task_id, 0, i as u8, &node.pubkey().to_bytes()),
                node: node.pubkey().to_bytes(),
                model_hash: model_hash(),
                input_hash: if head { tokens_hash(&prompt) } else { [0; 32] },
                output_hash: if last { tokens_hash(&sampled) } else { [0; 32] },
                prompt_tokens: if head { prompt.len() as u32 } else { 0 },
                completion_tokens: if last { sampled.len() as u32 } else { 0 },
                commitment_root: tree.root(),
                sampling,
                price: 10,
                voucher: Voucher::sign(&client, &node.pubkey(), 10),
                finished_at_ms: 1_700_000_000_000,
                hop: Some(hop),
                adapter: None,
            };
            let receipt = Receipt::sign(node, body).unwrap();
            receipt.verify().unwrap();
            let input = if head {
                Received::Tokens(tokens_in.clone())
            } else {
                let all = HiddenStates::concat_rows(&states_in[&i]).unwrap();
                Received::States(all.encode(WireDType::F32).unwrap())
            };
            Hop {
                record: HopRecord {
                    receipt,
                    input,
                    sampled: if last { sampled.clone() } else { Vec::new() },
                },
                node: node.clone(),
            }
        })
        .collect()
}

fn honest() -> &'static Vec<Hop> {
    static HONEST: OnceLock<Vec<Hop>> = OnceLock::new();
    HONEST.get_or_init(|| {
        let e = engine();
        let prompt = e
            .chat_prompt(&[ChatMessage::new("user", "Name three rivers.")])
            .unwrap();
        serve(prompt, seeded(), 0, 1)
    })
}

fn open(hop: &Hop, i: usize, tamper: Option<Arc<dyn LayerTamper>>) -> (TaskOpening, [u8; 32]) {
    build_hop_opening(&engine().model, &hop.record, LAYERS[i], tamper).unwrap()
}

fn steps(i: usize) -> &'static [u32] {
    if i == 2 {
        &STEPS
    } else {
        &[]
    }
}

fn check(body: &ReceiptBody, i: usize, opening: &TaskOpening) -> Checked {
    check_opening(
        &engine().model,
        &model_hash(),
        body,
        LAYERS[i],
        steps(i),
        opening,
    )
}

fn failed(c: &Checked) -> FailedCheck {
    match &c.outcome {
        AuditOutcome::Failed { check, .. } => *check,
        AuditOutcome::Passed => panic!("expected a failure, the audit passed"),
    }
}

/// Re-signs `hop`'s receipt after `edit` (a cheating node signs what it likes).
fn resign(hop: &Hop, edit: impl FnOnce(&mut ReceiptBody)) -> ReceiptBody {
    let mut body = hop.record.receipt.body.clone();
    edit(&mut body);
    Receipt::sign(&hop.node, body).unwrap().body
}

#[test]
fn honest_hops_pass_their_range_audits() {
    for (i, hop) in honest().iter().enumerate() {
        let (opening, root) = open(hop, i, None);
        // The node's re-derivation reaches the root it signed.
        assert_eq!(root, hop.record.receipt.body.commitment_root, "hop {i}");
        let c = check(&hop.record.receipt.body, i, &opening);
        assert_eq!(c.outcome, AuditOutcome::Passed, "hop {i}: {c:?}");
        assert_eq!(c.max_rel_dev, 0.0, "hop {i}");
        // Only the layers asked, inside the hop's blocks, and its two ends.
        let r = &RANGES[i];
        assert!(opening
            .entries
            .iter()
            .all(|e| (r.start as u32..=r.end as u32).contains(&e.index)));
        // The head sends its prompt; the middle sends no tokens.
        match i {
            0 => assert_eq!(
                opening.prompt.len() as u32,
                hop.record.receipt.body.prompt_tokens
            ),
            1 => assert!(opening.prompt.is_empty() && opening.output.is_empty()),
            _ => assert_eq!(opening.output, hop.record.sampled),
        }
    }
}

#[test]
fn greedy_and_failover_hops_pass_and_the_offset_matters() {
    let e = engine();
    let prompt = e
        .chat_prompt(&[ChatMessage::new("user", "Write a haiku about rain.")])
        .unwrap();
    for (i, hop) in serve(prompt.clone(), strata_wire::Sampling::GREEDY, 0, 2)
        .iter()
        .enumerate()
    {
        let c = check(&hop.record.receipt.body, i, &open(hop, i, None).0);
        assert_eq!(c.outcome, AuditOutcome::Passed, "greedy hop {i}: {c:?}");
    }
    // A failover's continuation: prompt and 4 produced tokens re-prefilled,
    // the sampler at step 4.
    let resumed = [prompt, vec![504, 1345, 282, 253]].concat();
    let hops = serve(resumed, seeded(), 4, 3);
    for (i, hop) in hops.iter().enumerate() {
        let c = check(&hop.record.receipt.body, i, &open(hop, i, None).0);
        assert_eq!(c.outcome, AuditOutcome::Passed, "resumed hop {i}: {c:?}");
    }
    // The same tokens claimed as sampled from step 0: they do not follow.
    let last = &hops[2];
    let body = resign(last, |b| b.hop.as_mut().unwrap().sample_offset = 0);
    let c = check(&body, 2, &open(last, 2, None).0);
    assert!(matches!(failed(&c), FailedCheck::Sampling(_)), "{c:?}");
}

#[test]
fn a_hop_that_skipped_layers_fails_its_re_run() {
    // The middle hop passed odd blocks' inputs through: it committed (and
    // signed) what it computed, and its audit re-runs block 13.
    let hop = &honest()[1];
    let model = &engine().model;
    let tamper = Cheat::SkipLayers.tamper(model.n_layers());
    let Received::States(bytes) = &hop.record.input else {
        panic!("the middle hop received states")
    };
    let input = HopInput::States(HiddenStates::decode(bytes, usize::MAX).unwrap());
    let rec = rederive_hop(model, RANGES[1].clone(), &input, tamper.clone()).unwrap();
    let tree = CommitmentTree::for_range(10, rec.entries()).unwrap();
    let entries = tree.entries();
    let body = resign(hop, |b| {
        b.commitment_root = tree.root();
        b.hop.as_mut().unwrap().output_states = entries[entries.len() - 1].input_hash;
    });
    let cheater = Hop {
        record: HopRecord {
            receipt: Receipt::sign(&hop.node, body.clone()).unwrap(),
            ..hop.record.clone()
        },
        node: hop.node.clone(),
    };
    let (opening, root) = open(&cheater, 1, tamper);
    assert_eq!(root, body.commitment_root);
    let c = check(&body, 1, &opening);
    // Block 10 ran honestly; block 13 passed its input through.
    assert_eq!(failed(&c), FailedCheck::Layer(13), "{c:?}");
}

#[test]
fn tampered_hop_openings_fail_by_check() {
    let hops = honest();
    let edit_states = |opening: &mut TaskOpening, index: u32| {
        let e = opening
            .entries
            .iter_mut()
            .find(|e| e.index == index)
            .unwrap();
        let s = HiddenStates::decode(e.states.as_ref().unwrap(), usize::MAX).unwrap();
        let (rows, cols) = (s.rows(), s.cols());
        let mut data = s.into_vec();
        data[7] += 0.5;
        let s = HiddenStates::new(rows, cols, data).unwrap();
        e.states = Some(s.encode(WireDType::F32).unwrap());
    };
    // Wrong states at one layer: they no longer hash to the committed entry.
    let (mut o, _) = open(&hops[1], 1, None);
    edit_states(&mut o, 14);
    let c = check(&hops[1].record.receipt.body, 1, &o);
    assert_eq!(failed(&c), FailedCheck::Opening, "{c:?}");

    // A wrong sampled token at the last hop (signed in its receipt and sent).
    let last = &hops[2];
    let mut sampled = last.record.sampled.clone();
    sampled[2] = (sampled[2] + 1) % 1000;
    let body = resign(last, |b| b.output_hash = tokens_hash(&sampled));
    let (mut o, _) = open(last, 2, None);
    o.output = sampled;
    let c = check(&body, 2, &o);
    assert_eq!(failed(&c), FailedCheck::Sampling(2), "{c:?}");

    // A head whose committed entry 0 is not the embedding of the prompt it
    // signed: it ran another prompt (one token changed) and claims this one.
    let head = &hops[0];
    let (mut o, _) = open(head, 0, None);
    o.prompt[3] = (o.prompt[3] + 1) % 1000;
    let claimed = o.prompt.clone();
    let body = resign(head, |b| b.input_hash = tokens_hash(&claimed));
    let c = check(&body, 0, &o);
    assert_eq!(failed(&c), FailedCheck::Embedding, "{c:?}");

    // A hop whose receipt links to states other than those it committed.
    for (i, hop) in hops.iter().enumerate() {
        let (o, _) = open(hop, i, None);
        let body = resign(hop, |b| b.hop.as_mut().unwrap().input_states[0] ^= 1);
        assert_eq!(
            failed(&check(&body, i, &o)),
            FailedCheck::Opening,
            "hop {i} input"
        );
        let body = resign(hop, |b| b.hop.as_mut().unwrap().output_states[0] ^= 1);
        assert_eq!(
            failed(&check(&body, i, &o)),
            FailedCheck::Opening,
            "hop {i} output"
        );
    }

    // A hop opening entries outside its tree, or a tree of another size.
    let (mut o, _) = open(&hops[1], 1, None);
    let whole = open(&hops[0], 0, None).0;
    o.entries.insert(0, whole.entries[0].clone());
    assert_eq!(
        failed(&check(&hops[1].record.receipt.body, 1, &o)),
        FailedCheck::Opening
    );
    // Its positions are the receipt's: a middle hop claiming more fails.
    let body = resign(&hops[1], |b| b.hop.as_mut().unwrap().positions += 1);
    let c = check(&body, 1, &open(&hops[1], 1, None).0);
    assert_eq!(failed(&c), FailedCheck::Tokens, "{c:?}");
    // A middle hop that sends tokens, a last hop with the wrong output.
    let (mut o, _) = open(&hops[1], 1, None);
    o.output = vec![1];
    assert_eq!(
        failed(&check(&hops[1].record.receipt.body, 1, &o)),
        FailedCheck::Tokens
    );
    let (mut o, _) = open(last, 2, None);
    o.output.pop();
    assert_eq!(
        failed(&check(&last.record.receipt.body, 2, &o)),
        FailedCheck::Tokens
    );
    // The exit states of the last hop are needed to re-sample.
    let (mut o, _) = open(last, 2, None);
    o.entries.last_mut().unwrap().states = None;
    assert_eq!(
        failed(&check(&last.record.receipt.body, 2, &o)),
        FailedCheck::Opening
    );
}

#[test]
fn a_plan_outside_the_hop_is_the_verifiers_own_mistake() {
    // Never the node's fault: no challenge follows an `UnknownModel`.
    let hop = &honest()[1];
    let (o, _) = open(hop, 1, None);
    let c = check_opening(
        &engine().model,
        &model_hash(),
        &hop.record.receipt.body,
        &[3],
        &[],
        &o,
    );
    assert_eq!(failed(&c), FailedCheck::UnknownModel, "{c:?}");
    // And the node refuses to open layers outside its blocks.
    assert!(build_hop_opening(&engine().model, &hop.record, &[3], None).is_err());
    assert!(build_hop_opening(&engine().model, &hop.record, &[20], None).is_err());
}

#[test]
fn a_node_holding_only_its_shard_opens_its_hop() {
    // What the hop's node loads (`Engine::load_shard`): its blocks, with the
    // embedding for the head and the head for the last.
    let path = strata_engine::default_model_path().unwrap();
    for (i, hop) in honest().iter().enumerate() {
        let shard = strata_engine::Model::load_shard(
            &path,
            &strata_engine::Shard::Layers(RANGES[i].clone()),
        )
        .unwrap();
        let (opening, root) = build_hop_opening(&shard, &hop.record, LAYERS[i], None).unwrap();
        assert_eq!(root, hop.record.receipt.body.commitment_root, "hop {i}");
        assert_eq!(opening, open(hop, i, None).0, "hop {i}");
        let c = check(&hop.record.receipt.body, i, &opening);
        assert_eq!(c.outcome, AuditOutcome::Passed, "hop {i}: {c:?}");
    }
    // Another hop's blocks are not loaded: refused, not wrong.
    let shard =
        strata_engine::Model::load_shard(&path, &strata_engine::Shard::Layers(RANGES[0].clone()))
            .unwrap();
    assert!(build_hop_opening(&shard, &honest()[1].record, LAYERS[1], None).is_err());
}
