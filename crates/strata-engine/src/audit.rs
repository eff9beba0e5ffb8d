//! The two ends of an audit that are not a layer re-run (those are in
//! `check`): the node re-deriving a finished task's states, and the
//! verifier's checks of the first and last steps.
//!
//! A node does not keep a task's hidden states: it keeps the tokens and
//! sampling parameters, and when audited runs them again in one prefill pass
//! ([`rederive`]). The engine's determinism contract makes that pass
//! bit-identical to the serving run (prefill and incremental decode compute
//! every value in the same order), so the re-derived tree has the receipt's
//! root; the node checks that before it answers.
//!
//! The verifier checks that layer 0's input is the embedding of the committed
//! tokens ([`check_embedding`]) and that sampled output tokens follow from
//! the committed final states and the sampling parameters
//! ([`check_sampling`]).

use std::ops::Range;
use std::sync::Arc;

use crate::adapter::Adapter;
use crate::commitment::CommitmentRecorder;
use crate::error::{EngineError, Result};
use crate::hidden::{HiddenHasher, HiddenStates};
use crate::hop::HopInput;
use crate::model::{LayerObserver, Model, Segment};
use crate::sampling::{Sampler, SamplingParams};
use crate::tamper::{LayerTamper, SeqObserver};

/// Runs the whole model over `positions` (the prompt followed by every
/// generated token but the last, which was never fed back) in one prefill
/// pass, recording the commitments and keeping every entry's input states.
/// `tamper` replays a cheating node's tampering (`None` for honest nodes).
pub fn rederive(
    model: &Model,
    positions: &[u32],
    tamper: Option<Arc<dyn LayerTamper>>,
) -> Result<CommitmentRecorder> {
    rederive_adapted(model, positions, tamper, None)
}

/// [`rederive`] for a task served with a LoRA adapter: the same pass with
/// every row running `adapter`, as the serving [`crate::Batcher`] did.
pub fn rederive_adapted(
    model: &Model,
    positions: &[u32],
    tamper: Option<Arc<dyn LayerTamper>>,
    adapter: Option<&Adapter>,
) -> Result<CommitmentRecorder> {
    if positions.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let n = model.n_layers();
    let recorder = CommitmentRecorder::new(0..n, n, model.config().hidden_size).retaining_states();
    let mut observer = SeqObserver::new(Some(recorder), tamper);
    let mut cache = model.new_cache(0..n)?;
    let mut x = model.embed(positions)?;
    let rows = x.rows();
    let mut segs = [Segment {
        observer: Some(&mut observer as &mut dyn LayerObserver),
        adapter,
        ..Segment::new(&mut cache, rows)
    }];
    model.forward_layers(0..n, &mut x, &mut segs)?;
    observer
        .recorder
        .ok_or_else(|| EngineError::Commitment("the recorder went missing".into()))
}

/// [`rederive`] for one pipeline hop running blocks `layers` (= `a..b`):
/// re-runs them in one prefill pass from what the hop received over all the
/// positions it ran, and records its entries `a ..= b` exactly as
/// [`crate::HopBatcher`] did while serving (bit-identical by the engine's
/// determinism contract), keeping every entry's input states (entry `b`:
/// the states it handed on) to answer openings.
///
/// `input` is the token ids of every position for the first hop (`a == 0`:
/// the prompt, then each token fed back), embedded here; for a later hop,
/// the states it received for every position (an f32 matrix, rows in
/// position order). `model` needs only blocks `a..b` (and the embedding for
/// the first hop): a node holding just its shard can answer its audits.
pub fn rederive_hop(
    model: &Model,
    layers: Range<usize>,
    input: &HopInput,
    tamper: Option<Arc<dyn LayerTamper>>,
) -> Result<CommitmentRecorder> {
    rederive_hop_adapted(model, layers, input, tamper, None)
}

/// [`rederive_hop`] for a sequence the hop served with a LoRA adapter
/// ([`crate::HopOptions::adapter`]).
pub fn rederive_hop_adapted(
    model: &Model,
    layers: Range<usize>,
    input: &HopInput,
    tamper: Option<Arc<dyn LayerTamper>>,
    adapter: Option<&Adapter>,
) -> Result<CommitmentRecorder> {
    if layers.is_empty() {
        return Err(EngineError::InvalidRequest(
            "a hop runs at least one layer".into(),
        ));
    }
    let cols = model.config().hidden_size;
    let first = layers.start == 0;
    input.rows(first, cols, model.config().vocab_size)?;
    let mut x = match input {
        HopInput::Tokens(tokens) => model.embed(tokens)?,
        HopInput::States(states) => states.clone(),
    };
    let recorder = CommitmentRecorder::new_hop(layers.clone(), cols).retaining_states();
    let mut observer = SeqObserver::new(Some(recorder), tamper);
    let mut cache = model.new_cache(layers.clone())?;
    let rows = x.rows();
    let mut segs = [Segment {
        observer: Some(&mut observer as &mut dyn LayerObserver),
        adapter,
        ..Segment::new(&mut cache, rows)
    }];
    model.forward_layers(layers, &mut x, &mut segs)?;
    observer
        .recorder
        .ok_or_else(|| EngineError::Commitment("the recorder went missing".into()))
}

/// Whether `input_hash` (entry 0's) is the hash of the embedding of `positions`.
pub fn check_embedding(model: &Model, positions: &[u32], input_hash: &[u8; 32]) -> Result<bool> {
    let embedded = model.embed(positions)?;
    Ok(HiddenHasher::hash(0, &embedded) == *input_hash)
}

/// One re-checked sampling step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleCheck {
    /// Index of the generated token (0 = the first).
    pub step: u32,
    /// The token the receipt's output holds there.
    pub claimed: u32,
    /// The token the committed final state and sampling parameters give.
    pub recomputed: u32,
}

impl SampleCheck {
    /// Whether the claimed token is the recomputed one.
    pub fn passed(&self) -> bool {
        self.claimed == self.recomputed
    }
}

/// Re-samples generated tokens `steps` from `final_states` (the committed
/// final hidden states of every position: the prompt's `prompt_len` rows,
/// then one per fed-back token). Token `s` was sampled from the final state of
/// position `prompt_len - 1 + s`, with the sampler at step `s`.
pub fn check_sampling(
    model: &Model,
    final_states: &HiddenStates,
    prompt_len: usize,
    output: &[u32],
    sampling: SamplingParams,
    steps: &[u32],
) -> Result<Vec<SampleCheck>> {
    let first_row = prompt_len.checked_sub(1).ok_or(EngineError::EmptyPrompt)?;
    check_sampling_from(model, final_states, first_row, 0, output, sampling, steps)
}

/// [`check_sampling`] for a last pipeline hop (or any run whose sampler did
/// not start at step 0): token `s` of `output` was sampled from the final
/// state at row `first_row + s`, with the sampler at step `sample_offset + s`
/// (after a failover the new route's sampler goes on where the old one
/// stopped). The reported `step` is `s`, the index in `output`.
pub fn check_sampling_from(
    model: &Model,
    final_states: &HiddenStates,
    first_row: usize,
    sample_offset: u64,
    output: &[u32],
    sampling: SamplingParams,
    steps: &[u32],
) -> Result<Vec<SampleCheck>> {
    let mut out = Vec::with_capacity(steps.len());
    for &step in steps {
        let claimed = claimed_at(output, step)?;
        let overflow = || EngineError::InvalidRequest(format!("step {step} overflows"));
        let row = first_row.checked_add(step as usize).ok_or_else(overflow)?;
        let at = sample_offset
            .checked_add(u64::from(step))
            .ok_or_else(overflow)?;
        let recomputed = resample(model, final_states, row, sampling, at)?;
        out.push(SampleCheck {
            step,
            claimed,
            recomputed,
        });
    }
    Ok(out)
}

fn claimed_at(output: &[u32], step: u32) -> Result<u32> {
    output.get(step as usize).copied().ok_or_else(|| {
        EngineError::InvalidRequest(format!("step {step} beyond the {} outputs", output.len()))
    })
}

/// The token the sampler at step `at` draws from the final state at `row`.
fn resample(
    model: &Model,
    final_states: &HiddenStates,
    row: usize,
    sampling: SamplingParams,
    at: u64,
) -> Result<u32> {
    let logits = model.logits(final_states, &[row])?;
    let logits = logits
        .first()
        .ok_or_else(|| EngineError::InvalidRequest(format!("no final state at row {row}")))?;
    Sampler::at_step(sampling, at)?.sample(logits)
}
