use anchor_lang::prelude::*;

/// Cumulative rewards a node operator has claimed. Kept apart from `Node` so
/// that deregistering and registering again cannot reset it.
#[account]
#[derive(InitSpace, Debug)]
pub struct ClaimRecord {
    /// Layout version (0 until the first claim initialises it).
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// The operator.
    pub operator: Pubkey,
    /// Cumulative amount claimed.
    pub claimed: u64,
    /// Latest epoch claimed against.
    pub last_epoch: i64,
    /// Room for later fields.
    pub reserved: [u8; 16],
}

impl ClaimRecord {
    /// PDA seed prefix; the operator's key follows.
    pub const SEED: &'static [u8] = b"claim";
}
