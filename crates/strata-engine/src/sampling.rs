//! Choosing the next token from logits: greedy, or temperature / top-k / top-p
//! sampling driven by an explicit seed, so that the same request with the same
//! seed gives the same tokens on the same machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};

/// How to pick tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = no limit).
    pub top_p: f32,
    /// Seed of the sampler's random stream.
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding.
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(EngineError::InvalidRequest(format!(
                "temperature {} must be finite and >= 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::InvalidRequest(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

/// A sampler: parameters plus the seeded random stream of one sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
        })
    }

    /// The sampler of the same sequence as it stands before generating token
    /// number `step` (0 for the first generated token): what a verifier uses
    /// to re-check one sampled position without replaying all before it.
    /// Each non-greedy pick draws exactly one `u64` (two ChaCha words), so
    /// the stream position of step `n` is word `2n`.
    pub fn at_step(params: SamplingParams, step: u64) -> Result<Self> {
        let mut s = Self::new(params)?;
        if params.temperature != 0.0 {
            s.rng.set_word_pos(u128::from(step) * 2);
        }
        Ok(s)
    }

    /// Picks the next token.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(EngineError::InvalidRequest("empty logits".into()));
        }
        // NaN never wins: it ranks below every number.
        let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
        if self.params.temperature == 0.0 {
            let mut best = 0usize;
            for (i, &v) in logits.iter().enumerate() {
                if key(v) > key(logits[best]) {
                    best = i;
                }
            }
            return Ok(best as u32);
        }
        // Candidates by descending logit, ties by ascending id (a total order, so
        // the result does not depend on the sort's stability).
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| {
            key(logits[b as usize])
                .total_cmp(&key(logits[a as usize]))
                .then(a.cmp(&b))
        });
        if self.params.top_k > 0 && self.params.top_k < idx.len() {
            idx.truncate(self.params.top_k);
        }
        let t = f64::from(self.params.temperature);
        let max = f64::from(key(logits[idx[0] as usize]));
        let mut probs: Vec<f64> = idx
            .iter()
            .map(|&i| ((f64::from(key(logits[i as usize])) - max) / t).exp())
            .collect();
        let sum: f64 = probs.iter().sum();
        if !(sum > 0.0 && sum.is_finite()) {
            return Ok(idx[0]);
        }
        for p in probs.iter_mut() {
            *p /= sum;
        }
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= f64::from(self.params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                return Ok(idx[i]);
            }
            u -= p;
        }
        Ok(idx[idx.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, f32::NAN]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_restricts() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 3,
            top_p: 0.95,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(p).unwrap();
            (0..100).map(|_| s.sample(&logits).unwrap()).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(p).unwrap();
            (0..100).map(|_| s.sample(&logits).unwrap()).collect()
        };
        assert_eq!(a, b);
        // top-3 of logits with value 1.8 are ids 6, 13, 20.
        assert!(a.iter().all(|t| [6, 13, 20].contains(t)));
        assert!(a.iter().any(|&t| t != a[0]), "sampling should vary");
    }

    #[test]
    fn any_step_can_be_replayed_on_its_own() {
        let logits: Vec<f32> = (0..300).map(|i| ((i * 37) % 101) as f32 * 0.05).collect();
        for params in [
            SamplingParams {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.9,
                seed: 7,
            },
            SamplingParams::greedy(),
        ] {
            let mut s = Sampler::new(params).unwrap();
            let seq: Vec<u32> = (0..64).map(|_| s.sample(&logits).unwrap()).collect();
            for (step, &t) in seq.iter().enumerate() {
                let mut at = Sampler::at_step(params, step as u64).unwrap();
                assert_eq!(at.sample(&logits).unwrap(), t, "step {step}");
            }
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let mut p = SamplingParams::greedy();
        p.temperature = f32::NAN;
        assert!(Sampler::new(p).is_err());
        p.temperature = 1.0;
        p.top_p = 0.0;
        assert!(Sampler::new(p).is_err());
    }
}
