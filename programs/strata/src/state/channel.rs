use anchor_lang::prelude::*;

/// How much of a client's cumulative vouchers to one node has been redeemed.
/// A voucher carries a cumulative amount, so a later one supersedes an earlier
/// one and only the difference is paid.
#[account]
#[derive(InitSpace, Debug)]
pub struct Channel {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// Paying client.
    pub client: Pubkey,
    /// Serving node's operator key.
    pub node: Pubkey,
    /// Cumulative amount already redeemed.
    pub redeemed: u64,
    /// Room for later fields.
    pub reserved: [u8; 16],
}

impl Channel {
    /// PDA seed prefix; the client's and the node's keys follow.
    pub const SEED: &'static [u8] = b"channel";
}
