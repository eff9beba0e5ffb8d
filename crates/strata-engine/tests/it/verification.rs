//! Commitments and layer re-checks with the real model: honest work passes,
//! tampered work fails (a small version of `engine-bench --bin calibrate`).

use strata_engine::{
    check_embedding, check_layer, check_sampling, rederive, verify_layer_opening, Batcher,
    CommitmentTree, GenerateRequest, HiddenStates, LayerTamper, DEFAULT_TOLERANCE,
};

use crate::common::{chat, engine};

fn committed_run(prompt: Vec<u32>, with_others: bool) -> strata_engine::Finished {
    let m = &engine().model;
    let mut b = Batcher::new(m);
    let mut req = GenerateRequest::greedy(prompt, 8);
    req.record_commitments = true;
    req.retain_states = true;
    if with_others {
        b.add(GenerateRequest::greedy(chat("Say hello."), 5))
            .unwrap();
        b.step().unwrap();
    }
    let id = b.add(req).unwrap();
    if with_others {
        b.add(GenerateRequest::greedy(chat("Count to five."), 9))
            .unwrap();
    }
    let done = b.run_to_completion().unwrap();
    done.into_iter().find(|f| f.id == id).unwrap()
}

#[test]
fn commitment_root_is_independent_of_batching() {
    let p = chat("What is the tallest mountain?");
    let a = committed_run(p.clone(), false);
    let b = committed_run(p, true);
    assert_eq!(a.tokens, b.tokens);
    let (ra, rb) = (a.commitments.unwrap().root(), b.commitments.unwrap().root());
    assert_eq!(ra, rb, "honest executions must commit to the same root");
}

#[test]
fn honest_layers_pass_and_tampered_layers_fail() {
    let m = &engine().model;
    let f = committed_run(chat("Describe a cat."), true);
    let tree = f.commitments.as_ref().unwrap();
    let rec = f.recorder.as_ref().unwrap();
    let root = tree.root();
    let n = m.n_layers();
    for layer in [0, 7, 15, 29] {
        let input = rec.states(layer).unwrap();
        let output = rec.states(layer + 1).unwrap();
        let (oi, oo) = (tree.open(layer).unwrap(), tree.open(layer + 1).unwrap());
        let honest =
            verify_layer_opening(m, &root, &oi, &input, &oo, &output, DEFAULT_TOLERANCE).unwrap();
        assert!(honest.passed, "honest layer {layer} failed: {honest:?}");

        // Skipped layer: the output claimed is the input.
        let skipped = check_layer(m, layer, &input, &input, None, DEFAULT_TOLERANCE).unwrap();
        assert!(!skipped.passed, "skipped layer {layer} passed");
        // Another layer's weights.
        let other = m.run_layer_fresh((layer + 1) % n, &input).unwrap();
        let wrong = check_layer(m, layer, &input, &other, None, DEFAULT_TOLERANCE).unwrap();
        assert!(!wrong.passed, "wrong weights at layer {layer} passed");
        // 1 % of the activations perturbed.
        let mut data = output.as_slice().to_vec();
        let cols = output.cols();
        for (i, v) in data.iter_mut().enumerate() {
            if i % 100 == 37 {
                let row = &output.as_slice()[(i / cols) * cols..(i / cols + 1) * cols];
                let rms = (row.iter().map(|x| x * x).sum::<f32>() / cols as f32).sqrt();
                *v += rms * if i % 200 == 37 { 1.0 } else { -1.0 };
            }
        }
        let perturbed = HiddenStates::new(output.rows(), cols, data).unwrap();
        let bad = check_layer(m, layer, &input, &perturbed, None, DEFAULT_TOLERANCE).unwrap();
        assert!(!bad.passed, "perturbed output at layer {layer} passed");
        // An opening whose states do not hash to the commitment is refused.
        assert!(
            verify_layer_opening(m, &root, &oi, &input, &oo, &perturbed, DEFAULT_TOLERANCE)
                .is_err()
        );
    }
}

/// The prompt followed by every generated token but the last: the positions
/// a task's commitments cover.
fn positions(prompt: &[u32], output: &[u32]) -> Vec<u32> {
    let mut p = prompt.to_vec();
    p.extend_from_slice(&output[..output.len().saturating_sub(1)]);
    p
}

#[test]
fn a_node_rederives_the_states_it_committed_to_while_serving() {
    // Served incrementally, batched behind and before other sequences, with
    // sampling; re-derived later in one prefill pass: the same root.
    let m = &engine().model;
    let prompt = chat("Name three rivers.");
    let sampling = strata_engine::SamplingParams {
        temperature: 0.9,
        top_k: 50,
        top_p: 0.95,
        seed: 1234,
    };
    let mut b = Batcher::new(m);
    b.add(GenerateRequest::greedy(chat("Say hello."), 6))
        .unwrap();
    b.step().unwrap();
    let mut req = GenerateRequest::greedy(prompt.clone(), 12);
    req.sampling = sampling;
    req.record_commitments = true;
    let id = b.add(req).unwrap();
    b.add(GenerateRequest::greedy(chat("Count to five."), 3))
        .unwrap();
    let served = b
        .run_to_completion()
        .unwrap()
        .into_iter()
        .find(|f| f.id == id)
        .unwrap();
    let root = served.commitments.as_ref().unwrap().root();
    let pos = positions(&prompt, &served.tokens);
    let recorder = rederive(m, &pos, None).unwrap();
    let tree = CommitmentTree::new(recorder.entries()).unwrap();
    assert_eq!(
        tree.root(),
        root,
        "re-derived states must match the receipt's root"
    );

    // The verifier's end checks pass on the honest task...
    let entry0 = tree.open(0).unwrap().entry;
    assert!(check_embedding(m, &pos, &entry0.input_hash).unwrap());
    let final_states = recorder.states(m.n_layers()).unwrap();
    let steps: Vec<u32> = (0..served.tokens.len() as u32).collect();
    let checks = check_sampling(
        m,
        &final_states,
        prompt.len(),
        &served.tokens,
        sampling,
        &steps,
    )
    .unwrap();
    assert!(checks.iter().all(|c| c.passed()), "{checks:?}");
    // ...and catch a changed token, at the embedding and at the sampling.
    let mut junk = served.tokens.clone();
    junk[3] = (junk[3] + 1) % 1000;
    assert!(!check_embedding(m, &positions(&prompt, &junk), &entry0.input_hash).unwrap());
    let checks = check_sampling(m, &final_states, prompt.len(), &junk, sampling, &[3]).unwrap();
    assert!(!checks[0].passed());
    // Sampled with parameters other than the ones claimed: caught too.
    let claimed = strata_engine::SamplingParams::greedy();
    let checks = check_sampling(
        m,
        &final_states,
        prompt.len(),
        &served.tokens,
        claimed,
        &steps,
    )
    .unwrap();
    assert!(checks.iter().any(|c| !c.passed()));
}

#[test]
fn a_work_digest_needs_the_work_and_is_the_same_for_everyone() {
    let m = &engine().model;
    let f = committed_run(chat("Describe a dog."), false);
    let rec = f.recorder.as_ref().unwrap();
    let input = rec.states(11).unwrap();
    let a = m.rerun_layer(11, &input).unwrap();
    let b = m.rerun_layer(11, &input).unwrap();
    assert_eq!(a.work_digest, b.work_digest);
    assert_eq!(
        a.output,
        rec.states(12).unwrap(),
        "re-run equals the committed output"
    );
    let other = m.rerun_layer(12, &input).unwrap();
    assert_ne!(a.work_digest, other.work_digest);
    let check = check_layer(m, 11, &input, &a.output, None, DEFAULT_TOLERANCE).unwrap();
    assert_eq!(check.work_digest, a.work_digest);
}

/// Every odd layer passes its input through: what a node skipping half the
/// work would commit to.
#[derive(Debug)]
struct SkipOdd;

impl LayerTamper for SkipOdd {
    fn tamper(&self, layer: usize, input: &[f32], output: &mut [f32]) {
        if layer % 2 == 1 {
            output.copy_from_slice(input);
        }
    }
}

#[test]
fn a_tampered_run_commits_to_states_that_fail_their_layer_checks() {
    let m = &engine().model;
    let prompt = chat("What is rust?");
    let mut req = GenerateRequest::greedy(prompt.clone(), 6);
    req.record_commitments = true;
    req.retain_states = true;
    req.tamper = Some(std::sync::Arc::new(SkipOdd));
    let f = strata_engine::generate(m, req).unwrap();
    let rec = f.recorder.as_ref().unwrap();
    for layer in [0, 1, 2, 3, 28, 29] {
        let (input, output) = (rec.states(layer).unwrap(), rec.states(layer + 1).unwrap());
        let check = check_layer(m, layer, &input, &output, None, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(check.passed, layer % 2 == 0, "layer {layer}: {check:?}");
    }
    // An honest re-derivation of the same tokens does not reach its root;
    // replaying the tampering does (what the cheater answers openings with).
    let pos = positions(&prompt, &f.tokens);
    let root = f.commitments.unwrap().root();
    let honest = rederive(m, &pos, None).unwrap();
    assert_ne!(CommitmentTree::new(honest.entries()).unwrap().root(), root);
    let replayed = rederive(m, &pos, Some(std::sync::Arc::new(SkipOdd))).unwrap();
    assert_eq!(
        CommitmentTree::new(replayed.entries()).unwrap().root(),
        root
    );
}
