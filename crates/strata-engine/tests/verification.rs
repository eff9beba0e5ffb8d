//! Commitments and layer re-checks with the real model: honest work passes,
//! tampered work fails (a small version of `engine-bench --bin calibrate`).

mod common;

use common::{chat, engine};
use strata_engine::{
    check_layer, verify_layer_opening, Batcher, GenerateRequest, HiddenStates, DEFAULT_TOLERANCE,
};

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
