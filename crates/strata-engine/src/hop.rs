//! A pipeline hop's engine: continuous batching over the blocks `[a, b)` one
//! node holds. Each sequence has its own KV cache for those blocks, its own
//! commitment recorder (entries `a ..= b`, see
//! [`CommitmentRecorder::new_hop`]) and, on the last hop, its own sampler.
//! Inputs arrive from outside, one per sequence per step: token ids on the
//! first hop (which embeds them), hidden states from the previous hop on the
//! others. One forward pass per [`HopBatcher::step`] runs every pending
//! input; the last hop samples a token per sequence, the others hand on the
//! states. A hop that is both first and last is a whole model fed from
//! outside.
//!
//! Bit-identity with a single node follows from the engine's determinism
//! contract (`crate::ops`): a row's result depends neither on the batch it
//! runs in nor on whether its layers ran on one machine or several.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use crate::adapter::Adapter;
use crate::commitment::{CommitmentRecorder, CommitmentTree};
use crate::error::{EngineError, Result};
use crate::hidden::HiddenStates;
use crate::kv_cache::KvCache;
use crate::model::{LayerObserver, Model, Segment};
use crate::sampling::{Sampler, SamplingParams};

/// A sequence's key inside a [`HopBatcher`], chosen by the caller (the same
/// key on every hop of a route makes logs line up).
pub type HopKey = u64;

/// How a sequence runs on this hop.
#[derive(Debug, Clone)]
pub struct HopOptions {
    /// Sampling parameters and seed (used by the last hop only).
    pub sampling: SamplingParams,
    /// Tokens this sequence already sampled elsewhere: after a failover the
    /// new route re-prefills prompt and produced tokens, and its sampler
    /// continues at this step, so the stream goes on as if nothing happened.
    pub sample_offset: u64,
    /// The last hop ends the sequence after any of these tokens.
    pub stop_tokens: Vec<u32>,
    /// The last hop ends the sequence after this many sampled tokens.
    pub max_new_tokens: usize,
    /// Record the hop's commitments (entries `a ..= b`) for its receipt.
    pub record_commitments: bool,
    /// The LoRA adapter of the sequence's policy (`None`: the base model):
    /// every hop of a route must run the same one, for its blocks. The
    /// caller checks it was trained on this model ([`Adapter::check_for`]);
    /// [`HopBatcher::open`] checks its shapes.
    pub adapter: Option<Arc<Adapter>>,
}

impl HopOptions {
    /// Greedy, without stop tokens or commitments.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            sampling: SamplingParams::greedy(),
            sample_offset: 0,
            stop_tokens: Vec::new(),
            max_new_tokens,
            record_commitments: false,
            adapter: None,
        }
    }
}

/// What a sequence brings to the next step.
#[derive(Debug, Clone)]
pub enum HopInput {
    /// Token ids (the first hop only): the prompt, then each sampled token.
    Tokens(Vec<u32>),
    /// The previous hop's output rows for this sequence.
    States(HiddenStates),
}

impl HopInput {
    /// The rows this input brings to a hop that is (`first`) or is not the
    /// route's first, after checking it: token ids inside the vocabulary
    /// for the first hop, states `cols` wide for the others, at least one row.
    pub(crate) fn rows(&self, first: bool, cols: usize, vocab: usize) -> Result<usize> {
        let rows = match (self, first) {
            (HopInput::Tokens(t), true) => {
                if let Some(&id) = t.iter().find(|&&id| id as usize >= vocab) {
                    return Err(EngineError::BadToken { id, vocab });
                }
                t.len()
            }
            (HopInput::States(x), false) => {
                if x.cols() != cols {
                    return Err(EngineError::InvalidRequest(format!(
                        "hidden states are {} wide, the model expects {cols}",
                        x.cols()
                    )));
                }
                x.rows()
            }
            (HopInput::Tokens(_), false) => {
                return Err(EngineError::InvalidRequest(
                    "only the first hop takes token ids".into(),
                ))
            }
            (HopInput::States(_), true) => {
                return Err(EngineError::InvalidRequest(
                    "the first hop takes token ids, not hidden states".into(),
                ))
            }
        };
        if rows == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        Ok(rows)
    }
}

/// What a step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum HopOutput {
    /// The rows leaving this hop, for the next one.
    States(HiddenStates),
    /// The last hop's sampled token; `last` when the sequence ended with it
    /// (a stop token, or its token budget).
    Token {
        /// The token.
        token: u32,
        /// No more tokens follow.
        last: bool,
    },
}

/// A sequence closed on this hop: what its receipt is made of.
#[derive(Debug, Clone)]
pub struct HopFinished {
    /// Positions this hop ran for the sequence.
    pub positions: usize,
    /// Tokens sampled here (the last hop only).
    pub sampled: Vec<u32>,
    /// The hop's commitment tree (leaf 0 is layer `a`), when recorded.
    pub commitments: Option<CommitmentTree>,
}

struct HopSeq {
    cache: KvCache,
    sampler: Sampler,
    stop: Vec<u32>,
    max_new: usize,
    sampled: Vec<u32>,
    pending: Option<HopInput>,
    recorder: Option<CommitmentRecorder>,
    ended: bool,
    adapter: Option<Arc<Adapter>>,
}

/// Continuous batching for one pipeline hop.
pub struct HopBatcher<'m> {
    model: &'m Model,
    layers: Range<usize>,
    first: bool,
    last: bool,
    seqs: BTreeMap<HopKey, HopSeq>,
}

impl<'m> HopBatcher<'m> {
    /// A hop running blocks `layers` of `model` (which must hold them; the
    /// first hop must hold the embedding and the last the head).
    pub fn new(model: &'m Model, layers: Range<usize>) -> Result<Self> {
        model.new_cache(layers.clone())?;
        if layers.is_empty() {
            return Err(EngineError::InvalidRequest(
                "a hop runs at least one layer".into(),
            ));
        }
        let first = layers.start == 0;
        let last = layers.end == model.n_layers();
        if first && !model.has_embedding() {
            return Err(EngineError::PartNotLoaded("embedding", "first"));
        }
        if last && !model.has_head() {
            return Err(EngineError::PartNotLoaded("head", "last"));
        }
        Ok(Self {
            model,
            layers,
            first,
            last,
            seqs: BTreeMap::new(),
        })
    }

    /// The blocks this hop runs.
    pub fn layers(&self) -> Range<usize> {
        self.layers.clone()
    }

    /// Sequences open on this hop.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// True when no sequence is open.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// True when some sequence has an input waiting for [`HopBatcher::step`].
    pub fn has_pending(&self) -> bool {
        self.seqs.values().any(|s| s.pending.is_some())
    }

    /// Sequences with an input waiting for the next step.
    pub fn pending(&self) -> usize {
        self.seqs.values().filter(|s| s.pending.is_some()).count()
    }

    /// Sequences that have not ended: those a step could still run.
    pub fn live(&self) -> usize {
        self.seqs.values().filter(|s| !s.ended).count()
    }

    /// Opens a sequence under `key`; its inputs come with [`HopBatcher::push`].
    pub fn open(&mut self, key: HopKey, opts: HopOptions) -> Result<()> {
        if self.seqs.contains_key(&key) {
            return Err(EngineError::InvalidRequest(format!(
                "sequence {key} is already open on this hop"
            )));
        }
        if self.last && opts.max_new_tokens == 0 {
            return Err(EngineError::InvalidRequest(
                "a sequence must be allowed at least one new token".into(),
            ));
        }
        if let Some(adapter) = &opts.adapter {
            adapter.check_shapes(self.model.config())?;
        }
        let cols = self.model.config().hidden_size;
        let seq = HopSeq {
            cache: self.model.new_cache(self.layers.clone())?,
            sampler: Sampler::at_step(opts.sampling, opts.sample_offset)?,
            stop: opts.stop_tokens,
            max_new: opts.max_new_tokens,
            sampled: Vec::new(),
            pending: None,
            recorder: opts
                .record_commitments
                .then(|| CommitmentRecorder::new_hop(self.layers.clone(), cols)),
            ended: false,
            adapter: opts.adapter,
        };
        self.seqs.insert(key, seq);
        Ok(())
    }

    /// Queues a sequence's next input. Everything is checked here, before
    /// anything runs: the input's kind for this hop, its shape, one input
    /// per sequence per step, and the context length.
    pub fn push(&mut self, key: HopKey, input: HopInput) -> Result<()> {
        let cfg = self.model.config();
        let (first, cols, context) = (self.first, cfg.hidden_size, cfg.context_length);
        let vocab = cfg.vocab_size;
        let seq = self.seqs.get_mut(&key).ok_or_else(|| {
            EngineError::InvalidRequest(format!("sequence {key} is not open on this hop"))
        })?;
        if seq.ended {
            return Err(EngineError::InvalidRequest(format!(
                "sequence {key} has ended"
            )));
        }
        if seq.pending.is_some() {
            return Err(EngineError::InvalidRequest(format!(
                "sequence {key} already has an input waiting for this step"
            )));
        }
        let rows = input.rows(first, cols, vocab)?;
        if seq.cache.len() + rows > context {
            return Err(EngineError::PromptTooLong {
                tokens: seq.cache.len() + rows,
                max_new: 0,
                context,
            });
        }
        seq.pending = Some(input);
        Ok(())
    }

    /// One forward pass over every pending input; returns each sequence's
    /// output in key order.
    pub fn step(&mut self) -> Result<Vec<(HopKey, HopOutput)>> {
        let mut keys = Vec::new();
        let mut inputs = Vec::new();
        for (key, seq) in self.seqs.iter_mut() {
            if let Some(input) = seq.pending.take() {
                keys.push(*key);
                inputs.push(input);
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(inputs.len());
        let mut x = if self.first {
            let mut tokens = Vec::new();
            for input in &inputs {
                if let HopInput::Tokens(t) = input {
                    rows.push(t.len());
                    tokens.extend_from_slice(t);
                }
            }
            self.model.embed(&tokens)?
        } else {
            let mut parts = Vec::with_capacity(inputs.len());
            for input in inputs {
                if let HopInput::States(s) = input {
                    rows.push(s.rows());
                    parts.push(s);
                }
            }
            HiddenStates::concat_rows(&parts)?
        };
        {
            let mut segments: Vec<Segment<'_>> = Vec::with_capacity(keys.len());
            let mut seqs: Vec<&mut HopSeq> = self
                .seqs
                .iter_mut()
                .filter(|(k, _)| keys.binary_search(k).is_ok())
                .map(|(_, s)| s)
                .collect();
            for (seq, &n) in seqs.iter_mut().zip(&rows) {
                segments.push(Segment {
                    cache: &mut seq.cache,
                    rows: n,
                    observer: seq.recorder.as_mut().map(|r| r as &mut dyn LayerObserver),
                    adapter: seq.adapter.as_deref(),
                });
            }
            self.model
                .forward_layers(self.layers.clone(), &mut x, &mut segments)?;
        }
        let mut out = Vec::with_capacity(keys.len());
        if self.last {
            let last_rows: Vec<usize> = rows
                .iter()
                .scan(0, |end, &n| {
                    *end += n;
                    Some(*end - 1)
                })
                .collect();
            let logits = self.model.logits(&x, &last_rows)?;
            for (key, l) in keys.into_iter().zip(logits) {
                let seq = self
                    .seqs
                    .get_mut(&key)
                    .ok_or_else(|| EngineError::InvalidRequest("sequence vanished".into()))?;
                let token = seq.sampler.sample(&l)?;
                seq.sampled.push(token);
                let last = seq.stop.contains(&token) || seq.sampled.len() >= seq.max_new;
                seq.ended = last;
                out.push((key, HopOutput::Token { token, last }));
            }
        } else {
            let mut start = 0;
            for (key, n) in keys.into_iter().zip(rows) {
                out.push((key, HopOutput::States(x.slice_rows(start, n)?)));
                start += n;
            }
        }
        Ok(out)
    }

    /// Closes a sequence (it ended, the route was abandoned, or the client
    /// went away) and returns what its receipt needs.
    pub fn close(&mut self, key: HopKey) -> Result<HopFinished> {
        let seq = self.seqs.remove(&key).ok_or_else(|| {
            EngineError::InvalidRequest(format!("sequence {key} is not open on this hop"))
        })?;
        let commitments = match &seq.recorder {
            Some(r) => Some(CommitmentTree::for_range(self.layers.start, r.entries())?),
            None => None,
        };
        Ok(HopFinished {
            positions: seq.cache.len(),
            sampled: seq.sampled,
            commitments,
        })
    }
}
