//! One refusal test per attack class that applies to this program, each
//! asserting the specific error code, through real signed transactions.

mod common;

use anchor_lang::{AccountSerialize, Discriminator};
use common::dispute::open_dispute;
use common::*;
use solana_account::Account;
use solana_instruction::AccountMeta;
use solana_keypair::Keypair;
use solana_signer::Signer;
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, messages, pda, Pubkey, PROGRAM_ID};
use strata_program::errors::StrataError;
use strata_program::instructions::ReceiptClaim;
use strata_program::state::{Escrow, Node};

/// Anchor's own error codes (anchor-lang's `ErrorCode`).
const CONSTRAINT_SEEDS: u32 = 2006;
const CONSTRAINT_DUPLICATE_MUTABLE_ACCOUNT: u32 = 2040;
const ACCOUNT_DISCRIMINATOR_MISMATCH: u32 = 3002;
const ACCOUNT_OWNED_BY_WRONG_PROGRAM: u32 = 3007;
const INVALID_PROGRAM_ID: u32 = 3008;
const ACCOUNT_NOT_SIGNER: u32 = 3010;
/// The system program's `AccountAlreadyInUse`.
const ACCOUNT_ALREADY_IN_USE: u32 = 0;

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

#[test]
fn arithmetic_overflow_is_refused() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let leaf = [[1u8; 32]];
    let id = env.config().next_batch_id;
    env.send(
        &[ix::post_batch(
            &relayer.pubkey(),
            id,
            0,
            merkle::root::<Ledger>(&leaf),
            1,
            u64::MAX,
        )],
        &relayer,
        &[],
    )
    .unwrap();
    assert_error(
        env.send(
            &[ix::post_batch(
                &relayer.pubkey(),
                id + 1,
                0,
                merkle::root::<Ledger>(&leaf),
                1,
                1,
            )],
            &relayer,
            &[],
        ),
        StrataError::MathOverflow,
    );
}

#[test]
fn config_update_by_non_admin_or_out_of_bounds_is_refused() {
    let mut env = Env::new();
    let (mallory, _) = env.user(0);
    assert_error(
        env.send(
            &[ix::update_config(
                &mallory.pubkey(),
                params(),
                &mallory.pubkey(),
            )],
            &mallory,
            &[],
        ),
        StrataError::Unauthorized,
    );
    let admin = env.admin.insecure_clone();
    let reward = env.reward_authority.pubkey();
    type Change = Box<dyn Fn(&mut strata_chain::ConfigParams)>;
    let bad: Vec<Change> = vec![
        Box::new(|p| p.protocol_fee_bps = 5_001),
        Box::new(|p| p.slash_bps = 10_001),
        Box::new(|p| p.verifier_quorum = p.committee_size + 1),
        Box::new(|p| p.committee_size = 17),
        Box::new(|p| p.min_stake = 0),
        Box::new(|p| p.epoch_length = 0),
        Box::new(|p| p.unbonding_period = -1),
        Box::new(|p| p.challenge_bond = 0),
    ];
    for change in bad {
        let mut p = params();
        change(&mut p);
        assert_error(
            env.send(
                &[ix::update_config(&admin.pubkey(), p, &reward)],
                &admin,
                &[],
            ),
            StrataError::InvalidParameter,
        );
    }
    assert_eq!(env.config().params, params(), "nothing changed");
}

#[test]
fn relayer_must_be_registered() {
    let mut env = Env::new();
    let (impostor, _) = env.user(0);
    let ix = ix::post_batch(&impostor.pubkey(), 0, 0, [1; 32], 1, 1);
    // Its relayer record does not exist, so Anchor cannot load it.
    assert_code(env.send(&[ix], &impostor, &[]), 3012);
}

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

#[test]
fn slash_without_quorum_is_refused() {
    let mut case = open_dispute(8, 4, 2);
    let one = case.selected[0].insecure_clone();
    assert_error(case.verdict(&[&one], true), StrataError::QuorumNotReached);
    // The same verifier twice does not make a quorum either.
    assert_error(
        case.verdict(&[&one, &one], true),
        StrataError::QuorumNotReached,
    );
    assert_eq!(case.accused_node().stake, 10_000);
}

#[test]
fn verdict_by_verifiers_not_selected_is_refused() {
    let mut case = open_dispute(8, 4, 2);
    assert!(!case.not_selected.is_empty());
    let a = case.selected[0].insecure_clone();
    let outsider = case.not_selected[0].insecure_clone();
    assert_error(
        case.verdict(&[&a, &outsider], true),
        StrataError::VerifierNotSelected,
    );
    // A key that is not a registered verifier at all cannot even be loaded as one.
    let stranger = Keypair::new();
    let err = case.verdict(&[&a, &stranger], true).unwrap_err();
    assert_eq!(code(&err), Some(3012), "unregistered verifier: {err:?}");
    assert_eq!(case.accused_node().stake, 10_000);
    // The selected committee can resolve it.
    let b = case.selected[1].insecure_clone();
    case.verdict(&[&a, &b], true).unwrap();
    assert_eq!(case.accused_node().stake, 5_000);
    case.env.assert_vault_balanced();
}

#[test]
fn verdict_for_the_other_outcome_or_after_deadline_is_refused() {
    let mut case = open_dispute(8, 4, 2);
    let a = case.selected[0].insecure_clone();
    let b = case.selected[1].insecure_clone();
    // Signatures for "rejected" submitted as "upheld".
    let msg = messages::verdict_message(PROGRAM_ID.as_array(), case.challenge.as_array(), false);
    let signed: Vec<_> = [&a, &b]
        .iter()
        .map(|v| SignedMessage::sign(v, &msg))
        .collect();
    let ixs = vec![
        verify_instruction(&signed).unwrap(),
        ix::resolve_challenge(
            &a.pubkey(),
            &case.challenge,
            &case.accused.pubkey(),
            &case.challenger_ata,
            &[a.pubkey(), b.pubkey()],
            true,
        ),
    ];
    assert_error(case.env.send(&ixs, &a, &[]), StrataError::MessageMismatch);
    case.env.warp(params().verdict_timeout + 1);
    assert_error(case.verdict(&[&a, &b], true), StrataError::DeadlinePassed);
}

#[test]
fn stake_cannot_leave_while_challenged_and_window_closes() {
    let mut case = open_dispute(8, 4, 2);
    let accused = case.accused.insecure_clone();
    let ata = pda::associated_token(&accused.pubkey(), &case.env.mint);
    case.env
        .send(
            &[ix::request_unstake(&accused.pubkey(), 10_000)],
            &accused,
            &[],
        )
        .unwrap();
    case.env.warp(params().unbonding_period);
    assert_error(
        case.env.send(
            &[ix::withdraw_stake(&accused.pubkey(), &ata)],
            &accused,
            &[],
        ),
        StrataError::ChallengePending,
    );
    // Unbonding stake is still slashable.
    let a = case.selected[0].insecure_clone();
    let b = case.selected[1].insecure_clone();
    case.env.warp(-params().unbonding_period);
    case.verdict(&[&a, &b], true).unwrap();
    let node: Node = case.env.account(&pda::node(&accused.pubkey()));
    assert_eq!((node.stake, node.unbonding), (0, 5_000));
}

#[test]
fn challenge_with_bad_proof_or_after_window_is_refused() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let (accused, _) = env.compute_node(10_000);
    env.verifier(5_000);
    let leaves: Vec<[u8; 32]> = (0..3u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], accused.pubkey().as_array(), &[i; 32]))
        .collect();
    let id = env.post_batch(&relayer, &leaves);
    let (ch, ch_ata) = env.user(1_000);
    let bad = ReceiptClaim {
        leaf_index: 1,
        task_id: [9; 32],
        receipt_digest: [1; 32],
        proof: merkle::proof::<Ledger>(&leaves, 1).unwrap(),
    };
    assert_error(
        env.send(
            &[ix::open_challenge(
                &ch.pubkey(),
                &ch_ata,
                id,
                &accused.pubkey(),
                bad,
            )],
            &ch,
            &[],
        ),
        StrataError::InvalidMerkleProof,
    );
    env.warp(params().challenge_window + 1);
    let good = ReceiptClaim {
        leaf_index: 1,
        task_id: [1; 32],
        receipt_digest: [1; 32],
        proof: merkle::proof::<Ledger>(&leaves, 1).unwrap(),
    };
    assert_error(
        env.send(
            &[ix::open_challenge(
                &ch.pubkey(),
                &ch_ata,
                id,
                &accused.pubkey(),
                good,
            )],
            &ch,
            &[],
        ),
        StrataError::ChallengeWindowClosed,
    );
    assert_eq!(env.token_balance(&ch_ata), 1_000, "no bond taken");
}

#[test]
fn bad_node_declarations_are_refused() {
    let mut env = Env::new();
    let (op, _) = env.user(0);
    let too_many = vec!["/ip4/127.0.0.1/tcp/1".to_string(); 5];
    assert_error(
        env.send(
            &[ix::register_node(
                &op.pubkey(),
                too_many,
                Default::default(),
                1,
            )],
            &op,
            &[],
        ),
        StrataError::TooManyMultiaddrs,
    );
    let not_addr = vec!["127.0.0.1:4001".to_string()];
    assert_error(
        env.send(
            &[ix::register_node(
                &op.pubkey(),
                not_addr,
                Default::default(),
                1,
            )],
            &op,
            &[],
        ),
        StrataError::InvalidMultiaddr,
    );
    assert_error(
        env.send(
            &[ix::register_node(
                &op.pubkey(),
                vec![],
                Default::default(),
                0,
            )],
            &op,
            &[],
        ),
        StrataError::InvalidRoles,
    );
    assert_error(
        env.send(
            &[ix::register_node(
                &op.pubkey(),
                vec![],
                Default::default(),
                4,
            )],
            &op,
            &[],
        ),
        StrataError::InvalidRoles,
    );
    env.send(
        &[ix::register_node(
            &op.pubkey(),
            vec![],
            Default::default(),
            1,
        )],
        &op,
        &[],
    )
    .unwrap();
    let ata = env.token_account_for(&op.pubkey());
    env.mint_to(&ata, 10);
    assert_error(
        env.send(&[ix::stake(&op.pubkey(), &ata, &env.mint, 10)], &op, &[]),
        StrataError::BelowMinimumStake,
    );
    let (staked, _) = env.compute_node(MIN_STAKE);
    assert_error(
        env.send(&[ix::deregister_node(&staked.pubkey())], &staked, &[]),
        StrataError::NodeHasStake,
    );
}

mod garbage {
    use proptest::prelude::*;

    use super::*;

    /// Every instruction's discriminator, followed by arbitrary bytes and
    /// arbitrary accounts, is refused with an error: never a panic (which
    /// the native harness reports as `ProgramFailedToComplete`), never a success.
    #[test]
    fn arbitrary_instruction_data_is_refused_without_panic() {
        let env = std::cell::RefCell::new(Env::new());
        let (user, ata) = env.borrow_mut().user(1_000);
        let mint = env.borrow().mint;
        let known = [
            pda::config(),
            pda::vault(),
            ata,
            user.pubkey(),
            mint,
            anchor_lang::system_program::ID,
        ];
        let discriminators: Vec<Vec<u8>> = {
            use anchor_lang::Discriminator;
            use strata_program::instruction as i;
            vec![
                i::Initialize::DISCRIMINATOR.to_vec(),
                i::Stake::DISCRIMINATOR.to_vec(),
                i::Deposit::DISCRIMINATOR.to_vec(),
                i::RegisterNode::DISCRIMINATOR.to_vec(),
                i::RedeemVouchers::DISCRIMINATOR.to_vec(),
                i::OpenChallenge::DISCRIMINATOR.to_vec(),
                i::ClaimRewards::DISCRIMINATOR.to_vec(),
                i::PostBatch::DISCRIMINATOR.to_vec(),
                vec![],
            ]
        };
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
        let strategy = (
            0..discriminators.len(),
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec((0..known.len(), any::<bool>()), 0..10),
        );
        runner
            .run(&strategy, |(d, tail, metas)| {
                let mut data = discriminators[d].clone();
                data.extend_from_slice(&tail);
                let accounts = metas
                    .iter()
                    .map(|(k, w)| {
                        let key = known[*k];
                        let signer = key == user.pubkey();
                        if *w {
                            AccountMeta::new(key, signer)
                        } else {
                            AccountMeta::new_readonly(key, signer)
                        }
                    })
                    .collect();
                let ix = solana_instruction::Instruction {
                    program_id: PROGRAM_ID,
                    accounts,
                    data,
                };
                let result = env.borrow_mut().send(&[ix], &user, &[]);
                match result {
                    Ok(_) => Err(TestCaseError::fail("garbage succeeded")),
                    Err(solana_transaction_error::TransactionError::InstructionError(
                        _,
                        solana_instruction::error::InstructionError::ProgramFailedToComplete,
                    )) => Err(TestCaseError::fail("the program panicked")),
                    Err(_) => Ok(()),
                }
            })
            .unwrap();
        env.borrow().assert_vault_balanced();
    }
}
