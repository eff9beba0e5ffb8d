//! The generic attack classes of Solana programs, each refused with its
//! specific error code: missing signer, foreign owner, type cosplay,
//! non-canonical bump, wrong seeds, re-initialisation, the same mutable
//! account twice, a fake token program, arithmetic overflow.

use crate::prelude::*;

#[test]
fn missing_signer_is_refused() {
    let mut env = Env::new();
    let (op, ata) = env.compute_node(MIN_STAKE);
    let (thief, _) = env.user(0);
    // The thief pays and signs; the operator's slot is not marked as signer.
    let mut stake = ix::request_unstake(&op.pubkey(), 500);
    stake.accounts[0].is_signer = false;
    assert_code(env.send(&[stake], &thief, &[]), ACCOUNT_NOT_SIGNER);
    let _ = ata;
}

#[test]
fn account_owned_by_another_program_is_refused() {
    let mut env = Env::new();
    let (op, _) = env.compute_node(MIN_STAKE);
    let node_pda = pda::node(&op.pubkey());
    let mut forged = env.svm.get_account(&node_pda).unwrap();
    forged.owner = spl_token_interface::ID;
    env.svm.set_account(node_pda, forged).unwrap();
    assert_code(
        env.send(&[ix::request_unstake(&op.pubkey(), 500)], &op, &[]),
        ACCOUNT_OWNED_BY_WRONG_PROGRAM,
    );
}

#[test]
fn type_cosplay_is_refused() {
    // An Escrow (same owner, a different type) placed where a Node belongs.
    let mut env = Env::new();
    let (op, _) = env.compute_node(MIN_STAKE);
    let (client, _) = env.client(100);
    let node_pda = pda::node(&op.pubkey());
    let mut escrow: Escrow = env.account(&pda::escrow(&client.pubkey()));
    escrow.client = op.pubkey();
    let mut data = Vec::new();
    escrow.try_serialize(&mut data).unwrap();
    let size = env.svm.get_account(&node_pda).unwrap().data.len();
    data.resize(size, 0);
    let lamports = env.svm.minimum_balance_for_rent_exemption(size);
    env.svm
        .set_account(
            node_pda,
            Account {
                lamports,
                data,
                owner: PROGRAM_ID,
                executable: false,
                rent_epoch: 0,
            },
        )
        .unwrap();
    assert_code(
        env.send(&[ix::request_unstake(&op.pubkey(), 500)], &op, &[]),
        ACCOUNT_DISCRIMINATOR_MISMATCH,
    );
    assert_ne!(Escrow::DISCRIMINATOR, Node::DISCRIMINATOR);
}

#[test]
fn non_canonical_bump_is_refused() {
    let mut env = Env::new();
    let (op, _) = env.compute_node(MIN_STAKE);
    let (canonical, bump) =
        Pubkey::find_program_address(&[b"node", op.pubkey().as_ref()], &PROGRAM_ID);
    // Another valid PDA for the same seeds with a lower bump, holding a copy of the real record.
    let other = (0..bump)
        .rev()
        .find_map(|b| {
            Pubkey::create_program_address(&[b"node", op.pubkey().as_ref(), &[b]], &PROGRAM_ID).ok()
        })
        .expect("some lower bump is off the curve");
    let copy = env.svm.get_account(&canonical).unwrap();
    env.svm.set_account(other, copy).unwrap();
    let mut unstake = ix::request_unstake(&op.pubkey(), 500);
    unstake.accounts[2].pubkey = other;
    assert_code(env.send(&[unstake], &op, &[]), CONSTRAINT_SEEDS);
}

#[test]
fn wrong_seeds_are_refused() {
    // Operator B signs but passes operator A's node record.
    let mut env = Env::new();
    let (a, _) = env.compute_node(MIN_STAKE);
    let (b, _) = env.compute_node(MIN_STAKE);
    let mut unstake = ix::request_unstake(&b.pubkey(), 500);
    unstake.accounts[2].pubkey = pda::node(&a.pubkey());
    assert_code(env.send(&[unstake], &b, &[]), CONSTRAINT_SEEDS);
}

#[test]
fn reinitialization_is_refused() {
    let mut env = Env::new();
    let admin = env.admin.insecure_clone();
    let (attacker, _) = env.user(0);
    let again = ix::initialize(&attacker.pubkey(), &env.mint, params(), &attacker.pubkey());
    assert_code(env.send(&[again], &attacker, &[]), ACCOUNT_ALREADY_IN_USE);
    let again_by_admin = ix::initialize(&admin.pubkey(), &env.mint, params(), &admin.pubkey());
    assert_code(
        env.send(&[again_by_admin], &admin, &[]),
        ACCOUNT_ALREADY_IN_USE,
    );
    assert_eq!(env.config().admin, admin.pubkey());
    // Registering the same node twice is the same attack on another account.
    let (op, _) = env.compute_node(MIN_STAKE);
    let twice = ix::register_node(&op.pubkey(), vec![], Default::default(), 1);
    assert_code(env.send(&[twice], &op, &[]), ACCOUNT_ALREADY_IN_USE);
}

#[test]
fn same_mutable_account_twice_is_refused() {
    // The vault passed as the client's destination account.
    let mut env = Env::new();
    let (client, _) = env.client(1_000);
    env.send(
        &[ix::request_withdrawal(&client.pubkey(), 500)],
        &client,
        &[],
    )
    .unwrap();
    env.warp(params().escrow_withdraw_delay);
    // Anchor 1.x refuses duplicate mutable accounts itself.
    assert_code(
        env.send(
            &[ix::withdraw(&client.pubkey(), &pda::vault())],
            &client,
            &[],
        ),
        CONSTRAINT_DUPLICATE_MUTABLE_ACCOUNT,
    );
    // In `remaining_accounts` (outside Anchor's check) the program refuses it by name.
    let (n, _) = env.compute_node(MIN_STAKE);
    let ixs = env.redeem_ixs(&n.pubkey(), &[(&client, n.pubkey(), pda::vault(), 10)]);
    assert_error(env.send(&ixs, &n, &[]), StrataError::DuplicateAccount);
}

#[test]
fn fake_token_program_is_refused() {
    let mut env = Env::new();
    let (client, ata) = env.user(1_000);
    let mut deposit = ix::deposit(&client.pubkey(), &ata, 100);
    let fake = Pubkey::new_unique();
    for meta in deposit.accounts.iter_mut() {
        if meta.pubkey == spl_token_interface::ID {
            *meta = AccountMeta::new_readonly(fake, false);
        }
    }
    // The fake "program" is an executable account so the runtime loads the transaction.
    env.svm
        .set_account(fake, env.svm.get_account(&spl_token_interface::ID).unwrap())
        .unwrap();
    assert_code(env.send(&[deposit], &client, &[]), INVALID_PROGRAM_ID);
}

/// A total that money is counted in refuses to overflow (statistics, which
/// nothing is paid from, saturate instead: see `hardening`).
#[test]
fn arithmetic_overflow_is_refused() {
    let mut env = Env::new();
    env.patch::<strata_program::state::Config>(&pda::config(), |c| {
        c.reward_pool = u64::MAX;
    });
    let (funder, funder_ata) = env.user(10);
    assert_error(
        env.send(
            &[ix::fund_rewards(&funder.pubkey(), &funder_ata, 10)],
            &funder,
            &[],
        ),
        StrataError::MathOverflow,
    );
    assert_eq!(env.token_balance(&funder_ata), 10, "nothing moved");
}
