//! Which receipts are audited, which layers and positions are re-checked, and
//! which verifier does it: all derived from a batch's audit seed, so anyone
//! can recompute every assignment from public data (the Batch account's seed
//! and root, the receipt's leaf, the on-chain verifier set).
//!
//! The batch's audit seed comes from the hash of a slot after the batch was
//! posted ([`crate::slot_hashes`]): when a node signed its receipt, nobody,
//! the node included, could know whether it would be audited.

use solana_sha256_hasher::hashv;

/// Share of audits, in basis points, given to a second verifier as well: the
/// two must report the same work digest, which is how a verifier that
/// approves without re-running is found out (see `docs/verification.md`).
pub const CROSS_CHECK_BPS: u16 = 2_000;

/// One verifier that may be assigned audits: its key and its verifier stake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The verifier's operator key.
    pub key: [u8; 32],
    /// Its verifier stake (the weight of its draw).
    pub stake: u64,
}

/// The audit seed of a batch: the seed slot's hash mixed with the batch root.
pub fn batch_seed(slot_hash: &[u8; 32], batch_root: &[u8; 32]) -> [u8; 32] {
    hashv(&[b"strata:audit", slot_hash, batch_root]).to_bytes()
}

/// One receipt's draw: everything about its audit derives from it.
pub fn task_draw(batch_seed: &[u8; 32], receipt_leaf: &[u8; 32]) -> [u8; 32] {
    hashv(&[b"strata:audit:task", batch_seed, receipt_leaf]).to_bytes()
}

/// Whether the receipt with `draw` is audited at `rate_bps` (basis points).
pub fn is_audited(draw: &[u8; 32], rate_bps: u16) -> bool {
    // draw / 2^64 < rate / 10_000, in integers.
    u128::from(head_u64(draw)) * 10_000 < u128::from(rate_bps) << 64
}

/// `k` distinct layers of `0..n_layers` to re-run, ascending (all of them
/// when `k >= n_layers`).
pub fn layers(draw: &[u8; 32], n_layers: u32, k: u32) -> Vec<u32> {
    distinct(draw, b"layers", n_layers, k)
}

/// `m` distinct output positions of `0..n_outputs` whose sampling is
/// re-checked, ascending.
pub fn positions(draw: &[u8; 32], n_outputs: u32, m: u32) -> Vec<u32> {
    distinct(draw, b"positions", n_outputs, m)
}

/// The verifier assigned to the receipt with `draw`: a stake-weighted pick
/// among `candidates`, which the caller has filtered (eligible verifiers,
/// never the serving node) and sorted by key. `None` when nobody has stake.
pub fn pick_verifier(draw: &[u8; 32], candidates: &[Candidate]) -> Option<[u8; 32]> {
    let total: u128 = candidates.iter().map(|c| u128::from(c.stake)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rand_u128(draw, b"verifier", 0) % total;
    for c in candidates {
        let stake = u128::from(c.stake);
        if r < stake {
            return Some(c.key);
        }
        r -= stake;
    }
    None
}

/// The verifiers assigned to the receipt with `draw`: [`pick_verifier`]'s
/// choice and, for a [`CROSS_CHECK_BPS`] share of audits, a second one drawn
/// the same way from the others. Empty when nobody has stake.
pub fn pick_verifiers(draw: &[u8; 32], candidates: &[Candidate]) -> Vec<[u8; 32]> {
    let Some(first) = pick_verifier(draw, candidates) else {
        return Vec::new();
    };
    let cross = rand_u128(draw, b"cross-check", 0) % 10_000 < u128::from(CROSS_CHECK_BPS);
    let others: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.key != first)
        .copied()
        .collect();
    let second = cross
        .then(|| pick_verifier(&hashv(&[draw, b"second"]).to_bytes(), &others))
        .flatten();
    std::iter::once(first).chain(second).collect()
}

/// `k` distinct values of `0..n` by a partial Fisher-Yates shuffle driven by
/// hashes of the draw, ascending.
fn distinct(draw: &[u8; 32], tag: &[u8], n: u32, k: u32) -> Vec<u32> {
    let k = k.min(n);
    let mut pool: Vec<u32> = (0..n).collect();
    for j in 0..k {
        let remaining = u128::from(n - j);
        let pick = j + (rand_u128(draw, tag, j) % remaining) as u32;
        pool.swap(j as usize, pick as usize);
    }
    let mut out = pool[..k as usize].to_vec();
    out.sort_unstable();
    out
}

fn rand_u128(draw: &[u8; 32], tag: &[u8], counter: u32) -> u128 {
    let h = hashv(&[draw, tag, &counter.to_le_bytes()]).to_bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    u128::from_le_bytes(b)
}

fn head_u64(draw: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&draw[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draw(i: u32) -> [u8; 32] {
        task_draw(
            &batch_seed(&[1; 32], &[2; 32]),
            &hashv(&[&i.to_le_bytes()]).to_bytes(),
        )
    }

    #[test]
    fn audit_rate_is_respected() {
        let n = 20_000;
        let audited = (0..n).filter(|&i| is_audited(&draw(i), 500)).count();
        // 5 % of 20,000 = 1,000 expected; sd ~31.
        assert!((850..=1150).contains(&audited), "{audited}");
        assert!((0..100).all(|i| is_audited(&draw(i), 10_000)));
        assert!((0..100).all(|i| !is_audited(&draw(i), 0)));
    }

    #[test]
    fn layers_are_distinct_sorted_and_cover_the_model() {
        let mut seen = [0u32; 30];
        for i in 0..3000 {
            let l = layers(&draw(i), 30, 4);
            assert_eq!(l.len(), 4);
            assert!(l.windows(2).all(|w| w[0] < w[1]));
            for x in l {
                seen[x as usize] += 1;
            }
        }
        // 12,000 picks over 30 layers: 400 each expected.
        assert!(seen.iter().all(|&c| (300..=500).contains(&c)), "{seen:?}");
        assert_eq!(layers(&draw(0), 3, 10), vec![0, 1, 2]);
        assert!(positions(&draw(0), 0, 4).is_empty());
    }

    #[test]
    fn verifier_pick_follows_stake() {
        let c = [
            Candidate {
                key: [1; 32],
                stake: 100,
            },
            Candidate {
                key: [2; 32],
                stake: 300,
            },
            Candidate {
                key: [3; 32],
                stake: 0,
            },
        ];
        let mut counts = [0; 3];
        for i in 0..4000 {
            let k = pick_verifier(&draw(i), &c).unwrap();
            counts[usize::from(k[0]) - 1] += 1;
        }
        assert_eq!(counts[2], 0, "no stake, no audits");
        assert!((800..=1200).contains(&counts[0]), "{counts:?}");
        assert_eq!(pick_verifier(&draw(0), &[]), None);
    }

    #[test]
    fn a_share_of_audits_has_a_second_distinct_verifier() {
        let c: Vec<_> = (1..=4u8)
            .map(|i| Candidate {
                key: [i; 32],
                stake: 100,
            })
            .collect();
        let mut doubled = 0;
        for i in 0..5000 {
            let v = pick_verifiers(&draw(i), &c);
            assert!(!v.is_empty() && v.len() <= 2);
            assert_eq!(v[0], pick_verifier(&draw(i), &c).unwrap());
            if v.len() == 2 {
                assert_ne!(v[0], v[1]);
                doubled += 1;
            }
        }
        // 20 % of 5,000 = 1,000 expected.
        assert!((850..=1150).contains(&doubled), "{doubled}");
        assert_eq!(
            pick_verifiers(&draw(0), &c[..1]).len(),
            1,
            "nobody to double with"
        );
    }

    proptest! {
        #[test]
        fn assignment_never_panics(d in any::<[u8; 32]>(), n in 0u32..200, k in 0u32..300,
                                   stakes in proptest::collection::vec(any::<u64>(), 0..8)) {
            let l = layers(&d, n, k);
            prop_assert_eq!(l.len() as u32, k.min(n));
            prop_assert!(l.iter().all(|&x| x < n.max(1)));
            let c: Vec<_> = stakes.iter().enumerate()
                .map(|(i, &s)| Candidate { key: [i as u8; 32], stake: s }).collect();
            let _ = pick_verifier(&d, &c);
        }
    }
}
