//! Every instruction's success path, through real signed transactions in
//! LiteSVM, checking balances, account state, events and the vault ledger.

use crate::prelude::*;

#[test]
fn initialize_sets_config_and_vault() {
    let env = Env::new();
    let c = env.config();
    assert_eq!(c.admin, env.admin.pubkey());
    assert_eq!(c.mint, env.mint);
    assert_eq!(c.vault, pda::vault());
    assert_eq!(c.params, params());
    assert_eq!(c.genesis_ts, GENESIS);
    assert_eq!(c.version, strata_program::state::STATE_VERSION);
    assert_eq!(env.token_balance(&pda::vault()), 0);
}

#[test]
fn admin_updates_config_and_relayers() {
    let mut env = Env::new();
    let admin = env.admin.insecure_clone();
    let mut p = params();
    p.protocol_fee_bps = 250;
    let new_authority = solana_keypair::Keypair::new().pubkey();
    let meta = env
        .send(
            &[ix::update_config(&admin.pubkey(), p, &new_authority)],
            &admin,
            &[],
        )
        .unwrap();
    assert!(
        matches!(from_logs(&meta.logs).as_slice(), [StrataEvent::ConfigUpdated(e)] if e.params.protocol_fee_bps == 250)
    );
    assert_eq!(env.config().params.protocol_fee_bps, 250);
    assert_eq!(env.config().reward_authority, new_authority);

    let relayer = env.relayer();
    assert!(env.exists(&pda::relayer(&relayer.pubkey())));
    env.send(
        &[ix::remove_relayer(&admin.pubkey(), &relayer.pubkey())],
        &admin,
        &[],
    )
    .unwrap();
    assert!(!env.exists(&pda::relayer(&relayer.pubkey())));
}

#[test]
fn node_lifecycle_register_stake_unstake_withdraw_deregister() {
    let mut env = Env::new();
    let (op, ata) = env.user(10_000);
    let caps = Capacity {
        memory_mb: 16_000,
        compute_score: 9_000,
        bandwidth_mbps: 1_000,
    };
    let addrs = vec![
        "/ip4/127.0.0.1/tcp/4001".to_string(),
        "/ip4/127.0.0.1/udp/4001/quic-v1".to_string(),
    ];
    let meta = env
        .send(
            &[ix::register_node(
                &op.pubkey(),
                addrs.clone(),
                caps,
                ROLE_COMPUTE | ROLE_VERIFIER,
            )],
            &op,
            &[],
        )
        .unwrap();
    assert!(
        matches!(from_logs(&meta.logs).as_slice(), [StrataEvent::NodeUpdated(e)] if e.multiaddrs == addrs)
    );
    let node: Node = env.account(&pda::node(&op.pubkey()));
    assert_eq!(
        (node.operator, node.capacity, node.multiaddrs.clone()),
        (op.pubkey(), caps, addrs)
    );

    env.send(&[ix::stake(&op.pubkey(), &ata, &env.mint, 4_000)], &op, &[])
        .unwrap();
    env.send(&[ix::stake(&op.pubkey(), &ata, &env.mint, 1_000)], &op, &[])
        .unwrap();
    assert_eq!(env.token_balance(&ata), 5_000);
    assert_eq!(env.config().total_verifier_stake, 5_000);
    env.assert_vault_balanced();

    env.send(
        &[ix::update_node(
            &op.pubkey(),
            vec!["/dns4/node.example/tcp/4001".into()],
            caps,
            ROLE_COMPUTE,
        )],
        &op,
        &[],
    )
    .unwrap();
    assert_eq!(
        env.config().total_verifier_stake,
        0,
        "dropping the verifier role removes its stake from sortition"
    );

    env.send(&[ix::request_unstake(&op.pubkey(), 5_000)], &op, &[])
        .unwrap();
    let node: Node = env.account(&pda::node(&op.pubkey()));
    assert_eq!((node.stake, node.unbonding), (0, 5_000));
    env.warp(params().unbonding_period);
    env.send(&[ix::withdraw_stake(&op.pubkey(), &ata)], &op, &[])
        .unwrap();
    assert_eq!(env.token_balance(&ata), 10_000);
    env.assert_vault_balanced();

    env.send(&[ix::deregister_node(&op.pubkey())], &op, &[])
        .unwrap();
    assert!(!env.exists(&pda::node(&op.pubkey())));
}

#[test]
fn client_deposit_request_and_withdraw_after_delay() {
    let mut env = Env::new();
    let (client, ata) = env.client(1_000);
    assert_eq!(env.token_balance(&ata), 1_000);
    env.send(&[ix::deposit(&client.pubkey(), &ata, 500)], &client, &[])
        .unwrap();
    let e: Escrow = env.account(&pda::escrow(&client.pubkey()));
    assert_eq!(e.balance, 1_500);
    env.send(
        &[ix::request_withdrawal(&client.pubkey(), 700)],
        &client,
        &[],
    )
    .unwrap();
    env.warp(params().escrow_withdraw_delay);
    let meta = env
        .send(&[ix::withdraw(&client.pubkey(), &ata)], &client, &[])
        .unwrap();
    assert!(
        matches!(from_logs(&meta.logs).as_slice(), [StrataEvent::Withdrawn(w)] if w.amount == 700)
    );
    assert_eq!(env.token_balance(&ata), 1_200);
    let e: Escrow = env.account(&pda::escrow(&client.pubkey()));
    assert_eq!((e.balance, e.pending_withdrawal), (800, 0));
    env.assert_vault_balanced();
}

#[test]
fn vouchers_settle_in_one_transaction_and_pay_the_fee_to_the_pool() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let (c1, _) = env.client(10_000);
    let (c2, _) = env.client(10_000);
    let (n1, n1_ata) = env.compute_node(MIN_STAKE);
    let (n2, n2_ata) = env.compute_node(MIN_STAKE);
    let before = (env.token_balance(&n1_ata), env.token_balance(&n2_ata));

    let ixs = env.redeem_ixs(
        &relayer.pubkey(),
        &[
            (&c1, n1.pubkey(), n1_ata, 1_000),
            (&c1, n2.pubkey(), n2_ata, 500),
            (&c2, n1.pubkey(), n1_ata, 2_000),
        ],
    );
    let meta = env.send(&ixs, &relayer, &[]).unwrap();
    let redeemed: Vec<_> = from_logs(&meta.logs)
        .into_iter()
        .filter_map(|e| match e {
            StrataEvent::VoucherRedeemed(v) => Some((v.paid, v.fee)),
            _ => None,
        })
        .collect();
    assert_eq!(redeemed, vec![(900, 100), (450, 50), (1_800, 200)]);
    assert_eq!(env.token_balance(&n1_ata) - before.0, 2_700);
    assert_eq!(env.token_balance(&n2_ata) - before.1, 450);
    assert_eq!(env.config().reward_pool, 350);
    let e1: Escrow = env.account(&pda::escrow(&c1.pubkey()));
    assert_eq!((e1.balance, e1.total_paid), (8_500, 1_500));

    // A later voucher supersedes: only the difference moves.
    let ixs = env.redeem_ixs(&relayer.pubkey(), &[(&c1, n1.pubkey(), n1_ata, 1_600)]);
    env.send(&ixs, &relayer, &[]).unwrap();
    let ch: Channel = env.account(&pda::channel(&c1.pubkey(), &n1.pubkey()));
    assert_eq!(ch.redeemed, 1_600);
    assert_eq!(env.token_balance(&n1_ata) - before.0, 2_700 + 540);
    env.assert_vault_balanced();
}

#[test]
fn channel_address_prefunded_by_a_griefer_still_opens() {
    let mut env = Env::new();
    let (c, _) = env.client(1_000);
    let (n, n_ata) = env.compute_node(MIN_STAKE);
    let (griefer, _) = env.user(0);
    let transfer = solana_instruction::Instruction {
        program_id: anchor_lang::system_program::ID,
        accounts: vec![
            solana_instruction::AccountMeta::new(griefer.pubkey(), true),
            solana_instruction::AccountMeta::new(pda::channel(&c.pubkey(), &n.pubkey()), false),
        ],
        data: [
            2u32.to_le_bytes().as_slice(),
            1_000_000u64.to_le_bytes().as_slice(),
        ]
        .concat(),
    };
    env.send(&[transfer], &griefer, &[]).unwrap();
    let ixs = env.redeem_ixs(&n.pubkey(), &[(&c, n.pubkey(), n_ata, 100)]);
    env.send(&ixs, &n, &[]).unwrap();
    let ch: Channel = env.account(&pda::channel(&c.pubkey(), &n.pubkey()));
    assert_eq!(ch.redeemed, 100);
}

#[test]
fn batch_post_and_reward_claims_are_idempotent() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let leaves: Vec<[u8; 32]> = (0..5u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], PROGRAM_ID.as_array(), &[i; 32]))
        .collect();
    let id = env.post_batch(&relayer, &leaves);
    let b: Batch = env.account(&pda::batch(id));
    assert_eq!(
        (b.id, b.task_count, b.root),
        (0, 5, merkle::root::<Ledger>(&leaves))
    );

    let (funder, funder_ata) = env.user(100_000);
    env.send(
        &[ix::fund_rewards(&funder.pubkey(), &funder_ata, 50_000)],
        &funder,
        &[],
    )
    .unwrap();

    let (n1, n1_ata) = env.compute_node(MIN_STAKE);
    let (n2, n2_ata) = env.compute_node(MIN_STAKE);
    let epoch0 = vec![
        Ledger::reward_leaf(n1.pubkey().as_array(), 300),
        Ledger::reward_leaf(n2.pubkey().as_array(), 200),
    ];
    let authority = env.reward_authority.insecure_clone();
    env.send(
        &[ix::publish_rewards(
            &authority.pubkey(),
            0,
            merkle::root::<Ledger>(&epoch0),
            2,
            500,
        )],
        &authority,
        &[],
    )
    .unwrap();
    let proof = merkle::proof::<Ledger>(&epoch0, 0).unwrap();
    let before = env.token_balance(&n1_ata);
    env.send(
        &[ix::claim_rewards(
            &n1.pubkey(),
            &n1_ata,
            0,
            300,
            0,
            proof.clone(),
        )],
        &n1,
        &[],
    )
    .unwrap();
    assert_eq!(env.token_balance(&n1_ata) - before, 300);

    // Next epoch: n1's cumulative grows to 450; it is paid only the 150 difference.
    env.warp(params().epoch_length);
    let epoch1 = vec![
        Ledger::reward_leaf(n1.pubkey().as_array(), 450),
        Ledger::reward_leaf(n2.pubkey().as_array(), 200),
    ];
    env.send(
        &[ix::publish_rewards(
            &authority.pubkey(),
            1,
            merkle::root::<Ledger>(&epoch1),
            2,
            350,
        )],
        &authority,
        &[],
    )
    .unwrap();
    let p1 = merkle::proof::<Ledger>(&epoch1, 0).unwrap();
    env.send(
        &[ix::claim_rewards(&n1.pubkey(), &n1_ata, 1, 450, 0, p1)],
        &n1,
        &[],
    )
    .unwrap();
    assert_eq!(env.token_balance(&n1_ata) - before, 450);
    let p2 = merkle::proof::<Ledger>(&epoch1, 1).unwrap();
    env.send(
        &[ix::claim_rewards(&n2.pubkey(), &n2_ata, 1, 200, 1, p2)],
        &n2,
        &[],
    )
    .unwrap();
    let e1: RewardEpoch = env.account(&pda::reward_epoch(1));
    assert_eq!(e1.remaining, 0);
    assert_eq!(env.config().reward_pool, 50_000 - 650);
    env.assert_vault_balanced();
}

#[test]
fn upheld_challenge_slashes_and_pays_the_challenger() {
    let mut d = open_dispute(3, 3, 2);
    assert_eq!(d.env.token_balance(&d.challenger_ata), 900, "bond locked");
    assert_eq!(
        (d.selected.len(), d.not_selected.len()),
        (3, 0),
        "committee >= verifier count selects everyone"
    );
    let (a, b) = d.quorum();
    d.verdict(&[&a, &b], true).unwrap();
    let node = d.accused_node();
    assert_eq!(
        (node.stake, node.slashed_total, node.open_challenges),
        (5_000, 5_000, 0)
    );
    // Bond back (100) plus 20 % of the 5,000 slashed.
    assert_eq!(d.env.token_balance(&d.challenger_ata), 900 + 100 + 1_000);
    assert_eq!(d.env.config().reward_pool, 4_000);
    let c: Challenge = d.env.account(&d.challenge);
    assert_eq!(c.status, ChallengeStatus::Upheld);
    d.env.assert_vault_balanced();
}

#[test]
fn rejected_challenge_forfeits_the_bond() {
    let mut d = open_dispute(3, 3, 2);
    let (a, b) = d.quorum();
    d.verdict(&[&a, &b], false).unwrap();
    assert_eq!(d.env.token_balance(&d.challenger_ata), 900);
    assert_eq!(d.env.config().reward_pool, 100);
    let node = d.accused_node();
    assert_eq!((node.stake, node.open_challenges), (10_000, 0));
    d.env.assert_vault_balanced();
}

#[test]
fn stale_challenge_expires_returns_the_bond_and_closes() {
    let mut d = open_dispute(3, 3, 2);
    d.env.warp(params().verdict_timeout + 1);
    let rent_payer_before = d.env.svm.get_balance(&d.challenger.pubkey()).unwrap_or(0);
    let meta = d.expire().unwrap();
    assert!(matches!(
        from_logs(&meta.logs).as_slice(),
        [StrataEvent::ChallengeExpired(e)] if e.challenge == d.challenge
    ));
    assert_eq!(d.env.token_balance(&d.challenger_ata), 1_000, "bond back");
    assert!(
        !d.env.exists(&d.challenge),
        "closed, so the receipt can be challenged again"
    );
    assert!(
        d.env.svm.get_balance(&d.challenger.pubkey()).unwrap_or(0) > rent_payer_before,
        "the challenge's rent went back to the challenger"
    );
    assert_eq!(d.accused_node().open_challenges, 0);
    d.env.assert_vault_balanced();
}
