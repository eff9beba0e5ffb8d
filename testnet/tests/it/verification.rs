//! The verification network on the local testnet, end to end: one honest
//! node, one node that skips every other layer, three verifiers, every task
//! audited. The cheater's receipts are audited, challenged, judged by a
//! quorum of its committee and it is slashed; the challenger is paid; the
//! honest node is audited and never challenged; the vault's ledger holds.

use std::time::Duration;

use strata_chain::accounts::ChallengeStatus;
use strata_chain::{pda, Pubkey, Signer};
use strata_node::cheat::Cheat;
use strata_test_utils::wait_for;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_is_audited_challenged_and_slashed_and_the_honest_node_is_not() {
    let _turn = crate::one_at_a_time().await;
    crate::logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.nodes = 2;
    options.verifiers = 3;
    options.network.cheats = vec![Cheat::SkipLayers];
    options.network.verifier_poll = Duration::from_millis(300);
    options.genesis.params.audit_rate_bps = 10_000;
    let params = options.genesis.params;
    let node_stake = options.network.node_stake;
    let verifier_stake = options.network.verifier_stake;
    let verifier_funds = 2 * options.genesis.node_stake + 100 * params.challenge_bond;
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let honest = t.keys.nodes[0].pubkey();
    let cheater = t.keys.nodes[1].pubkey();

    // Paid tasks through the gateway, a few at a time, until both nodes have
    // served some (the gateway picks the least loaded node).
    let http = reqwest::Client::new();
    let served = |node: Pubkey| {
        t.net
            .nodes
            .iter()
            .find(|n| n.node_id().0 == node.to_bytes())
            .map(|n| n.service.serving_cpu_micros())
            .unwrap_or(0)
    };
    for round in 0..20 {
        let calls = (0..4).map(|i| {
            http.post(format!("{}/v1/completions", t.net.gateway.url()))
                .bearer_auth(DEMO_API_KEY)
                .json(&serde_json::json!({
                    "model": strata_testnet::MODEL_NAME,
                    "prompt": format!("Round {round}, question {i}: name a colour."),
                    "max_tokens": 8,
                    "temperature": 0
                }))
                .send()
        });
        for r in futures::future::join_all(calls).await {
            assert_eq!(r.unwrap().status(), 200);
        }
        if round >= 2 && served(honest) > 0 && served(cheater) > 0 {
            break;
        }
    }
    assert!(
        served(honest) > 0 && served(cheater) > 0,
        "both nodes served"
    );

    // The cheater is slashed and every challenge against it is settled.
    let rpc = &t.rpc;
    wait_for(
        Duration::from_secs(240),
        "the cheater to be slashed with no challenge left open",
        || async {
            let n = rpc.node(&cheater).await.ok().flatten();
            n.is_some_and(|n| n.slashed_total > 0 && n.open_challenges == 0)
        },
    )
    .await;

    let challenges = rpc.challenges().await.unwrap();
    assert!(
        challenges.iter().all(|(_, c)| c.node != honest),
        "the honest node was never challenged"
    );
    let upheld: Vec<_> = challenges
        .iter()
        .filter(|(_, c)| c.node == cheater && c.status == ChallengeStatus::Upheld)
        .collect();
    assert!(!upheld.is_empty());

    // Its stake dropped by the slash fraction once per upheld challenge.
    let mut expected = node_stake;
    for _ in &upheld {
        expected -= expected * u64::from(params.slash_bps) / 10_000;
    }
    let c = rpc.node(&cheater).await.unwrap().unwrap();
    assert_eq!(c.stake, expected, "{} upheld challenges", upheld.len());
    assert_eq!(c.slashed_total, node_stake - expected);
    let h = rpc.node(&honest).await.unwrap().unwrap();
    assert_eq!((h.stake, h.slashed_total), (node_stake, 0));

    // Each challenger got its bond back plus its share of each slash.
    for v in &t.keys.verifiers {
        let ata = pda::associated_token(&v.pubkey(), &t.keys.mint.pubkey());
        let shares: u64 = upheld
            .iter()
            .filter(|(_, c)| c.challenger == v.pubkey())
            .map(|(_, c)| c.slashed * u64::from(params.challenger_share_bps) / 10_000)
            .sum();
        let open_bonds: u64 = challenges
            .iter()
            .filter(|(_, c)| c.challenger == v.pubkey() && c.status == ChallengeStatus::Open)
            .map(|(_, c)| c.bond)
            .sum();
        assert_eq!(
            rpc.token_balance(&ata).await.unwrap(),
            verifier_funds - verifier_stake + shares - open_bonds,
            "verifier {} balance",
            v.pubkey()
        );
    }

    // The honest node's receipts were audited, and passed.
    let honest_b58 = honest.to_string();
    wait_for(
        Duration::from_secs(120),
        "a passed audit of the honest node",
        || {
            let http = http.clone();
            let url = format!("{}/v1/audits?limit=200", t.net.relayer.http_url());
            let honest = honest_b58.clone();
            async move {
                let Ok(r) = http.get(url).send().await else {
                    return false;
                };
                let list: serde_json::Value = r.json().await.unwrap_or_default();
                list.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["node"] == honest.as_str() && x["outcome"] == "passed")
                        && a.iter()
                            .all(|x| x["node"] != honest.as_str() || x["outcome"] == "passed")
                })
            }
        },
    )
    .await;

    // One audited task, followed across the services by its id: the
    // gateway that ran it, the node that served and settled it, the relayer
    // that stored its receipt and the verifier that audited it all logged
    // inside its `task` span.
    let audits: Vec<strata_wire::api::AuditView> = http
        .get(format!("{}/v1/audits?limit=200", t.net.relayer.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = &audits
        .iter()
        .find(|a| a.node == honest_b58)
        .expect("an audit of the honest node")
        .task_id;
    let lines = crate::logs::of_task(task);
    for service in [
        "strata_gateway",
        "strata_node",
        "strata_relayer",
        "strata_verifier",
    ] {
        assert!(
            lines.iter().any(|(target, _)| target == service),
            "{service} logged nothing in the span of task {task}: {lines:#?}\n{}",
            crate::logs::sample()
        );
    }

    // The ledger: every token the vault holds is accounted for.
    let config = rpc.config().await.unwrap();
    let vault = rpc.token_balance(&pda::vault()).await.unwrap();
    assert_eq!(
        vault,
        config.total_stake + config.total_escrow + config.reward_pool + config.bonds_held
    );
    t.shutdown().await;
}
