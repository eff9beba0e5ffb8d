//! The opening checker with the real model: tasks served by the engine as a
//! node serves them (honestly or in one of the testnet's cheating modes),
//! opened with the node's own `build_opening`, checked as a verifier does.

use std::sync::OnceLock;

use strata_chain::Keypair;
use strata_engine::{
    generate, ChatMessage, Engine, GenerateRequest, HiddenStates, WireDType, DEFAULT_TOLERANCE,
};
use strata_node::archive::TaskRecord;
use strata_node::cheat::Cheat;
use strata_node::openings::build_opening;
use strata_node::openings::sampling_params;
use strata_verifier::check::{check_opening, work_digest, Checked};
use strata_wire::audit::{AuditOutcome, FailedCheck, TaskOpening};
use strata_wire::{parse_hex32, Sampling};

use crate::support::receipt;

/// Layers the tests audit: an even and an odd layer, the first and the last.
const LAYERS: [u32; 4] = [0, 3, 12, 29];
/// Output steps whose sampling is re-checked.
const STEPS: [u32; 4] = [0, 2, 5, 7];
/// Tokens each task generates.
const MAX_NEW: usize = 8;

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

fn sampled() -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        seed: 4242,
    }
}

/// Serves `question` as a node in `cheat` mode would, and archives it.
fn serve(question: &str, task: u8, sampling: Sampling, cheat: Option<Cheat>) -> TaskRecord {
    let e = engine();
    let m = &e.model;
    let prompt = e
        .chat_prompt(&[ChatMessage::new("user", question)])
        .unwrap();
    let used = cheat.map_or(sampling, |c| c.sampling(sampling));
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_new_tokens: MAX_NEW,
        sampling: sampling_params(&used),
        stop_tokens: Vec::new(),
        record_commitments: true,
        retain_states: false,
        tamper: cheat.and_then(|c| c.tamper(m.n_layers())),
        logprobs: None,
        adapter: None,
    };
    let done = generate(m, req).unwrap();
    let mut root = done.commitments.as_ref().unwrap().root();
    if cheat == Some(Cheat::WrongRoot) {
        root[0] ^= 0xff;
    }
    let node = Keypair::new();
    let receipt = receipt(
        &node,
        [task; 32],
        model_hash(),
        &prompt,
        &done.tokens,
        root,
        sampling,
    );
    TaskRecord {
        receipt,
        prompt,
        output: done.tokens,
    }
}

/// What the node answers (replaying its cheat's tampering, as it does).
fn open(record: &TaskRecord, cheat: Option<Cheat>) -> TaskOpening {
    let tamper = cheat.and_then(|c| c.tamper(engine().model.n_layers()));
    build_opening(&engine().model, record, &LAYERS, tamper)
        .unwrap()
        .0
}

fn check(record: &TaskRecord, opening: &TaskOpening) -> Checked {
    check_opening(
        &engine().model,
        &model_hash(),
        &record.receipt.body,
        &LAYERS,
        &STEPS,
        opening,
    )
}

fn failed(c: &Checked) -> FailedCheck {
    match &c.outcome {
        AuditOutcome::Failed { check, .. } => *check,
        AuditOutcome::Passed => panic!("expected a failure, the audit passed"),
    }
}

fn honest() -> &'static (TaskRecord, TaskOpening) {
    static HONEST: OnceLock<(TaskRecord, TaskOpening)> = OnceLock::new();
    HONEST.get_or_init(|| {
        let record = serve("Name three rivers.", 1, sampled(), None);
        let opening = open(&record, None);
        (record, opening)
    })
}

/// Re-encodes the states of entry `index` after `f` changed them.
fn edit_states(opening: &mut TaskOpening, index: u32, f: impl FnOnce(&mut [f32])) {
    let entry = opening
        .entries
        .iter_mut()
        .find(|e| e.index == index)
        .unwrap();
    let bytes = entry.states.as_ref().unwrap();
    let states = HiddenStates::decode(bytes, usize::MAX).unwrap();
    let (rows, cols) = (states.rows(), states.cols());
    let mut data = states.into_vec();
    f(&mut data);
    let edited = HiddenStates::new(rows, cols, data).unwrap();
    entry.states = Some(edited.encode(WireDType::F32).unwrap());
}

#[test]
fn honest_work_passes_with_the_digest_of_the_work() {
    let (record, opening) = honest();
    let c = check(record, opening);
    assert_eq!(c.outcome, AuditOutcome::Passed, "{c:?}");
    assert!(c.max_rel_dev <= DEFAULT_TOLERANCE.max_rel_dev);
    assert!(
        c.cpu_micros > 0,
        "the checking thread's CPU time is measured"
    );

    // The work digest is blake3 over each re-run layer's own digest, and
    // any verifier re-running the same layers gets the same one.
    let m = &engine().model;
    let states = |i: u32| {
        let e = opening.entries.iter().find(|e| e.index == i).unwrap();
        HiddenStates::decode(e.states.as_ref().unwrap(), usize::MAX).unwrap()
    };
    let digests: Vec<[u8; 32]> = LAYERS
        .iter()
        .map(|&l| m.rerun_layer(l as usize, &states(l)).unwrap().work_digest)
        .collect();
    assert_eq!(c.work_digest, work_digest(&digests));
    assert_eq!(check(record, opening).work_digest, c.work_digest);
    assert_ne!(c.work_digest, work_digest(&digests[..3]));
}

#[test]
fn a_tampered_state_fails_its_opening() {
    let (record, opening) = honest();
    let mut o = opening.clone();
    edit_states(&mut o, 13, |d| d[5] += 0.5);
    let c = check(record, &o);
    assert_eq!(failed(&c), FailedCheck::Opening, "{c:?}");
}

#[test]
fn a_wrong_root_fails_the_openings() {
    let record = serve(
        "What is the capital of France?",
        2,
        sampled(),
        Some(Cheat::WrongRoot),
    );
    let c = check(&record, &open(&record, Some(Cheat::WrongRoot)));
    assert_eq!(failed(&c), FailedCheck::Opening, "{c:?}");
}

#[test]
fn a_skipped_layer_fails_its_re_run() {
    let record = serve("Describe a cat.", 3, sampled(), Some(Cheat::SkipLayers));
    let c = check(&record, &open(&record, Some(Cheat::SkipLayers)));
    // Layer 0 runs honestly; layer 3 passed its input through.
    assert_eq!(failed(&c), FailedCheck::Layer(3), "{c:?}");
    assert!(c.max_rel_dev > DEFAULT_TOLERANCE.max_rel_dev);
    let noisy = serve("Describe a dog.", 4, sampled(), Some(Cheat::Noise));
    let c = check(&noisy, &open(&noisy, Some(Cheat::Noise)));
    assert_eq!(failed(&c), FailedCheck::Layer(0), "{c:?}");
}

#[test]
fn junk_tokens_fail_the_sampling_re_check() {
    let record = serve("Count to ten.", 5, sampled(), Some(Cheat::JunkTokens));
    let c = check(&record, &open(&record, Some(Cheat::JunkTokens)));
    assert!(matches!(failed(&c), FailedCheck::Sampling(_)), "{c:?}");
    // Every layer was honest: the re-runs were all done before.
    assert_eq!(c.max_rel_dev, 0.0);
}

#[test]
fn a_forged_opening_fails() {
    let (record, opening) = honest();
    // A byte of a committed sketch changed in transit.
    let mut o = opening.clone();
    let e = o.entries.iter_mut().find(|e| e.index == 3).unwrap();
    let last = e.opening.len() - 1;
    e.opening[last] ^= 0x01;
    assert_eq!(failed(&check(record, &o)), FailedCheck::Opening);
    // Garbage in place of an opening or of states.
    let mut o = opening.clone();
    o.entries[0].opening = vec![0xff; 7];
    assert_eq!(failed(&check(record, &o)), FailedCheck::Opening);
    let mut o = opening.clone();
    let e = o.entries.iter_mut().find(|e| e.states.is_some()).unwrap();
    e.states = Some(b"SHS1junk".to_vec());
    assert_eq!(failed(&check(record, &o)), FailedCheck::Opening);
    // An entry left out, entries out of order.
    let mut o = opening.clone();
    o.entries.retain(|e| e.index != 30);
    assert_eq!(failed(&check(record, &o)), FailedCheck::Opening);
    let mut o = opening.clone();
    o.entries.swap(1, 2);
    assert_eq!(failed(&check(record, &o)), FailedCheck::Opening);
    // The output extended by a token the receipt does not bill.
    let mut o = opening.clone();
    o.output.push(1);
    assert_eq!(failed(&check(record, &o)), FailedCheck::Tokens);
}

#[test]
fn an_opening_for_another_task_fails() {
    let (record, _) = honest();
    let other = serve("Say hello.", 6, sampled(), None);
    let c = check(record, &open(&other, None));
    assert_eq!(failed(&c), FailedCheck::Tokens, "{c:?}");
    assert_eq!(c.work_digest, work_digest(&[]), "nothing re-run");
}

#[test]
fn a_receipt_for_another_model_is_not_judged() {
    let (record, opening) = honest();
    let c = check_opening(
        &engine().model,
        &[0; 32],
        &record.receipt.body,
        &LAYERS,
        &STEPS,
        opening,
    );
    assert_eq!(failed(&c), FailedCheck::UnknownModel);
}

#[test]
fn greedy_tasks_pass_too() {
    let record = serve("What is rust?", 7, crate::support::greedy(), None);
    let c = check(&record, &open(&record, None));
    assert_eq!(c.outcome, AuditOutcome::Passed, "{c:?}");
}
