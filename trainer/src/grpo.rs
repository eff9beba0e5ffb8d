//! GRPO's objective: group-normalised advantages, the clipped importance
//! ratio, a truncated importance weight for tokens sampled by another policy
//! than the one being updated, and an optional KL penalty to the reference.
//!
//! Per scored token t of a completion with advantage `A`:
//!
//! ```text
//! r_t   = exp(logπ_θ(t) − logπ_prox(t))             the PPO ratio
//! w_t   = min(exp(logπ_prox(t) − logπ_behav(t)), C)   truncated importance weight
//! L     = −(1/N) Σ_t w_t · min(r_t·A, clip(r_t, 1−ε, 1+ε)·A)  +  β·(1/N) Σ_t k3_t
//! k3_t  = exp(logπ_ref(t) − logπ_θ(t)) − (logπ_ref(t) − logπ_θ(t)) − 1
//! ```
//!
//! `π_behav` is the policy that sampled the token: the logprobs a node
//! returned with the rollout, at the version that produced it (with a
//! staleness budget S > 0, an older version than the trainer's). `π_prox`
//! is the trainer's policy when the update starts (its logprobs detached),
//! so the clip bounds how far one update moves from where it started, while
//! `w` corrects, within a cap, for the sampler having been another policy:
//! older weights, and the engine's quantized arithmetic. N is the number of
//! scored tokens in the batch (a token-level mean: long completions are not
//! down-weighted per token).

use candle_core::Tensor;

use crate::error::{Result, TrainerError};

/// The objective's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoConfig {
    /// ε of the ratio clip.
    pub clip_eps: f64,
    /// C, the cap of the truncated importance weight.
    pub tis_cap: f64,
    /// β of the KL penalty to the reference (the base model); 0 skips the
    /// reference pass.
    pub kl_beta: f64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            clip_eps: 0.2,
            tis_cap: 2.0,
            kl_beta: 0.0,
        }
    }
}

/// Group-normalised advantages: members `g·size .. (g+1)·size` of `rewards`
/// are one prompt's group; each gets `(r − mean) / (std + 1e-4)` of its
/// group. A group whose members all scored the same teaches nothing and gets
/// zeros.
pub fn group_advantages(rewards: &[f32], group_size: usize) -> Result<Vec<f32>> {
    if group_size < 2 || !rewards.len().is_multiple_of(group_size) {
        return Err(TrainerError::Invalid(format!(
            "{} rewards do not split into groups of {group_size} (at least 2)",
            rewards.len()
        )));
    }
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group_size) {
        let n = g.len() as f64;
        let mean = g.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let var = g
            .iter()
            .map(|&r| (f64::from(r) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        for &r in g {
            out.push(if std < 1e-9 {
                0.0
            } else {
                ((f64::from(r) - mean) / (std + 1e-4)) as f32
            });
        }
    }
    Ok(out)
}

/// Per scored token, the numbers the loss needs besides the live logprobs.
#[derive(Debug)]
pub struct TokenTerms {
    /// logπ_prox, `[n]` (no gradient flows into it).
    pub prox: Tensor,
    /// logπ_behav, `[n]`: the sampler's logprobs.
    pub behaviour: Tensor,
    /// The token's completion's advantage, `[n]`.
    pub advantage: Tensor,
    /// logπ_ref, `[n]`, when the KL term is on.
    pub reference: Option<Tensor>,
    /// N of the mean: the batch's scored tokens, of which these `n` are a
    /// micro-batch (`n` itself when the batch is scored at once), so that
    /// micro-batch losses add up to the batch's.
    pub total_tokens: usize,
}

/// What one loss evaluation saw, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// The loss's value.
    pub loss: f64,
    /// Share of tokens whose ratio was clipped (the gradient of those is zero).
    pub clip_fraction: f64,
    /// Mean truncated importance weight.
    pub mean_weight: f64,
    /// Share of tokens whose weight hit the cap.
    pub capped_fraction: f64,
    /// Mean k3 estimate of KL(π_θ ‖ π_ref) (0 without a reference).
    pub kl: f64,
}

/// The GRPO loss of `logp` (live, differentiable logprobs of the scored
/// tokens) given `terms`; see the module's formula.
pub fn grpo_loss(
    cfg: &GrpoConfig,
    logp: &Tensor,
    terms: &TokenTerms,
) -> Result<(Tensor, LossStats)> {
    let n = logp.dims1()?;
    if n == 0 || terms.total_tokens < n {
        return Err(TrainerError::Invalid(format!(
            "{n} scored tokens of a batch of {}",
            terms.total_tokens
        )));
    }
    let share = n as f64 / terms.total_tokens as f64;
    let prox = terms.prox.detach();
    let ratio = (logp - &prox)?.exp()?;
    let lo = 1.0 - cfg.clip_eps;
    let hi = 1.0 + cfg.clip_eps;
    let adv = &terms.advantage;
    let unclipped = (&ratio * adv)?;
    let clipped = (ratio.clamp(lo, hi)? * adv)?;
    let surrogate = unclipped.minimum(&clipped)?;
    let weight = (&prox - &terms.behaviour)?
        .exp()?
        .clamp(0.0, cfg.tis_cap)?
        .detach();
    let mut loss = (surrogate * &weight)?.mean_all()?.affine(-share, 0.0)?;
    let mut kl = 0.0;
    if let (Some(reference), true) = (&terms.reference, cfg.kl_beta > 0.0) {
        let d = (reference - logp)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?.mean_all()?;
        kl = k3.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        loss = (loss + k3.affine(cfg.kl_beta * share, 0.0)?)?;
    }
    let host = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?)
    };
    let (r, w, a) = (host(&ratio)?, host(&weight)?, host(adv)?);
    let clipped_n = r
        .iter()
        .zip(&a)
        .filter(|(r, a)| (**a > 0.0 && **r > hi) || (**a < 0.0 && **r < lo))
        .count();
    let stats = LossStats {
        loss: loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        clip_fraction: clipped_n as f64 / n as f64,
        mean_weight: w.iter().sum::<f64>() / n as f64,
        capped_fraction: w.iter().filter(|w| **w >= cfg.tis_cap).count() as f64 / n as f64,
        kl,
    };
    Ok((loss, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_normalised_per_group_and_zero_for_flat_groups() {
        let a = group_advantages(&[1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5], 4).unwrap();
        assert!(
            (a[0] - 1.0).abs() < 1e-3 && (a[1] + 1.0).abs() < 1e-3,
            "{a:?}"
        );
        assert_eq!(&a[4..], &[0.0; 4]);
        assert!(group_advantages(&[1.0, 0.0, 1.0], 2).is_err());
        assert!(group_advantages(&[1.0], 1).is_err());
    }
}
