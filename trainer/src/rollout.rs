//! Rollouts: groups of sampled completions with the sampler's per-token
//! log-probabilities, the policy version that produced them and their
//! reward, and the in-process sampler (the engine nodes run, with the
//! adapter nodes would serve) used by benchmarks and tests.

use std::sync::Arc;

use strata_engine::{Adapter, Batcher, ChatMessage, Engine, GenerateRequest, SamplingParams};
use strata_rl::TaskPrompt;

use crate::error::{Result, TrainerError};

/// One sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The prompt's tokens (chat template applied), as the sampler saw them.
    pub prompt_tokens: Vec<u32>,
    /// The sampled tokens (with the stop token when it stopped).
    pub completion: Vec<u32>,
    /// The sampler's log-probability of each completion token.
    pub logprobs: Vec<f32>,
    /// The policy version that sampled it.
    pub version: u64,
    /// The reward, recomputed by the trainer from the text.
    pub reward: f32,
}

/// A step's worth of rollouts: `prompts × group_size` completions, each
/// prompt's group consecutive.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutBatch {
    /// Completions per prompt.
    pub group_size: usize,
    /// The temperature they were sampled at (the trainer scores at the same).
    pub temperature: f64,
    /// The completions.
    pub rollouts: Vec<Rollout>,
}

impl RolloutBatch {
    /// The oldest policy version in the batch.
    pub fn oldest_version(&self) -> u64 {
        self.rollouts.iter().map(|r| r.version).min().unwrap_or(0)
    }

    /// Mean reward.
    pub fn mean_reward(&self) -> f64 {
        let n = self.rollouts.len().max(1) as f64;
        self.rollouts
            .iter()
            .map(|r| f64::from(r.reward))
            .sum::<f64>()
            / n
    }
}

/// How completions are sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// Completions per prompt.
    pub group_size: usize,
    /// Token budget per completion.
    pub max_tokens: usize,
    /// Sampling temperature (1 keeps the sampler's logprobs those of the
    /// policy itself, which is what the importance ratio compares).
    pub temperature: f32,
    /// Seed of the job; each member's is derived from it.
    pub seed: u64,
}

/// The engine in this process, sampling with or without an adapter.
pub struct LocalSampler {
    engine: Engine,
    stop: Vec<u32>,
}

impl std::fmt::Debug for LocalSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSampler").finish_non_exhaustive()
    }
}

impl LocalSampler {
    /// Wraps a loaded engine.
    pub fn new(engine: Engine) -> Self {
        let stop = engine.end_of_turn_tokens();
        Self { engine, stop }
    }

    /// The prompt's tokens: one user turn in the chat template, as the
    /// gateway's rollout jobs send it.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>> {
        Ok(self
            .engine
            .chat_prompt(&[ChatMessage::new("user", prompt)])?)
    }

    /// The completion's text without its stop token: what rewards score.
    pub fn completion_text(&self, completion: &[u32]) -> Result<String> {
        let body = match completion.last() {
            Some(t) if self.stop.contains(t) => &completion[..completion.len() - 1],
            _ => completion,
        };
        Ok(self.engine.tokenizer.decode(body, true)?)
    }

    /// Samples `spec.group_size` completions of every prompt under `adapter`
    /// (the base model when `None`), as policy `version`, all in one batch.
    pub fn sample(
        &self,
        adapter: Option<&Arc<Adapter>>,
        version: u64,
        prompts: &[TaskPrompt],
        spec: &SampleSpec,
    ) -> Result<RolloutBatch> {
        let mut batcher = Batcher::new(&self.engine.model);
        let mut order = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let tokens = self.prompt_tokens(&p.prompt)?;
            for m in 0..spec.group_size {
                let mut req = GenerateRequest::greedy(tokens.clone(), spec.max_tokens);
                req.sampling = SamplingParams {
                    temperature: spec.temperature,
                    top_k: 0,
                    top_p: 1.0,
                    seed: strata_rl::member_seed(spec.seed, i as u64, m as u64),
                };
                req.stop_tokens = self.stop.clone();
                req.logprobs = Some(0);
                req.adapter = adapter.cloned();
                order.push((batcher.add(req)?, i, tokens.clone()));
            }
        }
        let mut done = batcher.run_to_completion()?;
        let mut rollouts = Vec::with_capacity(order.len());
        for (id, i, prompt_tokens) in order {
            let pos = done
                .iter()
                .position(|f| f.id == id)
                .ok_or_else(|| TrainerError::Invalid("the engine lost a sequence".into()))?;
            let f = done.swap_remove(pos);
            let text = self.completion_text(&f.tokens)?;
            let p = &prompts[i];
            rollouts.push(Rollout {
                prompt_tokens,
                logprobs: f.logprobs.iter().map(|l| l.logprob as f32).collect(),
                completion: f.tokens,
                version,
                reward: strata_rl::score(p.reward, &p.expected, &text)?,
            });
        }
        Ok(RolloutBatch {
            group_size: spec.group_size,
            temperature: f64::from(spec.temperature),
            rollouts,
        })
    }

    /// Mean reward of greedy completions of `prompts` under `adapter`: the
    /// learning curve's measure (greedy, so it moves only when the policy's
    /// preferred answer does).
    pub fn evaluate(
        &self,
        adapter: Option<&Arc<Adapter>>,
        prompts: &[TaskPrompt],
        max_tokens: usize,
    ) -> Result<f64> {
        let mut batcher = Batcher::new(&self.engine.model);
        let mut order = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let mut req = GenerateRequest::greedy(self.prompt_tokens(&p.prompt)?, max_tokens);
            req.stop_tokens = self.stop.clone();
            req.adapter = adapter.cloned();
            order.push((batcher.add(req)?, i));
        }
        let done = batcher.run_to_completion()?;
        let mut total = 0.0;
        for f in &done {
            let (_, i) = order
                .iter()
                .find(|(id, _)| *id == f.id)
                .ok_or_else(|| TrainerError::Invalid("the engine lost a sequence".into()))?;
            let p = &prompts[*i];
            let text = self.completion_text(&f.tokens)?;
            total += f64::from(strata_rl::score(p.reward, &p.expected, &text)?);
        }
        Ok(total / prompts.len().max(1) as f64)
    }
}
