use anchor_lang::prelude::*;

/// Where a challenge stands.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum ChallengeStatus {
    /// Waiting for a verdict.
    Open,
    /// The quorum found the node guilty; it was slashed.
    Upheld,
    /// The quorum found the receipt honest; the bond was forfeited.
    Rejected,
    /// No verdict before the deadline; the bond went back.
    Expired,
}

/// A bonded accusation that one receipt in a posted batch was served dishonestly.
#[account]
#[derive(InitSpace, Debug)]
pub struct Challenge {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// Who opened it and gets the bond back (and a share of the slash).
    pub challenger: Pubkey,
    /// The accused node's operator key.
    pub node: Pubkey,
    /// Batch that holds the receipt.
    pub batch: Pubkey,
    /// Leaf index of the receipt in the batch.
    pub leaf_index: u32,
    /// The task the receipt is for.
    pub task_id: [u8; 32],
    /// Bond locked.
    pub bond: u64,
    /// Unix time opened.
    pub opened_at: i64,
    /// Verdicts are accepted until this time; after it the challenge expires.
    pub deadline: i64,
    /// Sortition seed: a slot hash the challenger could not choose, mixed with this account's key.
    pub seed: [u8; 32],
    /// Verifier stake total at opening (the sortition denominator).
    pub total_verifier_stake: u64,
    /// Current status.
    pub status: ChallengeStatus,
    /// Amount slashed, when upheld.
    pub slashed: u64,
    /// Room for later fields.
    pub reserved: [u8; 16],
}

impl Challenge {
    /// PDA seed prefix; the batch key and the leaf index (u32 LE) follow.
    pub const SEED: &'static [u8] = b"challenge";
}
