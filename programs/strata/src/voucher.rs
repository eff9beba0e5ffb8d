//! The messages clients and verifiers sign. Fixed-size, domain-separated and
//! bound to this program's id so a signature means one thing only.

use anchor_lang::prelude::Pubkey;

/// Domain tag of a payment voucher.
pub const VOUCHER_DOMAIN: &[u8; 8] = b"STRVOUC1";
/// Length of a voucher message.
pub const VOUCHER_LEN: usize = 8 + 32 + 32 + 8;
/// Domain tag of a challenge verdict.
pub const VERDICT_DOMAIN: &[u8; 8] = b"STRVERD1";
/// Length of a verdict message.
pub const VERDICT_LEN: usize = 8 + 32 + 32 + 1;

/// The bytes a client signs to pay `node` a running total of `cumulative`.
pub fn voucher_message(program_id: &Pubkey, node: &Pubkey, cumulative: u64) -> [u8; VOUCHER_LEN] {
    let mut m = [0u8; VOUCHER_LEN];
    m[..8].copy_from_slice(VOUCHER_DOMAIN);
    m[8..40].copy_from_slice(program_id.as_ref());
    m[40..72].copy_from_slice(node.as_ref());
    m[72..].copy_from_slice(&cumulative.to_le_bytes());
    m
}

/// Splits a voucher message into (node, cumulative) if it is one for `program_id`.
pub fn parse_voucher(program_id: &Pubkey, message: &[u8]) -> Option<(Pubkey, u64)> {
    if message.len() != VOUCHER_LEN
        || &message[..8] != VOUCHER_DOMAIN
        || &message[8..40] != program_id.as_ref()
    {
        return None;
    }
    let node = Pubkey::try_from(&message[40..72]).ok()?;
    let cumulative = u64::from_le_bytes(message[72..].try_into().ok()?);
    Some((node, cumulative))
}

/// The bytes a verifier signs to judge `challenge`.
pub fn verdict_message(program_id: &Pubkey, challenge: &Pubkey, upheld: bool) -> [u8; VERDICT_LEN] {
    let mut m = [0u8; VERDICT_LEN];
    m[..8].copy_from_slice(VERDICT_DOMAIN);
    m[8..40].copy_from_slice(program_id.as_ref());
    m[40..72].copy_from_slice(challenge.as_ref());
    m[72] = u8::from(upheld);
    m
}
