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
}
// A challenge with no verdict by its deadline is closed (`expire_challenge`),
// so the same receipt can be challenged again; it has no status of its own.

/// The parameters a challenge is judged by, copied from the config at opening.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct ChallengeTerms {
    /// Share of the accused's stake slashed if upheld, in basis points.
    pub slash_bps: u16,
    /// Share of the slash paid to the challenger, in basis points.
    pub challenger_share_bps: u16,
    /// Distinct selected verifiers a verdict needs.
    pub verifier_quorum: u8,
    /// Expected committee size of the sortition.
    pub committee_size: u8,
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
    /// Slot it was opened in: only verifiers whose weight predates it count.
    pub opened_slot: u64,
    /// The slot whose hash seeds the committee (after `opened_slot`, so the
    /// challenger cannot know the committee when it opens).
    pub seed_slot: u64,
    /// Sortition seed (the seed slot's hash mixed with this account's key);
    /// all zeros until `draw_committee`.
    pub seed: [u8; 32],
    /// Verifier stake total at opening, without the accused's own (the
    /// sortition denominator).
    pub total_verifier_stake: u64,
    /// Parameters fixed when the challenge opened, so a later
    /// `update_config` cannot change the rules of a running challenge.
    pub terms: ChallengeTerms,
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
