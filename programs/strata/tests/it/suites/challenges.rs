//! Challenges, committees and verdicts: the protocol's own rules, each
//! refused with its named error.

use crate::prelude::*;

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
    assert_eq!(
        code(&err),
        Some(ACCOUNT_NOT_INITIALIZED),
        "unregistered verifier: {err:?}"
    );
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
            &pda::batch(case.batch_id),
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
fn committee_ignores_stake_that_arrived_after_the_challenge_opened() {
    let mut d = disputed_network(3, 3, 2);
    let (role_taker, role_taker_ata) = d.env.compute_node(VERIFIER_STAKE);
    d.env.advance_slots(1);
    d.open().unwrap();
    // After the opening: a new verifier, a top-up and a role change.
    let (late, _) = d.env.verifier(VERIFIER_STAKE);
    let topped = d.verifiers[0].insecure_clone();
    let ata = d.env.token_account_for(&topped.pubkey());
    d.env.mint_to(&ata, 1_000);
    let mint = d.env.mint;
    d.env
        .send(
            &[ix::stake(&topped.pubkey(), &ata, &mint, 1_000)],
            &topped,
            &[],
        )
        .unwrap();
    let _ = role_taker_ata;
    d.env
        .send(
            &[ix::update_node(
                &role_taker.pubkey(),
                vec!["/ip4/127.0.0.1/tcp/4001".into()],
                Capacity::default(),
                ROLE_COMPUTE | ROLE_VERIFIER,
            )],
            &role_taker,
            &[],
        )
        .unwrap();
    d.draw(3, 2);
    let honest = d.verifiers[1].insecure_clone();
    for newcomer in [&late, &topped, &role_taker] {
        assert_error(
            d.verdict(&[&honest, newcomer], true),
            StrataError::VerifierNotEligible,
        );
    }
    assert_eq!(d.accused_node().stake, ACCUSED_STAKE);
    // The committee in place before the opening can still decide.
    let other = d.verifiers[2].insecure_clone();
    d.verdict(&[&honest, &other], true).unwrap();
    assert_eq!(d.accused_node().stake, ACCUSED_STAKE / 2);
    d.env.assert_vault_balanced();
}

#[test]
fn committee_is_unknown_when_the_challenge_opens_and_excludes_the_accused() {
    let mut d = disputed_network(3, 3, 2);
    // The accused is a verifier too: its stake must not weigh on its committee.
    let accused = d.accused.insecure_clone();
    d.env
        .send(
            &[ix::update_node(
                &accused.pubkey(),
                vec!["/ip4/127.0.0.1/tcp/4001".into()],
                Capacity::default(),
                ROLE_COMPUTE | ROLE_VERIFIER,
            )],
            &accused,
            &[],
        )
        .unwrap();
    d.env.advance_slots(1);
    assert_eq!(
        d.env.config().total_verifier_stake,
        3 * VERIFIER_STAKE + ACCUSED_STAKE
    );
    let opened_at = d.env.slot();
    d.open().unwrap();
    let c = d.challenge_account();
    assert_eq!(
        c.total_verifier_stake,
        3 * VERIFIER_STAKE,
        "accused excluded"
    );
    assert_eq!(c.seed, [0; 32], "no committee at opening");
    assert_eq!(
        c.seed_slot,
        opened_at + u64::from(params().seed_delay_slots)
    );
    // Nothing can be judged before the draw, and the draw waits for its slot.
    let (a, b) = (
        d.verifiers[0].insecure_clone(),
        d.verifiers[1].insecure_clone(),
    );
    assert_error(d.verdict(&[&a, &b], true), StrataError::CommitteeNotDrawn);
    d.env
        .set_slot_hashes(&[(opened_at, [1; 32]), (opened_at - 1, [2; 32])]);
    let (anyone, _) = d.env.user(0);
    assert_error(
        d.env
            .send(&[ix::draw_committee(&d.challenge)], &anyone, &[]),
        StrataError::SeedNotReady,
    );
    d.env.reach_seed_slot(c.seed_slot, [9; 32]);
    d.env
        .send(&[ix::draw_committee(&d.challenge)], &anyone, &[])
        .unwrap();
    let c = d.challenge_account();
    assert_eq!(
        c.seed,
        strata_chain::sortition::challenge_seed(&[9; 32], d.challenge.as_array()),
        "the seed is the seed slot's hash, not any hash known at opening"
    );
    d.env.advance_slots(1);
    assert_error(
        d.env
            .send(&[ix::draw_committee(&d.challenge)], &anyone, &[]),
        StrataError::SeedAlreadyDrawn,
    );
    // The accused cannot vote on itself even though it is a verifier.
    assert_error(
        d.verdict(&[&a, &accused], false),
        StrataError::SelfVerification,
    );
    d.verdict(&[&a, &b], true).unwrap();
    d.env.assert_vault_balanced();
}

#[test]
fn a_missed_seed_slot_is_rearmed_not_guessed() {
    let mut d = disputed_network(3, 3, 2);
    d.open().unwrap();
    let c = d.challenge_account();
    // Nobody drew while the seed slot was in SlotHashes; now the window
    // starts after it.
    d.env.advance_slots(600);
    let now = d.env.slot();
    d.env
        .set_slot_hashes(&[(now - 1, [3; 32]), (c.seed_slot + 10, [4; 32])]);
    let (anyone, _) = d.env.user(0);
    let meta = d
        .env
        .send(&[ix::draw_committee(&d.challenge)], &anyone, &[])
        .unwrap();
    assert!(matches!(
        from_logs(&meta.logs).as_slice(),
        [StrataEvent::SeedRearmed(e)] if e.seed_slot == now + u64::from(params().seed_delay_slots)
    ));
    let c2 = d.challenge_account();
    assert_eq!(c2.seed, [0; 32]);
    assert!(c2.seed_slot > now);
    d.draw(3, 2);
    assert_ne!(d.challenge_account().seed, [0; 32]);
}

#[test]
fn an_expired_challenge_does_not_shield_the_receipt() {
    let mut d = open_dispute(3, 3, 2);
    d.env.warp(params().verdict_timeout + 1);
    d.expire().unwrap();
    // The same leaf can be challenged again, and this time judged.
    d.env.warp(-(params().verdict_timeout + 1));
    d.open().unwrap();
    d.draw(3, 2);
    let (a, b) = d.quorum();
    d.verdict(&[&a, &b], true).unwrap();
    assert_eq!(d.accused_node().stake, ACCUSED_STAKE / 2);
    assert_eq!(d.challenge_account().status, ChallengeStatus::Upheld);
    d.env.assert_vault_balanced();
}

#[test]
fn a_node_cannot_challenge_itself() {
    let mut d = disputed_network(3, 3, 2);
    let accused = d.accused.insecure_clone();
    let ata = d.env.token_account_for(&accused.pubkey());
    let before = d.env.token_balance(&ata);
    assert_error(
        d.env.send(
            &[ix::open_challenge(
                &accused.pubkey(),
                &ata,
                d.batch_id,
                &accused.pubkey(),
                claim(&d.leaves, 2),
            )],
            &accused,
            &[],
        ),
        StrataError::SelfChallenge,
    );
    assert_eq!(d.env.token_balance(&ata), before, "no bond taken");
    assert!(!d.env.exists(&d.challenge));
}

#[test]
fn a_running_challenge_keeps_the_terms_it_opened_with() {
    let mut d = open_dispute(3, 3, 2);
    let admin = d.env.admin.insecure_clone();
    let reward = d.env.reward_authority.pubkey();
    let mut p = params();
    p.committee_size = 3;
    p.verifier_quorum = 3;
    p.slash_bps = 1_000;
    p.challenger_share_bps = 0;
    d.env
        .send(
            &[ix::update_config(&admin.pubkey(), p, &reward)],
            &admin,
            &[],
        )
        .unwrap();
    // Two signatures still make the quorum of 2 it opened with, and the slash
    // is the 50 % it opened with, 20 % of it to the challenger.
    let (a, b) = d.quorum();
    d.verdict(&[&a, &b], true).unwrap();
    assert_eq!(d.accused_node().stake, ACCUSED_STAKE / 2);
    assert_eq!(
        d.env.token_balance(&d.challenger_ata),
        1_000 + ACCUSED_STAKE / 2 / 5
    );
    d.env.assert_vault_balanced();
}

#[test]
fn verdicts_for_another_challenge_or_replayed_are_refused() {
    let mut d = open_dispute(3, 3, 2);
    let (a, b) = d.quorum();
    // Signatures over another challenge's message.
    let other = pda::challenge(&pda::batch(d.batch_id), 1);
    let msg = messages::verdict_message(PROGRAM_ID.as_array(), other.as_array(), true);
    let signed: Vec<_> = [&a, &b]
        .iter()
        .map(|v| SignedMessage::sign(v, &msg))
        .collect();
    let ixs = vec![
        verify_instruction(&signed).unwrap(),
        ix::resolve_challenge(
            &a.pubkey(),
            &d.challenge,
            &pda::batch(d.batch_id),
            &d.accused.pubkey(),
            &d.challenger_ata,
            &[a.pubkey(), b.pubkey()],
            true,
        ),
    ];
    assert_error(d.env.send(&ixs, &a, &[]), StrataError::MessageMismatch);
    // The real verdict lands once; replaying it changes nothing.
    d.verdict(&[&a, &b], true).unwrap();
    let after = d.accused_node().stake;
    d.env.advance_slots(1);
    assert_error(d.verdict(&[&a, &b], true), StrataError::ChallengeNotOpen);
    assert_eq!(d.accused_node().stake, after);
    d.env.assert_vault_balanced();
}
