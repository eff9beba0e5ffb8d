//! The findings of the program review (issue 14, "Program hardening"), one
//! test per finding: each plays the attack and checks that it is refused by
//! its error code, or that the behaviour is now the intended one.

use anchor_lang::error::Error as AnchorErr;
use anchor_lang::Space;
use strata_chain::limits::MAX_WORK_UNITS_PER_TASK;
use strata_chain::tx::LAMPORTS_PER_SIGNATURE;
use strata_program::instructions::{check_deployer, Deployment};
use strata_program::state::{Config, MIN_ESCROW_WITHDRAW_DELAY};

use crate::prelude::*;

/// Changes the config's parameters (admin).
fn reconfigure(env: &mut Env, change: impl FnOnce(&mut ConfigParams)) {
    let mut p = env.config().params;
    change(&mut p);
    let admin = env.admin.insecure_clone();
    let reward = env.reward_authority.pubkey();
    env.send(
        &[ix::update_config(&admin.pubkey(), p, &reward)],
        &admin,
        &[],
    )
    .expect("update config");
}

/// Publishes `leaves` (operator, cumulative) as `epoch`'s root, declaring `declared`.
fn publish(
    env: &mut Env,
    epoch: i64,
    leaves: &[[u8; 32]],
    declared: u64,
) -> Result<litesvm::types::TransactionMetadata, solana_transaction_error::TransactionError> {
    let auth = env.reward_authority.insecure_clone();
    env.send(
        &[ix::publish_rewards(
            &auth.pubkey(),
            epoch,
            merkle::root::<Ledger>(leaves),
            leaves.len() as u32,
            declared,
        )],
        &auth,
        &[],
    )
}

/// Finding 1: a batch of `u64::MAX` work units pushed the config's running
/// total to the top, after which every later `post_batch` failed with
/// `MathOverflow`: one relayer could stop all posting for good.
#[test]
fn one_batch_cannot_stop_all_batch_posting() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let post = |env: &mut Env, id: u64, tasks: u32, work: u64| {
        let ix = ix::post_batch(&relayer.pubkey(), id, 0, [7; 32], tasks, work);
        env.send(&[ix], &relayer, &[])
    };
    // The attack: more work units than the receipts can hold.
    assert_error(
        post(&mut env, 0, 1, u64::MAX),
        StrataError::WorkUnitsOutOfBounds,
    );
    assert_error(
        post(&mut env, 0, u32::MAX, u64::MAX),
        StrataError::WorkUnitsOutOfBounds,
    );
    assert_error(
        post(&mut env, 0, 2, 2 * MAX_WORK_UNITS_PER_TASK + 1),
        StrataError::WorkUnitsOutOfBounds,
    );
    post(&mut env, 0, 2, 2 * MAX_WORK_UNITS_PER_TASK).expect("at the bound");
    // Even with the statistics at the top (where no bounded batch sequence
    // gets in practice), posting goes on: they saturate.
    env.patch::<Config>(&pda::config(), |c| {
        c.total_work_units = u64::MAX - 1;
        c.total_tasks = u64::MAX - 1;
    });
    post(&mut env, 1, 3, 1_000).expect("posting goes on");
    post(&mut env, 2, 3, 1_000).expect("and on");
    let c = env.config();
    assert_eq!((c.total_work_units, c.total_tasks), (u64::MAX, u64::MAX));
    assert_eq!(c.next_batch_id, 3);
}

/// Finding 2a: any past epoch after the last published one could be
/// published, so an authority idle for n epochs could publish n roots in a
/// row, each with a full cap.
#[test]
fn skipped_epochs_cannot_be_published_in_a_burst() {
    let mut env = Env::new();
    let cap = params().epoch_reward_cap;
    let leaves = [Ledger::reward_leaf(&[1; 32], 5 * cap)];
    env.warp(5 * params().epoch_length + 1);
    assert_eq!(env.config().epoch_at(env.now()), 5);
    for skipped in 0..5 {
        assert_error(
            publish(&mut env, skipped, &leaves, cap),
            StrataError::RewardEpochNotCurrent,
        );
    }
    publish(&mut env, 5, &leaves, cap).expect("the current epoch");
    assert_error(
        publish(&mut env, 6, &leaves, cap),
        StrataError::InvalidEpoch,
    );
    // One cap in total was made claimable, not six.
    let published: u64 = (0..=6)
        .filter(|e| env.exists(&pda::reward_epoch(*e)))
        .map(|e| env.account::<RewardEpoch>(&pda::reward_epoch(e)).remaining)
        .sum();
    assert_eq!(published, cap);
}

/// Finding 2b: epochs were counted from genesis with the current length,
/// so changing the length renumbered them: a longer one moved "now" back
/// into an epoch already published, a shorter one jumped far ahead.
#[test]
fn changing_the_epoch_length_does_not_renumber_epochs() {
    let mut env = Env::new();
    let len = params().epoch_length;
    let leaves = [Ledger::reward_leaf(&[1; 32], 10)];
    env.warp(3 * len + 100);
    publish(&mut env, 3, &leaves, 10).unwrap();
    let relayer = env.relayer();

    // Ten times longer: counted from genesis, now would be epoch 0.
    reconfigure(&mut env, |p| p.epoch_length = 10 * len);
    let c = env.config();
    assert_eq!(
        c.epoch_at(env.now()),
        3,
        "the epoch in progress keeps its number"
    );
    assert_eq!(c.epoch_start(3), GENESIS + 3 * len, "and its start");
    // Batches still carry the current number, and epoch 4 starts a new length later.
    env.post_batch(&relayer, &[[9; 32]]);
    assert_eq!(env.batch(0).epoch, 3);
    env.warp(10 * len - 100 - 1);
    assert_error(publish(&mut env, 4, &leaves, 10), StrataError::InvalidEpoch);
    env.warp(1);
    publish(&mut env, 4, &leaves, 10).expect("epoch 4 after one new length");

    // A hundred times shorter, 100 s into epoch 4: counted from the origin
    // it would jump a hundred epochs ahead; instead epoch 4, which has
    // already lasted longer than the new length, ends and 5 starts now.
    env.warp(100);
    reconfigure(&mut env, |p| p.epoch_length = len / 10);
    assert_eq!(env.config().epoch_at(env.now()), 5);
    publish(&mut env, 5, &leaves, 10).unwrap();
    env.warp(len / 10);
    assert_eq!(env.config().epoch_at(env.now()), 6);
    // Unchanged length: nothing moves.
    let before = env.config();
    reconfigure(&mut env, |p| p.audit_rate_bps = 600);
    let after = env.config();
    assert_eq!(
        (after.epoch_origin, after.epoch_origin_ts),
        (before.epoch_origin, before.epoch_origin_ts)
    );
}

/// Finding 3: a claim had to fit in the epoch's remaining limit whole, so a
/// node owed more than one cap could never claim anything.
#[test]
fn a_claim_above_the_cap_is_paid_in_parts() {
    let mut env = Env::new();
    reconfigure(&mut env, |p| p.epoch_reward_cap = 500);
    let (funder, funder_ata) = env.user(10_000);
    env.send(
        &[ix::fund_rewards(&funder.pubkey(), &funder_ata, 10_000)],
        &funder,
        &[],
    )
    .unwrap();
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let leaves = vec![
        Ledger::reward_leaf(n.pubkey().as_array(), 1_200),
        Ledger::reward_leaf(&[2; 32], 1),
    ];
    let claim = |epoch: i64| {
        ix::claim_rewards(
            &n.pubkey(),
            &n_ata,
            epoch,
            1_200,
            0,
            merkle::proof::<Ledger>(&leaves, 0).unwrap(),
        )
    };
    let len = params().epoch_length;
    let mut paid = Vec::new();
    for epoch in 0..3 {
        publish(&mut env, epoch, &leaves, 500).unwrap();
        let before = env.token_balance(&n_ata);
        let meta = env.send(&[claim(epoch)], &n, &[]).expect("pays what fits");
        paid.push(env.token_balance(&n_ata) - before);
        assert!(matches!(
            from_logs(&meta.logs).as_slice(),
            [StrataEvent::RewardsClaimed(e)] if e.paid == paid[paid.len() - 1] && e.cumulative == 1_200
        ));
        if epoch == 0 {
            // The epoch's limit is used up: the rest waits for the next root.
            assert_error(
                env.send(&[claim(epoch)], &n, &[]),
                StrataError::RewardCapExceeded,
            );
        }
        env.warp(len);
    }
    assert_eq!(paid, vec![500, 500, 200]);
    let record: strata_program::state::ClaimRecord = env.account(&pda::claim_record(&n.pubkey()));
    assert_eq!((record.claimed, record.last_epoch), (1_200, 2));
    assert_error(env.send(&[claim(2)], &n, &[]), StrataError::NothingToClaim);
    assert_eq!(env.config().reward_pool, 10_000 - 1_200);
    env.assert_vault_balanced();
}

/// ProgramData account bytes as the upgradeable loader writes them
/// (bincode of `UpgradeableLoaderState::ProgramData`, without the ELF).
fn program_data_bytes(authority: Option<Pubkey>) -> Vec<u8> {
    let mut data = 3u32.to_le_bytes().to_vec();
    data.extend_from_slice(&42u64.to_le_bytes());
    match authority {
        Some(key) => {
            data.push(1);
            data.extend_from_slice(key.as_ref());
        }
        None => data.push(0),
    }
    data
}

fn code_of(result: anchor_lang::Result<()>) -> Option<u32> {
    match result {
        Ok(()) => None,
        Err(AnchorErr::AnchorError(e)) => Some(e.error_code_number),
        Err(other) => panic!("not an Anchor error: {other:?}"),
    }
}

/// Finding 4: whoever sent `initialize` first after deployment became the
/// admin. Now the deployer's key decides: the upgrade authority in the
/// ProgramData account, or a key built into the program. (LiteSVM runs the
/// program as a builtin with no ProgramData account, so the decision is
/// checked here directly on every kind of deployment.)
#[test]
fn initialize_is_reserved_to_the_deployer() {
    let deployer = Pubkey::new_unique();
    let frontrunner = Pubkey::new_unique();
    let loader = "BPFLoaderUpgradeab1e11111111111111111111111"
        .parse::<Pubkey>()
        .unwrap();
    let expected = pda::program_data();
    let data = program_data_bytes(Some(deployer));
    let upgradeable = |given: Pubkey, owner: Pubkey, data: &[u8]| {
        // Borrowed for the call only.
        let data = data.to_vec();
        move |admin: &Pubkey| {
            check_deployer(
                admin,
                None,
                Deployment::Upgradeable {
                    expected,
                    given,
                    owner,
                    data: &data,
                },
            )
        }
    };
    let check = upgradeable(expected, loader, &data);
    assert_eq!(code_of(check(&deployer)), None);
    assert_eq!(
        code_of(check(&frontrunner)),
        Some(u32::from(StrataError::NotDeployer))
    );
    // A ProgramData account other than the program's own.
    let elsewhere = upgradeable(Pubkey::new_unique(), loader, &data);
    assert_eq!(
        code_of(elsewhere(&deployer)),
        Some(u32::from(StrataError::InvalidAccount))
    );
    // The right address but not the loader's account (cannot happen on a
    // real cluster; refused all the same).
    let forged = upgradeable(expected, Pubkey::new_unique(), &data);
    assert_eq!(
        code_of(forged(&deployer)),
        Some(u32::from(StrataError::InvalidAccount))
    );
    // An immutable program has no authority left to prove the deployer.
    let immutable = upgradeable(expected, loader, &program_data_bytes(None));
    assert_eq!(
        code_of(immutable(&deployer)),
        Some(u32::from(StrataError::NotDeployer))
    );
    // Garbage where ProgramData should be.
    let garbage = upgradeable(expected, loader, &[2, 0, 0, 0]);
    assert_eq!(
        code_of(garbage(&deployer)),
        Some(u32::from(StrataError::InvalidAccount))
    );
    // A key built into the program decides wherever it runs.
    for deployment in [
        Deployment::Other,
        Deployment::Upgradeable {
            expected,
            given: expected,
            owner: loader,
            data: &data,
        },
    ] {
        assert_eq!(
            code_of(check_deployer(&deployer, Some(deployer), deployment)),
            None
        );
        assert_eq!(
            code_of(check_deployer(&frontrunner, Some(deployer), deployment)),
            Some(u32::from(StrataError::NotDeployer))
        );
    }
    // Natively on a host, the process that registered the builtin is the
    // deployer and initialises it first.
    assert_eq!(
        code_of(check_deployer(&frontrunner, None, Deployment::Other)),
        None
    );

    // In the runtime: the instruction names the program and its ProgramData
    // address, and a second initialize is refused whoever sends it.
    let mut env = Env::new();
    let init = ix::initialize(&deployer, &env.mint, params(), &deployer);
    assert!(init.accounts.iter().any(|a| a.pubkey == PROGRAM_ID));
    assert!(init.accounts.iter().any(|a| a.pubkey == expected));
    let (mallory, _) = env.user(0);
    let again = ix::initialize(&mallory.pubkey(), &env.mint, params(), &mallory.pubkey());
    assert_code(env.send(&[again], &mallory, &[]), ACCOUNT_ALREADY_IN_USE);
    // Another account posing as the program is refused by Anchor (on a
    // fresh runtime, so that nothing else stands in the way).
    let mut env = Env::bare();
    let (mallory, _) = env.user(0);
    let mut posing = ix::initialize(&mallory.pubkey(), &env.mint, params(), &mallory.pubkey());
    for meta in posing.accounts.iter_mut() {
        if meta.pubkey == PROGRAM_ID {
            meta.pubkey = spl_token_interface::ID;
        }
    }
    assert_code(env.send(&[posing], &mallory, &[]), INVALID_PROGRAM_ID);
}

/// Finding 5: an escrow withdrawal delay of 0 let a client request and
/// withdraw in one transaction, before the relayer could redeem the vouchers
/// it had signed.
#[test]
fn escrow_withdrawal_delay_has_a_floor() {
    // Refused at initialisation...
    let mut bare = Env::bare();
    let admin = bare.admin.insecure_clone();
    for delay in [0, MIN_ESCROW_WITHDRAW_DELAY - 1] {
        let p = ConfigParams {
            escrow_withdraw_delay: delay,
            ..params()
        };
        let init = ix::initialize(&admin.pubkey(), &bare.mint, p, &admin.pubkey());
        assert_error(
            bare.send(&[init], &admin, &[]),
            StrataError::WithdrawDelayTooShort,
        );
    }
    // ...and on update.
    let mut env = Env::new();
    let admin = env.admin.insecure_clone();
    let reward = env.reward_authority.pubkey();
    for delay in [0, MIN_ESCROW_WITHDRAW_DELAY - 1] {
        let p = ConfigParams {
            escrow_withdraw_delay: delay,
            ..params()
        };
        assert_error(
            env.send(
                &[ix::update_config(&admin.pubkey(), p, &reward)],
                &admin,
                &[],
            ),
            StrataError::WithdrawDelayTooShort,
        );
    }
    reconfigure(&mut env, |p| {
        p.escrow_withdraw_delay = MIN_ESCROW_WITHDRAW_DELAY
    });

    // The attack at the floor: request and withdraw together is refused;
    // the node's voucher is redeemed meanwhile and the client gets the rest.
    let (c, c_ata) = env.client(1_000);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let grab = [
        ix::request_withdrawal(&c.pubkey(), 1_000),
        ix::withdraw(&c.pubkey(), &c_ata),
    ];
    assert_error(
        env.send(&grab, &c, &[]),
        StrataError::WithdrawalDelayNotElapsed,
    );
    env.send(&grab[..1], &c, &[]).unwrap();
    let redeem = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 600)]);
    env.send(&redeem, &n, &[]).unwrap();
    env.warp(MIN_ESCROW_WITHDRAW_DELAY - 1);
    assert_error(
        env.send(&grab[1..], &c, &[]),
        StrataError::WithdrawalDelayNotElapsed,
    );
    env.warp(1);
    let before = env.token_balance(&c_ata);
    env.send(&grab[1..], &c, &[]).unwrap();
    assert_eq!(
        env.token_balance(&c_ata) - before,
        400,
        "what the voucher left"
    );
    env.assert_vault_balanced();
}

/// Finding 6: the fee was rounded down, so at 10 % a redemption under 10
/// base units paid none, and settling in such slices dodged the fee.
#[test]
fn protocol_fee_rounds_up_on_small_redemptions() {
    let mut env = Env::new();
    assert_eq!(params().protocol_fee_bps, 1_000);
    let (c, _) = env.client(1_000);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let pool = env.config().reward_pool;
    let start = env.token_balance(&n_ata);
    for (cumulative, paid, fee) in [(9, 8, 1), (18, 16, 2), (19, 16, 3), (119, 106, 13)] {
        let redeem = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, cumulative)]);
        let meta = env.send(&redeem, &n, &[]).unwrap();
        assert!(matches!(
            from_logs(&meta.logs).as_slice(),
            [StrataEvent::VoucherRedeemed(v)] if v.fee > 0
        ));
        assert_eq!(
            env.token_balance(&n_ata) - start,
            paid,
            "after {cumulative}"
        );
        assert_eq!(env.config().reward_pool - pool, fee, "after {cumulative}");
    }
    env.assert_vault_balanced();
}

/// Finding 7: the open-challenge counters must refuse by name when full,
/// never wrap (a wrapped counter would free a node's stake, or its batch
/// for closing, under an open challenge).
#[test]
fn open_challenge_counters_refuse_when_full() {
    let mut d = disputed_network(3, 3, 2);
    let node = pda::node(&d.accused.pubkey());
    d.env.patch::<Node>(&node, |n| n.open_challenges = u16::MAX);
    assert_error(d.open(), StrataError::TooManyOpenChallenges);
    d.env.patch::<Node>(&node, |n| n.open_challenges = 0);
    let batch = pda::batch(d.batch_id);
    d.env
        .patch::<Batch>(&batch, |b| b.open_challenges = u32::MAX);
    assert_error(d.open(), StrataError::TooManyOpenChallenges);
    d.env.patch::<Batch>(&batch, |b| b.open_challenges = 0);
    d.open().expect("counters with room");
    assert_eq!(d.accused_node().open_challenges, 1);
    assert_eq!(d.env.batch(d.batch_id).open_challenges, 1);
    // Both come back down when the challenge ends.
    d.env.warp(params().verdict_timeout + 1);
    d.expire().unwrap();
    assert_eq!(d.accused_node().open_challenges, 0);
    assert_eq!(d.env.batch(d.batch_id).open_challenges, 0);
}

/// Finding 8: batch records were never closed. `close_batch` returns the
/// rent to the relayer that posted it, once the challenge window has closed
/// and no challenge is open.
#[test]
fn batch_closes_after_its_window_and_returns_the_rent() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let id = env.post_batch(&relayer, &[[1; 32], [2; 32]]);
    let close = ix::close_batch(&relayer.pubkey(), id);
    assert_error(
        env.send(std::slice::from_ref(&close), &relayer, &[]),
        StrataError::ChallengeWindowOpen,
    );
    env.warp(params().challenge_window);
    assert_error(
        env.send(std::slice::from_ref(&close), &relayer, &[]),
        StrataError::ChallengeWindowOpen,
    );
    env.warp(1);
    // Only the relayer that posted it, even though the rent would go to it anyway.
    let (mallory, _) = env.user(0);
    let mut stranger = close.clone();
    stranger.accounts[0].pubkey = mallory.pubkey();
    assert_error(
        env.send(&[stranger], &mallory, &[]),
        StrataError::Unauthorized,
    );
    let rent = env.svm.get_account(&pda::batch(id)).unwrap().lamports;
    assert_eq!(
        rent,
        env.svm
            .minimum_balance_for_rent_exemption(8 + Batch::INIT_SPACE)
    );
    let before = env.svm.get_balance(&relayer.pubkey()).unwrap();
    let meta = env
        .send(std::slice::from_ref(&close), &relayer, &[])
        .expect("closes after the window");
    assert_eq!(
        env.svm.get_balance(&relayer.pubkey()).unwrap(),
        before + rent - LAMPORTS_PER_SIGNATURE,
        "the rent back, less the transaction fee"
    );
    assert!(!env.exists(&pda::batch(id)));
    assert!(matches!(
        from_logs(&meta.logs).as_slice(),
        [StrataEvent::BatchClosed(e)] if e.id == id && e.lamports == rent && e.relayer == relayer.pubkey()
    ));
    // Closing twice finds no account.
    assert_code(env.send(&[close], &relayer, &[]), ACCOUNT_NOT_INITIALIZED);
}

/// Finding 8, continued: not while a challenge against the batch is open.
#[test]
fn batch_with_an_open_challenge_cannot_be_closed() {
    let mut d = open_dispute(3, 3, 2);
    let relayer = d.relayer.insecure_clone();
    let close = ix::close_batch(&relayer.pubkey(), d.batch_id);
    d.env.warp(params().challenge_window + 1);
    assert_error(
        d.env.send(std::slice::from_ref(&close), &relayer, &[]),
        StrataError::BatchHasOpenChallenges,
    );
    // Its deadline has passed too: once expired, the batch can go.
    d.expire().unwrap();
    d.env
        .send(&[close], &relayer, &[])
        .expect("closes once no challenge is open");
    assert!(!d.env.exists(&pda::batch(d.batch_id)));
}
