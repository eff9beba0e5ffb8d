//! Continuous batching: many sequences, each with its own KV cache and sampler,
//! advance together in one forward pass per step. Sequences join (their prompt
//! is prefilled in the same pass as the others' decode rows) and leave between
//! steps.

use std::sync::Arc;

use crate::adapter::Adapter;
use crate::commitment::{CommitmentRecorder, CommitmentTree};
use crate::error::{EngineError, Result};
use crate::hidden::HiddenStates;
use crate::kv_cache::KvCache;
use crate::model::{LayerObserver, Model, Segment};
use crate::sampling::{Sampler, SamplingParams, TokenLogprobs};
use crate::tamper::{LayerTamper, SeqObserver};

/// Identifier of a sequence inside a [`Batcher`].
pub type SeqId = u64;

/// A generation request (already tokenized).
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt tokens (non-empty).
    pub prompt: Vec<u32>,
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Sampling parameters and seed.
    pub sampling: SamplingParams,
    /// Generation stops after any of these tokens (it is included in the output).
    pub stop_tokens: Vec<u32>,
    /// Record per-layer commitments for the task's receipt.
    pub record_commitments: bool,
    /// Keep the layer input states too (needed to answer openings).
    pub retain_states: bool,
    /// Rewrites layer outputs: only the testnet's cheating nodes set it.
    pub tamper: Option<std::sync::Arc<dyn LayerTamper>>,
    /// Also compute each generated token's log-probability and this many
    /// most likely alternatives (capped at [`crate::MAX_TOP_LOGPROBS`]);
    /// `None` computes nothing.
    pub logprobs: Option<u8>,
    /// The LoRA adapter of the policy this sequence runs (`None`: the base
    /// model). Sequences of one batch may run different adapters. The
    /// caller checks it was trained on this model ([`Adapter::check_for`]);
    /// [`Batcher::add`] checks its shapes.
    pub adapter: Option<Arc<Adapter>>,
}

impl GenerateRequest {
    /// A greedy request without stop tokens or commitments.
    pub fn greedy(prompt: Vec<u32>, max_new_tokens: usize) -> Self {
        Self {
            prompt,
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            stop_tokens: Vec::new(),
            record_commitments: false,
            retain_states: false,
            tamper: None,
            logprobs: None,
            adapter: None,
        }
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced a stop token.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// A token produced by a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepToken {
    /// The sequence.
    pub id: SeqId,
    /// The new token.
    pub token: u32,
    /// Its log-probabilities, when the request asked for them.
    pub logprobs: Option<TokenLogprobs>,
}

/// A completed sequence.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The sequence.
    pub id: SeqId,
    /// Generated tokens (not including the prompt).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub reason: FinishReason,
    /// The commitment tree, when requested: its root goes into the receipt.
    pub commitments: Option<CommitmentTree>,
    /// The recorder (with retained states when requested), to answer openings.
    pub recorder: Option<CommitmentRecorder>,
    /// Per generated token, its log-probabilities (empty unless asked for).
    pub logprobs: Vec<TokenLogprobs>,
}

struct Active {
    id: SeqId,
    cache: KvCache,
    sampler: Sampler,
    /// Tokens to feed at the next step (the prompt, then the last sampled token).
    pending: Vec<u32>,
    generated: Vec<u32>,
    max_new: usize,
    stop: Vec<u32>,
    /// Alternatives to list per token, when logprobs were asked for.
    logprobs_top: Option<u8>,
    logprobs: Vec<TokenLogprobs>,
    /// Its commitment recorder (and, on a cheating node, its tamperer).
    observer: SeqObserver,
    /// The adapter it runs with.
    adapter: Option<Arc<Adapter>>,
}

/// Runs many sequences through one model with continuous batching.
pub struct Batcher<'m> {
    model: &'m Model,
    active: Vec<Active>,
    finished: Vec<Finished>,
    next_id: SeqId,
}

impl<'m> Batcher<'m> {
    /// An empty batcher over `model`.
    pub fn new(model: &'m Model) -> Self {
        Self {
            model,
            active: Vec::new(),
            finished: Vec::new(),
            next_id: 0,
        }
    }

    /// Validates and admits a request; it joins at the next step.
    pub fn add(&mut self, req: GenerateRequest) -> Result<SeqId> {
        let cfg = self.model.config();
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&id) = req.prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(EngineError::BadToken {
                id,
                vocab: cfg.vocab_size,
            });
        }
        // The last generated token is never fed back, hence the `- 1`.
        let needed = req.prompt.len() + req.max_new_tokens.saturating_sub(1);
        if needed > cfg.context_length {
            return Err(EngineError::PromptTooLong {
                tokens: req.prompt.len(),
                max_new: req.max_new_tokens,
                context: cfg.context_length,
            });
        }
        if let Some(adapter) = &req.adapter {
            adapter.check_shapes(cfg)?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let n = self.model.n_layers();
        let active = Active {
            id,
            cache: self.model.new_cache(0..n)?,
            sampler: Sampler::new(req.sampling)?,
            pending: req.prompt,
            generated: Vec::new(),
            max_new: req.max_new_tokens,
            stop: req.stop_tokens,
            logprobs_top: req.logprobs,
            logprobs: Vec::new(),
            observer: SeqObserver::new(
                req.record_commitments.then(|| {
                    let r = CommitmentRecorder::new(0..n, n, cfg.hidden_size);
                    if req.retain_states {
                        r.retaining_states()
                    } else {
                        r
                    }
                }),
                req.tamper,
            ),
            adapter: req.adapter,
        };
        if active.max_new == 0 {
            self.finish(active, FinishReason::Length)?;
        } else {
            self.active.push(active);
        }
        Ok(id)
    }

    /// Sequences still generating.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// True when nothing is left to run.
    pub fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// One forward pass over every active sequence; returns the new tokens.
    pub fn step(&mut self) -> Result<Vec<StepToken>> {
        if self.active.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: Vec<u32> = self
            .active
            .iter()
            .flat_map(|a| a.pending.iter().copied())
            .collect();
        let mut x = self.model.embed(&tokens)?;
        let mut last_rows = Vec::with_capacity(self.active.len());
        {
            let mut row = 0;
            let mut segments: Vec<Segment<'_>> = self
                .active
                .iter_mut()
                .map(|a| {
                    row += a.pending.len();
                    last_rows.push(row - 1);
                    Segment {
                        cache: &mut a.cache,
                        rows: a.pending.len(),
                        observer: a
                            .observer
                            .is_active()
                            .then_some(&mut a.observer as &mut dyn LayerObserver),
                        adapter: a.adapter.as_deref(),
                    }
                })
                .collect();
            self.model
                .forward_layers(0..self.model.n_layers(), &mut x, &mut segments)?;
        }
        let logits = self.model.logits(&x, &last_rows)?;
        let mut out = Vec::with_capacity(self.active.len());
        let mut still = Vec::with_capacity(self.active.len());
        for (mut a, l) in std::mem::take(&mut self.active).into_iter().zip(logits) {
            let (t, lp) = match a.logprobs_top {
                None => (a.sampler.sample(&l)?, None),
                Some(n) => {
                    let (t, lp) = a.sampler.sample_with_logprobs(&l, usize::from(n))?;
                    a.logprobs.push(lp.clone());
                    (t, Some(lp))
                }
            };
            a.generated.push(t);
            out.push(StepToken {
                id: a.id,
                token: t,
                logprobs: lp,
            });
            if a.stop.contains(&t) {
                self.finish(a, FinishReason::Stop)?;
            } else if a.generated.len() >= a.max_new {
                self.finish(a, FinishReason::Length)?;
            } else {
                a.pending.clear();
                a.pending.push(t);
                still.push(a);
            }
        }
        self.active = still;
        Ok(out)
    }

    fn finish(&mut self, a: Active, reason: FinishReason) -> Result<()> {
        let recorder = a.observer.recorder;
        let commitments = match &recorder {
            Some(r) => Some(CommitmentTree::new(r.entries())?),
            None => None,
        };
        self.finished.push(Finished {
            id: a.id,
            tokens: a.generated,
            reason,
            commitments,
            recorder,
            logprobs: a.logprobs,
        });
        Ok(())
    }

    /// Ends a running sequence early (a stop string matched, or its caller
    /// went away); it is returned by [`take_finished`](Self::take_finished)
    /// with what it generated so far and [`FinishReason::Stop`]. Returns
    /// false if no such sequence is running.
    pub fn stop(&mut self, id: SeqId) -> Result<bool> {
        let Some(pos) = self.active.iter().position(|a| a.id == id) else {
            return Ok(false);
        };
        let a = self.active.swap_remove(pos);
        self.finish(a, FinishReason::Stop)?;
        Ok(true)
    }

    /// Removes and returns the sequences that completed.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    /// Runs every admitted sequence to completion.
    pub fn run_to_completion(&mut self) -> Result<Vec<Finished>> {
        while !self.is_idle() {
            self.step()?;
        }
        let mut f = self.take_finished();
        f.sort_by_key(|f| f.id);
        Ok(f)
    }
}

/// Generates for one request alone.
pub fn generate(model: &Model, req: GenerateRequest) -> Result<Finished> {
    let mut b = Batcher::new(model);
    b.add(req)?;
    b.run_to_completion()?
        .pop()
        .ok_or_else(|| EngineError::InvalidRequest("no output".into()))
}

/// Runs the whole model over `tokens` in one prefill pass and returns every
/// layer's input states plus the final states (`n_layers + 1` matrices): what a
/// node keeps to answer openings, and what the calibration perturbs.
pub fn trace_layers(model: &Model, tokens: &[u32]) -> Result<Vec<HiddenStates>> {
    let n = model.n_layers();
    let mut cache = model.new_cache(0..n)?;
    let mut x = model.embed(tokens)?;
    let mut out = Vec::with_capacity(n + 1);
    for l in 0..n {
        out.push(x.clone());
        let rows = x.rows();
        let mut segs = [Segment::new(&mut cache, rows)];
        model.forward_layers(l..l + 1, &mut x, &mut segs)?;
    }
    out.push(x);
    Ok(out)
}
