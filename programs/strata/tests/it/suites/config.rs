//! Who may change parameters, register relayers and declare nodes, and the
//! bounds every declaration must meet.

use crate::prelude::*;

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

#[test]
fn stake_cannot_unbond_before_its_receipts_can_no_longer_be_judged() {
    let mut env = Env::new();
    let admin = env.admin.insecure_clone();
    let reward = env.reward_authority.pubkey();
    let mut p = params();
    p.unbonding_period = p.challenge_window + p.verdict_timeout - 1;
    assert_error(
        env.send(
            &[ix::update_config(&admin.pubkey(), p, &reward)],
            &admin,
            &[],
        ),
        StrataError::InvalidParameter,
    );
    p.unbonding_period = p.challenge_window + p.verdict_timeout;
    env.send(
        &[ix::update_config(&admin.pubkey(), p, &reward)],
        &admin,
        &[],
    )
    .unwrap();
    // The audit and seed parameters have bounds too.
    for bad in [
        ConfigParams {
            audit_layers: 0,
            ..p
        },
        ConfigParams {
            audit_layers: 65,
            ..p
        },
        ConfigParams {
            audit_positions: 65,
            ..p
        },
        ConfigParams {
            seed_delay_slots: 0,
            ..p
        },
        ConfigParams {
            seed_delay_slots: 129,
            ..p
        },
        ConfigParams {
            audit_reward_bps: 10_001,
            ..p
        },
    ] {
        assert_error(
            env.send(
                &[ix::update_config(&admin.pubkey(), bad, &reward)],
                &admin,
                &[],
            ),
            StrataError::InvalidParameter,
        );
    }
}
