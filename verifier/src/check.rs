//! The audit itself: checking a node's [`TaskOpening`] against its signed
//! receipt with the real model. Pure and synchronous (the service runs it on
//! a blocking thread), so tests drive it directly with openings built by the
//! node's own code.
//!
//! The checks run in a fixed order and stop at the first failure, so two
//! verifiers given the same opening report the same [`FailedCheck`]:
//!
//! 1. the receipt's model is the one this verifier loaded (otherwise it
//!    cannot judge: [`FailedCheck::UnknownModel`], never a challenge);
//! 2. the tokens hash to the receipt's prompt and output hashes and match
//!    its counts;
//! 3. every opened entry decodes, sits at its own index, leads to the
//!    receipt's commitment root, covers every committed position, and its
//!    states hash to the entry;
//! 4. entry 0 is the embedding of the tokens;
//! 5. each audited layer, re-run over all positions, gives the next entry's
//!    states and the committed sketch within [`DEFAULT_TOLERANCE`];
//! 6. the audited output steps are what the committed final states and the
//!    receipt's sampling settings give.

use std::collections::BTreeMap;

use strata_engine::{
    check_embedding, check_layer, check_sampling, HiddenHasher, HiddenStates, Model, Opening,
    DEFAULT_MAX_HIDDEN_BYTES, DEFAULT_TOLERANCE, MAX_ENTRY_BYTES,
};
use strata_node::openings::sampling_params;
use strata_wire::audit::{AuditOutcome, FailedCheck, TaskOpening};
use strata_wire::{tokens_hash, ReceiptBody};

/// What checking one opening found, ready for an audit report.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Passed, or the first check that failed.
    pub outcome: AuditOutcome,
    /// [`work_digest`] over the layers re-run before the outcome was known.
    pub work_digest: [u8; 32],
    /// Largest relative deviation over the layers re-run.
    pub max_rel_dev: f32,
    /// CPU time the checking thread spent, microseconds.
    pub cpu_micros: u64,
}

impl Checked {
    /// A failed audit without any work done (nothing to re-run).
    pub fn failed(check: FailedCheck, detail: impl Into<String>) -> Self {
        Self {
            outcome: AuditOutcome::Failed {
                check,
                detail: detail.into(),
            },
            work_digest: work_digest(&[]),
            max_rel_dev: 0.0,
            cpu_micros: 0,
        }
    }

    /// The check that failed, if one did.
    pub fn failed_check(&self) -> Option<FailedCheck> {
        match &self.outcome {
            AuditOutcome::Passed => None,
            AuditOutcome::Failed { check, .. } => Some(*check),
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.outcome == AuditOutcome::Passed
    }
}

/// The work digest of an audit: blake3 over the re-run layers' own work
/// digests, in layer order. Only a verifier that re-ran them can produce it,
/// and two verifiers that did produce the same one.
pub fn work_digest(layer_digests: &[[u8; 32]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for d in layer_digests {
        h.update(d);
    }
    *h.finalize().as_bytes()
}

/// Checks `opening` of the task `receipt` attests, re-running `layers` and
/// re-sampling output `steps` (both from the audit plan) with `model`, whose
/// file has sha256 `model_hash`. Never panics on what the node sent.
pub fn check_opening(
    model: &Model,
    model_hash: &[u8; 32],
    receipt: &ReceiptBody,
    layers: &[u32],
    steps: &[u32],
    opening: &TaskOpening,
) -> Checked {
    let started = strata_service::thread_cpu_micros();
    let mut work = Work::default();
    let result = run(
        model, model_hash, receipt, layers, steps, opening, &mut work,
    );
    Checked {
        outcome: match result {
            Ok(()) => AuditOutcome::Passed,
            Err(f) => AuditOutcome::Failed {
                check: f.check,
                detail: f.detail,
            },
        },
        work_digest: work_digest(&work.digests),
        max_rel_dev: work.max_rel_dev,
        // The engine runs on this thread (candle limited to one thread, as
        // the testnet runs it), so this is the audit's whole CPU cost.
        cpu_micros: strata_service::thread_cpu_micros().saturating_sub(started),
    }
}

/// What the layer re-runs produced so far.
#[derive(Default)]
struct Work {
    digests: Vec<[u8; 32]>,
    max_rel_dev: f32,
}

struct Failure {
    check: FailedCheck,
    detail: String,
}

fn fail(check: FailedCheck, detail: impl Into<String>) -> Failure {
    Failure {
        check,
        detail: detail.into(),
    }
}

/// One opened entry, decoded and checked against the root.
struct Entry {
    opening: Opening,
    states: Option<HiddenStates>,
}

fn run(
    model: &Model,
    model_hash: &[u8; 32],
    receipt: &ReceiptBody,
    layers: &[u32],
    steps: &[u32],
    opening: &TaskOpening,
    work: &mut Work,
) -> Result<(), Failure> {
    if receipt.model_hash != *model_hash {
        return Err(fail(
            FailedCheck::UnknownModel,
            format!(
                "the receipt names model {}, this verifier runs {}",
                hex::encode(receipt.model_hash),
                hex::encode(model_hash)
            ),
        ));
    }
    let positions = check_tokens(receipt, opening)?;
    let entries = check_entries(model, receipt, &positions, layers, opening)?;
    let n_layers = model.n_layers() as u32;

    let states = |index: u32| -> Result<&HiddenStates, Failure> {
        entries
            .get(&index)
            .and_then(|e| e.states.as_ref())
            .ok_or_else(|| fail(FailedCheck::Opening, format!("entry {index} has no states")))
    };
    let entry0 = entries
        .get(&0)
        .ok_or_else(|| fail(FailedCheck::Opening, "entry 0 is not opened"))?;
    match check_embedding(model, &positions, &entry0.opening.entry.input_hash) {
        Ok(true) => {}
        Ok(false) => {
            return Err(fail(
                FailedCheck::Embedding,
                "entry 0 is not the embedding of the tokens",
            ))
        }
        Err(e) => return Err(fail(FailedCheck::Embedding, e.to_string())),
    }

    for &layer in layers {
        let input = states(layer)?;
        let output = states(layer + 1)?;
        let sketch = entries
            .get(&layer)
            .map(|e| e.opening.entry.sketch.as_slice());
        let check = check_layer(
            model,
            layer as usize,
            input,
            output,
            sketch,
            DEFAULT_TOLERANCE,
        )
        .map_err(|e| fail(FailedCheck::Layer(layer), e.to_string()))?;
        work.digests.push(check.work_digest);
        work.max_rel_dev = work.max_rel_dev.max(check.rel_dev);
        if !check.passed {
            return Err(fail(
                FailedCheck::Layer(layer),
                format!(
                    "layer {layer} re-run deviates by {:.3e} (sketch {:.3e}); tolerance {:.1e}",
                    check.rel_dev, check.sketch_dev, DEFAULT_TOLERANCE.max_rel_dev
                ),
            ));
        }
    }

    let final_states = states(n_layers)?;
    let first_step = steps.first().copied().unwrap_or(0);
    let sampled = check_sampling(
        model,
        final_states,
        opening.prompt.len(),
        &opening.output,
        sampling_params(&receipt.sampling),
        steps,
    )
    .map_err(|e| fail(FailedCheck::Sampling(first_step), e.to_string()))?;
    if let Some(bad) = sampled.iter().find(|s| !s.passed()) {
        return Err(fail(
            FailedCheck::Sampling(bad.step),
            format!(
                "output step {} is token {}, the committed state and sampling give {}",
                bad.step, bad.claimed, bad.recomputed
            ),
        ));
    }
    Ok(())
}

/// Checks the tokens against the receipt; returns the committed positions
/// (the prompt and every output token but the last, never fed back).
fn check_tokens(receipt: &ReceiptBody, opening: &TaskOpening) -> Result<Vec<u32>, Failure> {
    let (prompt, output) = (&opening.prompt, &opening.output);
    if prompt.is_empty() {
        return Err(fail(FailedCheck::Tokens, "the prompt is empty"));
    }
    if tokens_hash(prompt) != receipt.input_hash {
        return Err(fail(
            FailedCheck::Tokens,
            "the prompt does not hash to the receipt's input hash",
        ));
    }
    if tokens_hash(output) != receipt.output_hash {
        return Err(fail(
            FailedCheck::Tokens,
            "the output does not hash to the receipt's output hash",
        ));
    }
    if prompt.len() != receipt.prompt_tokens as usize
        || output.len() != receipt.completion_tokens as usize
    {
        return Err(fail(
            FailedCheck::Tokens,
            format!(
                "{} prompt and {} output tokens, the receipt bills {} and {}",
                prompt.len(),
                output.len(),
                receipt.prompt_tokens,
                receipt.completion_tokens
            ),
        ));
    }
    let mut positions = prompt.clone();
    positions.extend_from_slice(&output[..output.len().saturating_sub(1)]);
    Ok(positions)
}

/// Decodes and checks every opened entry; the entries the audit needs must
/// all be there (entry 0, each layer's input and output with their states,
/// the final states).
fn check_entries(
    model: &Model,
    receipt: &ReceiptBody,
    positions: &[u32],
    layers: &[u32],
    opening: &TaskOpening,
) -> Result<BTreeMap<u32, Entry>, Failure> {
    let n_layers = model.n_layers() as u32;
    let hidden = model.config().hidden_size;
    let rows = positions.len();
    let mut out = BTreeMap::new();
    for e in &opening.entries {
        let index = e.index;
        if out.last_key_value().is_some_and(|(&last, _)| last >= index) {
            return Err(fail(
                FailedCheck::Opening,
                "entries are not ascending and distinct",
            ));
        }
        if index > n_layers {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} is beyond the final entry {n_layers}"),
            ));
        }
        let o = Opening::decode(&e.opening, MAX_ENTRY_BYTES)
            .map_err(|err| fail(FailedCheck::Opening, format!("entry {index}: {err}")))?;
        if o.entry.layer != index {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} opens entry {}", o.entry.layer),
            ));
        }
        if o.n_leaves != n_layers + 1 {
            return Err(fail(
                FailedCheck::Opening,
                format!(
                    "entry {index} is in a tree of {} entries; the model has {}",
                    o.n_leaves,
                    n_layers + 1
                ),
            ));
        }
        o.verify(&receipt.commitment_root).map_err(|err| {
            fail(
                FailedCheck::Opening,
                format!("entry {index} does not lead to the receipt's root: {err}"),
            )
        })?;
        if o.entry.positions as usize != rows {
            return Err(fail(
                FailedCheck::Tokens,
                format!(
                    "entry {index} commits {} positions, the tokens give {rows}",
                    o.entry.positions
                ),
            ));
        }
        let states = match &e.states {
            None => None,
            Some(bytes) => {
                let s = HiddenStates::decode(bytes, DEFAULT_MAX_HIDDEN_BYTES).map_err(|err| {
                    fail(
                        FailedCheck::Opening,
                        format!("states of entry {index}: {err}"),
                    )
                })?;
                if s.rows() != rows || s.cols() != hidden {
                    return Err(fail(
                        FailedCheck::Opening,
                        format!(
                            "states of entry {index} are {} x {}, expected {rows} x {hidden}",
                            s.rows(),
                            s.cols()
                        ),
                    ));
                }
                if HiddenHasher::hash(index, &s) != o.entry.input_hash {
                    return Err(fail(
                        FailedCheck::Opening,
                        format!("states of entry {index} do not hash to the entry"),
                    ));
                }
                Some(s)
            }
        };
        out.insert(index, Entry { opening: o, states });
    }
    if !out.contains_key(&0) {
        return Err(fail(FailedCheck::Opening, "entry 0 is not opened"));
    }
    let with_states = layers.iter().flat_map(|&l| [l, l + 1]).chain([n_layers]);
    for index in with_states {
        if out.get(&index).and_then(|e| e.states.as_ref()).is_none() {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} is not opened with its states"),
            ));
        }
    }
    Ok(out)
}
