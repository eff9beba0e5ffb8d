//! Reward roots and claims: idempotent claims, the per-epoch cap, epochs in order.

use crate::prelude::*;

#[test]
fn double_claim_pays_nothing() {
    let mut env = Env::new();
    let (funder, funder_ata) = env.user(10_000);
    env.send(
        &[ix::fund_rewards(&funder.pubkey(), &funder_ata, 10_000)],
        &funder,
        &[],
    )
    .unwrap();
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let leaves = vec![
        Ledger::reward_leaf(n.pubkey().as_array(), 700),
        Ledger::reward_leaf(Pubkey::new_unique().as_array(), 1),
    ];
    let auth = env.reward_authority.insecure_clone();
    env.send(
        &[ix::publish_rewards(
            &auth.pubkey(),
            0,
            merkle::root::<Ledger>(&leaves),
            2,
            701,
        )],
        &auth,
        &[],
    )
    .unwrap();
    let claim = ix::claim_rewards(
        &n.pubkey(),
        &n_ata,
        0,
        700,
        0,
        merkle::proof::<Ledger>(&leaves, 0).unwrap(),
    );
    env.send(std::slice::from_ref(&claim), &n, &[]).unwrap();
    let after_first = env.token_balance(&n_ata);
    assert_error(env.send(&[claim], &n, &[]), StrataError::NothingToClaim);
    assert_eq!(env.token_balance(&n_ata), after_first);
    // A forged amount fails the proof.
    let forged = ix::claim_rewards(
        &n.pubkey(),
        &n_ata,
        0,
        7_000,
        0,
        merkle::proof::<Ledger>(&leaves, 0).unwrap(),
    );
    assert_error(
        env.send(&[forged], &n, &[]),
        StrataError::InvalidMerkleProof,
    );
    // Someone else cannot claim with n's leaf.
    let (other, other_ata) = env.user(0);
    let stolen = ix::claim_rewards(
        &other.pubkey(),
        &other_ata,
        0,
        700,
        0,
        merkle::proof::<Ledger>(&leaves, 0).unwrap(),
    );
    assert_error(
        env.send(&[stolen], &other, &[]),
        StrataError::InvalidMerkleProof,
    );
}

#[test]
fn reward_root_above_cap_or_out_of_order_is_refused() {
    let mut env = Env::new();
    let auth = env.reward_authority.insecure_clone();
    let cap = params().epoch_reward_cap;
    assert_error(
        env.send(
            &[ix::publish_rewards(&auth.pubkey(), 0, [1; 32], 1, cap + 1)],
            &auth,
            &[],
        ),
        StrataError::RewardCapExceeded,
    );
    assert_error(
        env.send(
            &[ix::publish_rewards(&auth.pubkey(), 5, [1; 32], 1, 1)],
            &auth,
            &[],
        ),
        StrataError::InvalidEpoch,
    );
    let (mallory, _) = env.user(0);
    assert_error(
        env.send(
            &[ix::publish_rewards(&mallory.pubkey(), 0, [1; 32], 1, 1)],
            &mallory,
            &[],
        ),
        StrataError::Unauthorized,
    );
}
