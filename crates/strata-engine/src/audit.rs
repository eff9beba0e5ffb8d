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

use std::sync::Arc;

use crate::commitment::CommitmentRecorder;
use crate::error::{EngineError, Result};
use crate::hidden::{HiddenHasher, HiddenStates};
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
        cache: &mut cache,
        rows,
        observer: Some(&mut observer as &mut dyn LayerObserver),
    }];
    model.forward_layers(0..n, &mut x, &mut segs)?;
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
    let mut out = Vec::with_capacity(steps.len());
    for &step in steps {
        let claimed = *output.get(step as usize).ok_or_else(|| {
            EngineError::InvalidRequest(format!("step {step} beyond the {} outputs", output.len()))
        })?;
        let row = (prompt_len + step as usize)
            .checked_sub(1)
            .ok_or(EngineError::EmptyPrompt)?;
        let logits = model.logits(final_states, &[row])?;
        let logits = logits
            .first()
            .ok_or_else(|| EngineError::InvalidRequest(format!("no final state at row {row}")))?;
        let recomputed = Sampler::at_step(sampling, u64::from(step))?.sample(logits)?;
        out.push(SampleCheck {
            step,
            claimed,
            recomputed,
        });
    }
    Ok(out)
}
