//! The audit itself: checking a node's [`TaskOpening`] against its signed
//! receipt with the real model. Pure and synchronous (the service runs it on
//! a blocking thread), so tests drive it directly with openings built by the
//! node's own code.
//!
//! The checks run in a fixed order and stop at the first failure, so two
//! verifiers given the same opening report the same [`FailedCheck`]:
//!
//! 1. the receipt's model is the one this verifier loaded, and for a task
//!    served with a policy version (receipt version 4) the adapter it
//!    names is the one given (otherwise it cannot judge, or not yet:
//!    [`FailedCheck::UnknownModel`], never a challenge);
//! 2. the tokens hash to the receipt's prompt and output hashes and match
//!    its counts;
//! 3. every opened entry decodes, sits at its own index, leads to the
//!    receipt's commitment root, covers every committed position, and its
//!    states hash to the entry;
//! 4. entry 0 is the embedding of the tokens;
//! 5. each audited layer, re-run over all positions (with the task's
//!    adapter, if it names one), gives the next entry's states and the
//!    committed sketch within [`DEFAULT_TOLERANCE`];
//! 6. the audited output steps are what the committed final states and the
//!    receipt's sampling settings give.
//!
//! A pipeline hop's receipt (version 3) is checked over its own tree, entries
//! `a ..= b` of the blocks `[a, b)` it ran (leaf = entry − a), with the same
//! checks where they apply: the tokens it saw (the first hop's prompt, the
//! last hop's sampled tokens), its entries at the receipt's `positions`,
//! entry `a` and the exit entry `b` being the receipt's `input_states` and
//! `output_states` (what links it to its neighbours), the embedding only
//! for the first hop, the layers inside `[a, b)`, and the sampling only for
//! the last hop, with its sampler at `sample_offset + step`.

use std::collections::BTreeMap;

use strata_engine::{
    check_embedding, check_layer_adapted, check_sampling, check_sampling_from, Adapter,
    HiddenHasher, HiddenStates, Model, Opening, DEFAULT_MAX_HIDDEN_BYTES, DEFAULT_TOLERANCE,
    MAX_ENTRY_BYTES,
};
use strata_node::openings::sampling_params;
use strata_wire::audit::{AuditOutcome, FailedCheck, TaskOpening};
use strata_wire::{tokens_hash, AdapterPart, HopPart, ReceiptBody};

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
    check_opening_adapted(model, model_hash, receipt, layers, steps, opening, None)
}

/// [`check_opening`] with the adapter the receipt names, when it names one
/// (a task served with a policy version): the layers are re-run with it.
/// A receipt naming an adapter this verifier was not given (or another
/// one) cannot be audited yet: [`FailedCheck::UnknownModel`], not the
/// node's fault.
pub fn check_opening_adapted(
    model: &Model,
    model_hash: &[u8; 32],
    receipt: &ReceiptBody,
    layers: &[u32],
    steps: &[u32],
    opening: &TaskOpening,
    adapter: Option<&Adapter>,
) -> Checked {
    let started = strata_service::thread_cpu_micros();
    let mut work = Work::default();
    let result = run(
        model, model_hash, receipt, layers, steps, opening, adapter, &mut work,
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

/// What part of the model a receipt's tree covers, and which checks apply.
struct Scope {
    /// Entry index of leaf 0 (`a`; 0 for a whole-model receipt).
    first: u32,
    /// The exit entry (`b`; the model's block count for a whole model).
    last: u32,
    /// The receipt's hop part (`None`: a whole-model receipt).
    hop: Option<HopPart>,
}

impl Scope {
    /// The first hop, or a whole model: entry `first` is the embedding.
    fn embeds(&self) -> bool {
        self.first == 0
    }

    /// The last hop, or a whole model: it sampled from the exit entry.
    fn samples(&self, n_layers: u32) -> bool {
        self.last == n_layers
    }
}

/// What the tokens give the later checks.
struct Tokens {
    /// Token ids of every committed position (empty when the hop saw none).
    positions: Vec<u32>,
    /// Committed rows.
    rows: usize,
    /// Row of the final state the first output token was sampled from.
    first_sample_row: usize,
}

fn scope(receipt: &ReceiptBody, n_layers: u32) -> Result<Scope, Failure> {
    let Some(hop) = receipt.hop else {
        return Ok(Scope {
            first: 0,
            last: n_layers,
            hop: None,
        });
    };
    // `Receipt::verify` checked the part's own consistency; what it cannot
    // know is the model's depth.
    if u32::from(hop.n_layers) != n_layers || hop.start >= hop.end || u32::from(hop.end) > n_layers
    {
        return Err(fail(
            FailedCheck::Opening,
            format!(
                "the receipt's hop ran blocks {}..{} of {}; the model has {n_layers}",
                hop.start, hop.end, hop.n_layers
            ),
        ));
    }
    Ok(Scope {
        first: u32::from(hop.start),
        last: u32::from(hop.end),
        hop: Some(hop),
    })
}

#[allow(clippy::too_many_arguments)] // check_opening_adapted's, and the work so far
fn run(
    model: &Model,
    model_hash: &[u8; 32],
    receipt: &ReceiptBody,
    layers: &[u32],
    steps: &[u32],
    opening: &TaskOpening,
    adapter: Option<&Adapter>,
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
    let adapter = match (&receipt.adapter, adapter) {
        (None, _) => None,
        (Some(part), Some(a)) if a.digest() == part.adapter => Some(a),
        (Some(part), _) => return Err(fail(FailedCheck::UnknownModel, lacks_adapter(part))),
    };
    let n_layers = model.n_layers() as u32;
    let scope = scope(receipt, n_layers)?;
    if let Some(&l) = layers.iter().find(|&&l| l < scope.first || l >= scope.last) {
        // A plan that does not fit the receipt is this verifier's mistake,
        // never the node's: no judgement, no challenge.
        return Err(fail(
            FailedCheck::UnknownModel,
            format!(
                "the plan's layer {l} is outside the receipt's blocks {}..{}",
                scope.first, scope.last
            ),
        ));
    }
    let tokens = match &scope.hop {
        None => {
            let positions = check_tokens(receipt, opening)?;
            let rows = positions.len();
            Tokens {
                positions,
                rows,
                first_sample_row: opening.prompt.len().saturating_sub(1),
            }
        }
        Some(hop) => check_hop_tokens(receipt, hop, n_layers, opening)?,
    };
    let entries = check_entries(model, receipt, &scope, tokens.rows, layers, opening)?;

    let states = |index: u32| -> Result<&HiddenStates, Failure> {
        entries
            .get(&index)
            .and_then(|e| e.states.as_ref())
            .ok_or_else(|| fail(FailedCheck::Opening, format!("entry {index} has no states")))
    };
    let entry = |index: u32| -> Result<&Entry, Failure> {
        entries
            .get(&index)
            .ok_or_else(|| fail(FailedCheck::Opening, format!("entry {index} is not opened")))
    };
    if let Some(hop) = &scope.hop {
        // The hashes the receipt links to its neighbours' are its own
        // committed entries: a hop cannot sign one chain of states and
        // commit another.
        if entry(scope.first)?.opening.entry.input_hash != hop.input_states {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {} is not the receipt's input states", scope.first),
            ));
        }
        if entry(scope.last)?.opening.entry.input_hash != hop.output_states {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {} is not the receipt's output states", scope.last),
            ));
        }
    }
    if scope.embeds() {
        let entry0 = entry(0)?;
        match check_embedding(model, &tokens.positions, &entry0.opening.entry.input_hash) {
            Ok(true) => {}
            Ok(false) => {
                return Err(fail(
                    FailedCheck::Embedding,
                    "entry 0 is not the embedding of the tokens",
                ))
            }
            Err(e) => return Err(fail(FailedCheck::Embedding, e.to_string())),
        }
    }

    for &layer in layers {
        let input = states(layer)?;
        let output = states(layer + 1)?;
        let sketch = entries
            .get(&layer)
            .map(|e| e.opening.entry.sketch.as_slice());
        let check = check_layer_adapted(
            model,
            layer as usize,
            input,
            output,
            sketch,
            DEFAULT_TOLERANCE,
            adapter,
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

    if !scope.samples(n_layers) {
        return Ok(());
    }
    let final_states = states(n_layers)?;
    let first_step = steps.first().copied().unwrap_or(0);
    let params = sampling_params(&receipt.sampling);
    let sampled = match &scope.hop {
        None => check_sampling(
            model,
            final_states,
            opening.prompt.len(),
            &opening.output,
            params,
            steps,
        ),
        Some(hop) => check_sampling_from(
            model,
            final_states,
            tokens.first_sample_row,
            u64::from(hop.sample_offset),
            &opening.output,
            params,
            steps,
        ),
    }
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

/// Why a receipt naming `part` cannot be audited here yet.
pub fn lacks_adapter(part: &AdapterPart) -> String {
    format!(
        "cannot audit yet: this verifier does not hold the adapter of policy version {} ({}); follow its trainer",
        part.policy_version,
        hex::encode(part.adapter)
    )
}

/// A hop's tokens: the first hop's prompt (hashing to the receipt's input
/// hash) and, unless it is also the last, the tokens fed back to it (pinned
/// by the embedding check); the last hop's sampled tokens (hashing to the
/// receipt's output hash); none for a middle hop. The committed rows are the
/// receipt's `positions`. The last hop sampled once per step, from the last
/// row of each step (the prompt's, then each fed-back token's), so its `k`
/// tokens came from the last `k` rows.
fn check_hop_tokens(
    receipt: &ReceiptBody,
    hop: &HopPart,
    n_layers: u32,
    opening: &TaskOpening,
) -> Result<Tokens, Failure> {
    let (prompt, output) = (&opening.prompt, &opening.output);
    let rows = hop.positions as usize;
    let (head, last) = (hop.start == 0, u32::from(hop.end) == n_layers);
    if rows == 0 {
        return Err(fail(FailedCheck::Tokens, "the hop ran no positions"));
    }
    if head {
        if prompt.is_empty() {
            return Err(fail(FailedCheck::Tokens, "the prompt is empty"));
        }
        if tokens_hash(prompt) != receipt.input_hash {
            return Err(fail(
                FailedCheck::Tokens,
                "the prompt does not hash to the receipt's input hash",
            ));
        }
        if prompt.len() != receipt.prompt_tokens as usize {
            return Err(fail(
                FailedCheck::Tokens,
                format!(
                    "{} prompt tokens, the receipt bills {}",
                    prompt.len(),
                    receipt.prompt_tokens
                ),
            ));
        }
    } else if !prompt.is_empty() {
        return Err(fail(FailedCheck::Tokens, "a later hop sends a prompt"));
    }
    if last {
        if tokens_hash(output) != receipt.output_hash {
            return Err(fail(
                FailedCheck::Tokens,
                "the output does not hash to the receipt's output hash",
            ));
        }
        if output.len() != receipt.completion_tokens as usize || output.len() > rows {
            return Err(fail(
                FailedCheck::Tokens,
                format!(
                    "{} output tokens over {rows} positions, the receipt bills {}",
                    output.len(),
                    receipt.completion_tokens
                ),
            ));
        }
    } else if !head && !output.is_empty() {
        return Err(fail(FailedCheck::Tokens, "a middle hop sends tokens"));
    }
    let positions = match (head, last) {
        (true, true) => {
            let mut p = prompt.clone();
            p.extend_from_slice(&output[..output.len().saturating_sub(1)]);
            p
        }
        (true, false) => [prompt.as_slice(), output.as_slice()].concat(),
        (false, _) => Vec::new(),
    };
    if head && positions.len() != rows {
        return Err(fail(
            FailedCheck::Tokens,
            format!(
                "the tokens give {} positions, the receipt {rows}",
                positions.len()
            ),
        ));
    }
    Ok(Tokens {
        positions,
        rows,
        first_sample_row: rows - output.len().min(rows),
    })
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
/// all be there (the tree's first entry, each layer's input and output with
/// their states, the final states when the receipt sampled, and a hop's
/// exit entry).
fn check_entries(
    model: &Model,
    receipt: &ReceiptBody,
    scope: &Scope,
    rows: usize,
    layers: &[u32],
    opening: &TaskOpening,
) -> Result<BTreeMap<u32, Entry>, Failure> {
    let n_layers = model.n_layers() as u32;
    let (first, last) = (scope.first, scope.last);
    let hidden = model.config().hidden_size;
    let mut out = BTreeMap::new();
    for e in &opening.entries {
        let index = e.index;
        if out.last_key_value().is_some_and(|(&prev, _)| prev >= index) {
            return Err(fail(
                FailedCheck::Opening,
                "entries are not ascending and distinct",
            ));
        }
        if index < first {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} is before the tree's first entry {first}"),
            ));
        }
        if index > last {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} is beyond the final entry {last}"),
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
        if o.n_leaves != last - first + 1 {
            return Err(fail(
                FailedCheck::Opening,
                format!(
                    "entry {index} is in a tree of {} entries; the receipt's has {}",
                    o.n_leaves,
                    last - first + 1
                ),
            ));
        }
        o.verify_at(&receipt.commitment_root, first)
            .map_err(|err| {
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
    let required = std::iter::once(first).chain(scope.hop.map(|_| last));
    for index in required {
        if !out.contains_key(&index) {
            return Err(fail(
                FailedCheck::Opening,
                format!("entry {index} is not opened"),
            ));
        }
    }
    let finals = scope.samples(n_layers).then_some(n_layers);
    let with_states = layers.iter().flat_map(|&l| [l, l + 1]).chain(finals);
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
