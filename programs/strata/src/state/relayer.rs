use anchor_lang::prelude::*;

/// A relayer the admin allowed to post receipt batches.
#[account]
#[derive(InitSpace, Debug)]
pub struct Relayer {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// The relayer's signing key.
    pub authority: Pubkey,
    /// Batches it has posted.
    pub batches_posted: u64,
    /// Room for later fields.
    pub reserved: [u8; 16],
}

impl Relayer {
    /// PDA seed prefix; the relayer's key follows.
    pub const SEED: &'static [u8] = b"relayer";
}
