//! Stake-weighted verifier sortition. Each verifier is selected independently
//! with probability `min(1, committee_size * stake / total_verifier_stake)`,
//! decided by a hash of the challenge's seed and the verifier's key, so anyone
//! can check a selection without the program holding a list of verifiers.

use anchor_lang::prelude::Pubkey;
use solana_sha256_hasher::hashv;

/// The seed of a challenge: a slot hash the challenger could not choose,
/// mixed with the challenge's own address.
pub fn challenge_seed(slot_hash: &[u8; 32], challenge: &Pubkey) -> [u8; 32] {
    hashv(&[b"strata:sortition", slot_hash, challenge.as_ref()]).to_bytes()
}

/// Whether `verifier` with `stake` is in the committee for `seed`.
pub fn is_selected(
    seed: &[u8; 32],
    verifier: &Pubkey,
    stake: u64,
    total: u64,
    committee: u8,
) -> bool {
    if stake == 0 || total == 0 {
        return false;
    }
    let weight = u128::from(stake) * u128::from(committee);
    if weight >= u128::from(total) {
        return true;
    }
    let draw = hashv(&[seed, verifier.as_ref()]).to_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&draw[..8]);
    // draw / 2^64 < weight / total, in integers.
    (u128::from(u64::from_le_bytes(head)) * u128::from(total)) < (weight << 64)
}
