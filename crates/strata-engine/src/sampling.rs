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
        self.pick(logits, None).map(|(t, _)| t)
    }

    /// Picks the next token exactly as [`sample`](Self::sample) does (same
    /// token, same random draw) and also returns its log-probability and the
    /// `top` most likely tokens (at most [`MAX_TOP_LOGPROBS`]) under the
    /// distribution it was drawn from: the log-softmax of the raw logits when
    /// greedy; otherwise the logits divided by the temperature, cut to top-k
    /// and top-p and renormalised. Tokens the cut removed are never listed.
    pub fn sample_with_logprobs(
        &mut self,
        logits: &[f32],
        top: usize,
    ) -> Result<(u32, TokenLogprobs)> {
        let (token, lp) = self.pick(logits, Some(top.min(MAX_TOP_LOGPROBS)))?;
        // `pick` always computes them when asked.
        let lp = lp.ok_or_else(|| EngineError::InvalidRequest("no logprobs".into()))?;
        Ok((token, lp))
    }

    /// The one sampling routine behind [`sample`](Self::sample) and
    /// [`sample_with_logprobs`](Self::sample_with_logprobs), so that the token
    /// and its log-probability come from the same sorted, truncated,
    /// normalised distribution. With `top` None it does exactly what it
    /// always did (audits replay it bit for bit); the log-probability work is
    /// only added on top, never changing a value the draw depends on.
    fn pick(&mut self, logits: &[f32], top: Option<usize>) -> Result<(u32, Option<TokenLogprobs>)> {
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
            let lp = top.map(|n| greedy_logprobs(logits, best, n));
            return Ok((best as u32, lp));
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
            // No usable distribution: the top candidate is taken for sure.
            let lp = top.map(|n| TokenLogprobs {
                token: idx[0],
                logprob: 0.0,
                top: if n > 0 {
                    vec![(idx[0], 0.0)]
                } else {
                    Vec::new()
                },
            });
            return Ok((idx[0], lp));
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
        let mut chosen = idx.len() - 1;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                chosen = i;
                break;
            }
            u -= p;
        }
        let lp = top.map(|n| {
            // In log space, so that a kept but very unlikely token keeps a
            // finite value: log(exp(z_i) / sum / total) with z_i the scaled
            // logit relative to the maximum.
            // Rounding can leave a sure token a hair above 0: a probability
            // is at most 1.
            let norm = sum.ln() + total.ln();
            let logprob =
                |i: usize| ((f64::from(key(logits[idx[i] as usize])) - max) / t - norm).min(0.0);
            TokenLogprobs {
                token: idx[chosen],
                logprob: logprob(chosen),
                // `idx` is already in descending order of probability.
                top: (0..n.min(idx.len()))
                    .map(|i| (idx[i], logprob(i)))
                    .collect(),
            }
        });
        Ok((idx[chosen], lp))
    }
}

/// Most alternatives [`Sampler::sample_with_logprobs`] lists (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The log-probabilities of one sampled position, under the distribution the
/// sampler drew from (see [`Sampler::sample_with_logprobs`]): natural
/// logarithms, computed in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The token picked.
    pub token: u32,
    /// Its log-probability (≤ 0; `-inf` for a token that had no chance).
    pub logprob: f64,
    /// The most likely tokens with their log-probabilities, most likely
    /// first (ties by ascending id), as many as asked for and kept.
    pub top: Vec<(u32, f64)>,
}

/// Log-softmax of the raw logits for a greedy pick of `best`, with the `n`
/// most likely tokens. NaN counts as `-inf`, as when picking.
fn greedy_logprobs(logits: &[f32], best: usize, n: usize) -> TokenLogprobs {
    let key = |v: f32| {
        if v.is_nan() {
            f64::NEG_INFINITY
        } else {
            f64::from(v)
        }
    };
    let max = key(logits[best]);
    let sum: f64 = logits.iter().map(|&v| (key(v) - max).exp()).sum();
    if !(max.is_finite() && sum.is_finite() && sum > 0.0) {
        // Every logit -inf (or +inf): the argmax is taken for sure.
        return TokenLogprobs {
            token: best as u32,
            logprob: 0.0,
            top: if n > 0 {
                vec![(best as u32, 0.0)]
            } else {
                Vec::new()
            },
        };
    }
    let lse = max + sum.ln();
    let mut top: Vec<(u32, f64)> = Vec::with_capacity(n + 1);
    if n > 0 {
        // One pass keeping the `n` best in order: n ≤ 20, the vocabulary is large.
        for (i, &v) in logits.iter().enumerate() {
            let x = key(v);
            if top.len() == n && top.last().is_some_and(|&(_, y)| x <= y) {
                continue;
            }
            // Ties keep the lower id first: insert after equal values.
            let at = top.partition_point(|&(_, y)| y >= x);
            top.insert(at, (i as u32, x));
            top.truncate(n);
        }
    }
    TokenLogprobs {
        token: best as u32,
        logprob: max - lse,
        top: top.into_iter().map(|(i, x)| (i, x - lse)).collect(),
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

    /// The sequences `sample` gave before logprobs existed (computed with
    /// that code): audits replay the sampler, so its draws must not move.
    #[test]
    fn sample_is_unchanged() {
        let logits: Vec<f32> = (0..300)
            .map(|i| ((i * 37) % 101) as f32 * 0.05 - 2.0)
            .collect();
        let pinned: [(SamplingParams, [u32; 24]); 3] = [
            (
                SamplingParams {
                    temperature: 0.8,
                    top_k: 40,
                    top_p: 0.9,
                    seed: 7,
                },
                [
                    161, 161, 38, 139, 281, 19, 232, 98, 120, 259, 262, 120, 79, 90, 221, 79, 292,
                    131, 292, 262, 49, 270, 30, 131,
                ],
            ),
            (
                SamplingParams {
                    temperature: 1.3,
                    top_k: 0,
                    top_p: 1.0,
                    seed: 123,
                },
                [
                    26, 150, 128, 283, 229, 267, 10, 70, 49, 131, 217, 210, 150, 109, 32, 79, 256,
                    216, 205, 90, 267, 262, 68, 103,
                ],
            ),
            (
                SamplingParams {
                    temperature: 0.5,
                    top_k: 5,
                    top_p: 1.0,
                    seed: 99,
                },
                [
                    60, 161, 131, 60, 60, 60, 232, 232, 60, 60, 30, 30, 161, 30, 131, 30, 60, 131,
                    60, 161, 60, 161, 30, 161,
                ],
            ),
        ];
        for (params, want) in pinned {
            let mut s = Sampler::new(params).unwrap();
            let got: Vec<u32> = (0..24).map(|_| s.sample(&logits).unwrap()).collect();
            assert_eq!(got, want, "{params:?}");
            // Asking for logprobs draws the very same tokens.
            let mut s = Sampler::new(params).unwrap();
            let with: Vec<u32> = (0..24)
                .map(|_| s.sample_with_logprobs(&logits, 20).unwrap().0)
                .collect();
            assert_eq!(with, want, "{params:?} with logprobs");
        }
    }

    /// log-softmax of `x / t` in f64, written plainly.
    fn log_softmax(logits: &[f32], t: f64) -> Vec<f64> {
        let z: Vec<f64> = logits.iter().map(|&v| f64::from(v) / t).collect();
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        z.iter().map(|v| v - lse).collect()
    }

    fn some_logits() -> Vec<f32> {
        (0..500)
            .map(|i| ((i * 7919) % 613) as f32 * 0.013 - 3.0)
            .collect()
    }

    #[test]
    fn greedy_logprobs_are_the_log_softmax_of_the_raw_logits() {
        let logits = some_logits();
        let want = log_softmax(&logits, 1.0);
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        let (tok, lp) = s.sample_with_logprobs(&logits, 5).unwrap();
        assert_eq!(
            tok,
            Sampler::new(SamplingParams::greedy())
                .unwrap()
                .sample(&logits)
                .unwrap()
        );
        assert_eq!(lp.token, tok);
        assert!((lp.logprob - want[tok as usize]).abs() < 1e-12);
        assert_eq!(lp.top.len(), 5);
        assert_eq!(lp.top[0].0, tok);
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| {
            want[b as usize]
                .total_cmp(&want[a as usize])
                .then(a.cmp(&b))
        });
        for (k, &(id, l)) in lp.top.iter().enumerate() {
            assert_eq!(id, order[k]);
            assert!((l - want[id as usize]).abs() < 1e-12);
        }
        // More than OpenAI's 20 is capped; none at all is an empty list.
        assert_eq!(
            s.sample_with_logprobs(&logits, 100).unwrap().1.top.len(),
            20
        );
        assert!(s.sample_with_logprobs(&logits, 0).unwrap().1.top.is_empty());
    }

    #[test]
    fn sampled_logprob_is_the_tempered_log_softmax_without_truncation() {
        let logits = some_logits();
        let params = SamplingParams {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            seed: 3,
        };
        let want = log_softmax(&logits, f64::from(params.temperature));
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..50 {
            let (tok, lp) = s.sample_with_logprobs(&logits, 3).unwrap();
            assert_eq!(lp.token, tok);
            assert!((lp.logprob - want[tok as usize]).abs() < 1e-9, "{tok}");
            for &(id, l) in &lp.top {
                assert!((l - want[id as usize]).abs() < 1e-9);
                assert!(l >= lp.top[2].1);
            }
        }
    }

    #[test]
    fn truncated_distributions_list_only_kept_tokens() {
        let logits = some_logits();
        for params in [
            SamplingParams {
                temperature: 1.0,
                top_k: 7,
                top_p: 1.0,
                seed: 1,
            },
            SamplingParams {
                temperature: 0.9,
                top_k: 0,
                top_p: 0.3,
                seed: 2,
            },
            SamplingParams {
                temperature: 1.2,
                top_k: 12,
                top_p: 0.5,
                seed: 5,
            },
        ] {
            // The kept set, computed independently: top-k by logit, then the
            // smallest prefix whose tempered probability reaches top_p.
            let mut order: Vec<u32> = (0..logits.len() as u32).collect();
            order.sort_by(|&a, &b| {
                logits[b as usize]
                    .total_cmp(&logits[a as usize])
                    .then(a.cmp(&b))
            });
            if params.top_k > 0 {
                order.truncate(params.top_k);
            }
            let t = f64::from(params.temperature);
            let sub: Vec<f32> = order.iter().map(|&i| logits[i as usize]).collect();
            let p: Vec<f64> = log_softmax(&sub, t).iter().map(|l| l.exp()).collect();
            let mut acc = 0.0;
            let mut keep = p.len();
            for (i, q) in p.iter().enumerate() {
                acc += q;
                if acc >= f64::from(params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            let kept = &order[..keep];
            let mass: f64 = p[..keep].iter().sum();
            let mut s = Sampler::new(params).unwrap();
            for _ in 0..40 {
                let (tok, lp) = s.sample_with_logprobs(&logits, 20).unwrap();
                assert!(kept.contains(&tok), "{params:?}: {tok} not kept");
                let pos = kept.iter().position(|&k| k == tok).unwrap();
                let want = p[pos].ln() - mass.ln();
                assert!((lp.logprob - want).abs() < 1e-9, "{params:?}");
                assert!(lp.top.len() <= keep.min(20));
                assert!(lp.top.iter().all(|(id, _)| kept.contains(id)));
                let sum: f64 = lp.top.iter().map(|(_, l)| l.exp()).sum();
                assert!(sum <= 1.0 + 1e-9, "{params:?}: {sum}");
                if keep <= 20 {
                    // Every kept token listed: the renormalised mass is 1.
                    assert!((sum - 1.0).abs() < 1e-9);
                }
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
