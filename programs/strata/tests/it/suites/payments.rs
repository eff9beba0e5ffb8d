//! Vouchers and escrows: replays, stale or forged vouchers, payouts to the
//! wrong account, withdrawals before their delay.

use crate::prelude::*;

#[test]
fn replayed_or_stale_voucher_is_refused() {
    let mut env = Env::new();
    let (c, _) = env.client(10_000);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let first = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 1_000)]);
    env.send(&first, &n, &[]).unwrap();
    let paid = env.token_balance(&n_ata);
    // The same voucher again.
    let replay = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 1_000)]);
    assert_error(env.send(&replay, &n, &[]), StrataError::StaleVoucher);
    // An older (smaller) one.
    let stale = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 900)]);
    assert_error(env.send(&stale, &n, &[]), StrataError::StaleVoucher);
    // The same voucher twice in one batch.
    let doubled = env.redeem_ixs(
        &n.pubkey(),
        &[
            (&c, n.pubkey(), n_ata, 1_500),
            (&c, n.pubkey(), n_ata, 1_500),
        ],
    );
    assert_error(env.send(&doubled, &n, &[]), StrataError::StaleVoucher);
    assert_eq!(env.token_balance(&n_ata), paid, "nothing moved");
}

#[test]
fn voucher_beyond_the_escrow_is_refused() {
    let mut env = Env::new();
    let (c, _) = env.client(100);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let ixs = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 101)]);
    assert_error(env.send(&ixs, &n, &[]), StrataError::InsufficientEscrow);
}

#[test]
fn voucher_paid_to_someone_elses_token_account_is_refused() {
    let mut env = Env::new();
    let (c, _) = env.client(1_000);
    let (n, _) = env.compute_node(MIN_STAKE);
    let (thief, thief_ata) = env.user(0);
    let ixs = env.redeem_ixs(&thief.pubkey(), &[(&c, n.pubkey(), thief_ata, 500)]);
    assert_error(env.send(&ixs, &thief, &[]), StrataError::InvalidAccount);
}

#[test]
fn voucher_without_precompile_or_with_forged_signature_is_refused() {
    let mut env = Env::new();
    let (c, _) = env.client(1_000);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let ixs = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 500)]);
    // Redeem alone, with no signature instruction before it.
    assert_error(env.send(&ixs[1..], &n, &[]), StrataError::MissingSignatures);
    // A signature by another key claiming to be the client: the precompile fails the transaction.
    let mallory = Keypair::new();
    let mut forged = SignedMessage::sign(
        &mallory,
        &messages::voucher_message(PROGRAM_ID.as_array(), n.pubkey().as_array(), 500),
    );
    forged.signer = c.pubkey();
    let mut forged_ixs = ixs.clone();
    forged_ixs[0] = verify_instruction(&[forged]).unwrap();
    let err = env.send(&forged_ixs, &n, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            solana_transaction_error::TransactionError::InstructionError(0, _)
        ),
        "the ed25519 precompile (instruction 0) must reject it: {err:?}"
    );
    // A voucher for another deployment (different program id in the message).
    let other = SignedMessage::sign(
        &c,
        &messages::voucher_message(Pubkey::new_unique().as_array(), n.pubkey().as_array(), 500),
    );
    let mut wrong_program = ixs;
    wrong_program[0] = verify_instruction(&[other]).unwrap();
    assert_error(
        env.send(&wrong_program, &n, &[]),
        StrataError::MessageMismatch,
    );
}

#[test]
fn withdraw_before_unbonding_ends_is_refused() {
    let mut env = Env::new();
    let (op, ata) = env.compute_node(MIN_STAKE);
    env.send(&[ix::request_unstake(&op.pubkey(), MIN_STAKE)], &op, &[])
        .unwrap();
    env.warp(params().unbonding_period - 1);
    assert_error(
        env.send(&[ix::withdraw_stake(&op.pubkey(), &ata)], &op, &[]),
        StrataError::UnbondingNotElapsed,
    );
    let (client, client_ata) = env.client(100);
    env.send(
        &[ix::request_withdrawal(&client.pubkey(), 100)],
        &client,
        &[],
    )
    .unwrap();
    assert_error(
        env.send(&[ix::withdraw(&client.pubkey(), &client_ata)], &client, &[]),
        StrataError::WithdrawalDelayNotElapsed,
    );
}
