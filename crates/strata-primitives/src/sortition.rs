//! Stake-weighted sortition. Each verifier is selected independently with
//! probability `min(1, committee_size · stake / total_stake)`, decided by a
//! hash of a seed and the verifier's key, so anyone can check a selection
//! without a list of verifiers held anywhere.

use solana_sha256_hasher::hashv;

/// The seed of a challenge's committee: a slot hash the challenger could not
/// choose, mixed with the challenge's own address.
pub fn challenge_seed(slot_hash: &[u8; 32], challenge: &[u8; 32]) -> [u8; 32] {
    hashv(&[b"strata:sortition", slot_hash, challenge]).to_bytes()
}

/// Whether `verifier` with `stake` out of `total` is selected for `seed` with
/// an expected committee of `committee` members.
pub fn is_selected(
    seed: &[u8; 32],
    verifier: &[u8; 32],
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
    let draw = hashv(&[seed, verifier]).to_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&draw[..8]);
    // draw / 2^64 < weight / total, in integers.
    (u128::from(u64::from_le_bytes(head)) * u128::from(total)) < (weight << 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_stake() {
        let seed = challenge_seed(&[7; 32], &[8; 32]);
        assert!(
            !is_selected(&seed, &[1; 32], 0, 100, 3),
            "no stake, no seat"
        );
        assert!(
            is_selected(&seed, &[1; 32], 40, 100, 3),
            "3 x 40 >= 100 always sits"
        );
        let picked = (0..1000u32)
            .filter(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                is_selected(&seed, &k, 1, 100, 3)
            })
            .count();
        // Expected 30 of 1000 (p = 3 %); far outside this band means a broken draw.
        assert!((10..=60).contains(&picked), "{picked}");
    }
}
