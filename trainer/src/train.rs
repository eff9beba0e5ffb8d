//! One GRPO update from a batch of rollouts, and the adapter it publishes.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use strata_engine::{Adapter, LoraPart};

use crate::error::{Result, TrainerError};
use crate::grpo::{group_advantages, grpo_loss, GrpoConfig, LossStats, TokenTerms};
use crate::optim::{AdamW, AdamWConfig};
use crate::policy::{PolicyModel, TokenBatch};
use crate::rollout::RolloutBatch;

/// What one update did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// The loss and its diagnostics.
    pub loss: LossStats,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Completions that carried a non-zero advantage (the others teach
    /// nothing and are not scored).
    pub used: usize,
    /// Tokens scored.
    pub tokens: usize,
}

/// The policy and its optimizer.
#[derive(Debug)]
pub struct Learner {
    /// The policy (base weights frozen, LoRA pairs trained).
    pub model: PolicyModel,
    /// AdamW over the pairs.
    pub opt: AdamW,
    /// The objective's constants.
    pub grpo: GrpoConfig,
    /// SHA-256 of the base model file: every adapter names it.
    pub base_model: [u8; 32],
    /// Completions scored per forward/backward pass.
    pub micro_batch: usize,
}

impl Learner {
    /// A learner for `model` with a fresh optimizer.
    pub fn new(
        model: PolicyModel,
        adam: AdamWConfig,
        grpo: GrpoConfig,
        base_model: [u8; 32],
    ) -> Result<Self> {
        let opt = AdamW::new(adam, &model.vars())?;
        Ok(Self {
            model,
            opt,
            grpo,
            base_model,
            micro_batch: 8,
        })
    }

    /// One update from `batch`. Rewards are group-normalised into
    /// advantages; completions whose advantage is zero are left out of the
    /// forward pass (their every term is zero) unless the KL term needs them.
    /// Returns `None` when no completion carries signal (nothing changes).
    pub fn step(&mut self, batch: &RolloutBatch) -> Result<Option<StepStats>> {
        let rewards: Vec<f32> = batch.rollouts.iter().map(|r| r.reward).collect();
        let adv = group_advantages(&rewards, batch.group_size)?;
        let keep: Vec<usize> = (0..adv.len())
            .filter(|&i| {
                (adv[i] != 0.0 || self.grpo.kl_beta > 0.0)
                    && !batch.rollouts[i].completion.is_empty()
            })
            .collect();
        if keep.is_empty() {
            return Ok(None);
        }
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = keep
            .iter()
            .map(|&i| {
                let r = &batch.rollouts[i];
                (r.prompt_tokens.clone(), r.completion.clone())
            })
            .collect();
        for &i in &keep {
            let r = &batch.rollouts[i];
            if r.logprobs.len() != r.completion.len() {
                return Err(TrainerError::Invalid(format!(
                    "a rollout has {} logprobs for {} tokens",
                    r.logprobs.len(),
                    r.completion.len()
                )));
            }
        }
        let total: usize = seqs.iter().map(|(_, c)| c.len()).sum();
        let vars = self.model.vars();
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut acc = LossStats::default();
        // Micro-batches bound the autograd graph's memory (every intermediate
        // of the forward pass is kept for the backward); their losses are
        // scaled to add up to the whole batch's token mean.
        for (chunk, ids) in seqs
            .chunks(self.micro_batch)
            .zip(keep.chunks(self.micro_batch))
        {
            let (n, stats, g) = self.micro_step(chunk, ids, &adv, batch, total)?;
            for (sum, g) in grads.iter_mut().zip(g) {
                *sum = match (sum.take(), g) {
                    (Some(a), Some(b)) => Some((a + b)?),
                    (a, b) => a.or(b),
                };
            }
            let w = n as f64 / total as f64;
            acc.loss += stats.loss;
            acc.clip_fraction += stats.clip_fraction * w;
            acc.mean_weight += stats.mean_weight * w;
            acc.capped_fraction += stats.capped_fraction * w;
            acc.kl += stats.kl * w;
        }
        let grad_norm = self.opt.step(&vars, &grads)?;
        let (stats, n) = (acc, total);
        Ok(Some(StepStats {
            loss: stats,
            grad_norm,
            used: keep.len(),
            tokens: n,
        }))
    }

    /// Scores one micro-batch (`seqs`, the batch's rollouts `ids`), and
    /// returns its token count, loss statistics and gradient per variable.
    fn micro_step(
        &self,
        seqs: &[(Vec<u32>, Vec<u32>)],
        ids: &[usize],
        adv: &[f32],
        batch: &RolloutBatch,
        total: usize,
    ) -> Result<(usize, LossStats, Vec<Option<Tensor>>)> {
        let dev = Device::Cpu;
        let tb = TokenBatch::new(seqs, &dev)?;
        let dtype = self.model.dtype();
        let behaviour: Vec<f32> = ids
            .iter()
            .flat_map(|&i| batch.rollouts[i].logprobs.iter().copied())
            .collect();
        let advantage: Vec<f32> = tb.seq_of.iter().map(|&s| adv[ids[s]]).collect();
        let n = tb.n_scored();
        let reference = match self.grpo.kl_beta > 0.0 {
            true => Some(
                self.model
                    .token_logprobs(&tb, false, batch.temperature)?
                    .detach(),
            ),
            false => None,
        };
        let logp = self.model.token_logprobs(&tb, true, batch.temperature)?;
        let terms = TokenTerms {
            prox: logp.detach(),
            behaviour: Tensor::from_vec(behaviour, n, &dev)?.to_dtype(dtype)?,
            advantage: Tensor::from_vec(advantage, n, &dev)?.to_dtype(dtype)?,
            reference,
            total_tokens: total,
        };
        let (loss, stats) = grpo_loss(&self.grpo, &logp, &terms)?;
        let store = loss.backward()?;
        let grads = self
            .model
            .vars()
            .iter()
            .map(|v| store.get(v.as_tensor()).cloned())
            .collect();
        Ok((n, stats, grads))
    }

    /// The current pairs as policy `version`'s adapter file.
    pub fn adapter(&self, version: u64) -> Result<Arc<Adapter>> {
        let lora = self.model.lora_config();
        let host = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let parts = self
            .model
            .pairs()
            .iter()
            .map(|p| {
                Ok(LoraPart {
                    layer: p.layer,
                    target: p.target,
                    a: host(p.a.as_tensor())?,
                    b: host(p.b.as_tensor())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Adapter::new(
            self.base_model,
            version,
            lora.rank,
            lora.alpha,
            parts,
        )?))
    }
}
