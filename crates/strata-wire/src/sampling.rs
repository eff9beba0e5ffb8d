//! Sampling settings: part of a task's request, and committed in its receipt
//! so that a verifier can re-sample any generated token.

use borsh::{BorshDeserialize, BorshSerialize};

/// Sampling settings (temperature 0 is greedy).
#[derive(Debug, Clone, Copy, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct Sampling {
    /// Temperature.
    pub temperature: f32,
    /// Nucleus threshold (1 = off).
    pub top_p: f32,
    /// Top-k (0 = off).
    pub top_k: u32,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding: the most likely token at every step.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
    };
}
