use anchor_lang::prelude::*;

/// The reward root for one epoch: leaves are cumulative rewards per node since
/// genesis, so a claim pays the difference from what the node already claimed.
#[account]
#[derive(InitSpace, Debug)]
pub struct RewardEpoch {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// Epoch number (PDA seed).
    pub epoch: i64,
    /// Merkle root over `Ledger::reward_leaf` leaves (`strata_primitives::merkle::domains`).
    pub root: [u8; 32],
    /// Leaves in the tree (needed to check a proof's shape).
    pub leaf_count: u32,
    /// Amount the authority declared new this epoch (at most the cap).
    pub declared: u64,
    /// What claims against this root may still pay (the circuit breaker).
    pub remaining: u64,
    /// Unix time published.
    pub published_at: i64,
    /// Room for later fields.
    pub reserved: [u8; 16],
}

impl RewardEpoch {
    /// PDA seed prefix; the epoch (i64 LE) follows.
    pub const SEED: &'static [u8] = b"epoch";
}
