use anchor_lang::prelude::*;

/// A client's prepaid balance. Vouchers the client signs are paid from it;
/// withdrawals wait out a delay so that a client cannot pull funds from under
/// a node that already served it.
#[account]
#[derive(InitSpace, Debug)]
pub struct Escrow {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// The client's key (signs vouchers).
    pub client: Pubkey,
    /// Tokens available to pay vouchers.
    pub balance: u64,
    /// Amount requested for withdrawal (capped by `balance` when withdrawn).
    pub pending_withdrawal: u64,
    /// When the pending withdrawal may be taken.
    pub withdraw_after: i64,
    /// Everything ever paid out of this escrow to nodes (fees included).
    pub total_paid: u64,
    /// Room for later fields.
    pub reserved: [u8; 32],
}

impl Escrow {
    /// PDA seed prefix; the client's key follows.
    pub const SEED: &'static [u8] = b"escrow";
}
