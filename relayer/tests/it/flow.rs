//! The relayer on a real chain: receipts in over HTTP and over a p2p
//! request, a batch posted on-chain whose root the served proofs verify
//! against, and vouchers redeemed for exactly the latest cumulative per
//! channel (fee to the reward pool).

use crate::common::*;
use strata_chain::Signer;
use strata_p2p::{NodeIdentity, P2pConfig};
use strata_relayer::Relayer;
use strata_wire::api::{BatchView, SettlementView, StatsView};
use strata_wire::protocols::{ALL_PROTOCOLS, RECEIPT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_batched_proved_and_paid() {
    let env = setup(2, 2, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(env.relayer_config(dir.path(), 0))
        .await
        .expect("relayer starts");
    let base = relayer.http_url().to_string();
    let http = http();
    let (a, b) = (&env.clients[0], &env.clients[1]);
    let (n1, n2) = (&env.nodes[0], &env.nodes[1]);

    // Client a pays node 1 three times (cumulative 100, 200, 300), b pays
    // node 1 twice, a pays node 2 once.
    let receipts = vec![
        receipt(n1, a, 1, 100, 100),
        receipt(n1, a, 2, 100, 200),
        receipt(n1, b, 3, 40, 40),
        receipt(n2, a, 4, 60, 60),
        receipt(n1, b, 5, 40, 80),
    ];
    for r in &receipts[..4] {
        let (status, body) = post(&http, &base, r.encode()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "stored");
    }
    // One more over a p2p request from node 1: answered 0 once stored.
    let node_p2p = NodeIdentity::from_keypair_bytes(n1.to_bytes()).unwrap();
    let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
    let (handle, _events) = strata_p2p::start(node_p2p, config).await.unwrap();
    handle.dial(&relayer.p2p_addrs()[0]).await.unwrap();
    let answer = handle
        .request(relayer.node_id(), &RECEIPT, receipts[4].encode())
        .await
        .unwrap();
    assert_eq!(answer, vec![0]);
    // The same receipt again is fine (idempotent), over HTTP too.
    let (status, body) = post(&http, &base, receipts[4].encode()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    // A last one, cumulative 300 for (a, n1), after the others.
    let last = receipt(n1, a, 6, 100, 300);
    assert_eq!(post(&http, &base, last.encode()).await.0, 200);

    // Whatever has been redeemed so far, the rest is the backlog: the two
    // add up to the channels' latest totals, 300 + 80 + 60; and a batch
    // lag shows exactly while receipts wait.
    let early = strata_test_utils::scrape(&format!("{base}/metrics")).await;
    let backlog = early.value("strata_relayer_unredeemed_base_units", &[]);
    let redeemed = early.value("strata_relayer_settled_paid_base_units", &[])
        + early.value("strata_relayer_settled_fee_base_units", &[]);
    assert_eq!(
        backlog + redeemed,
        440.0,
        "backlog {backlog}, redeemed {redeemed}"
    );
    assert_eq!(
        early.value("strata_relayer_receipts_pending", &[]) > 0.0,
        early.value("strata_relayer_batch_lag_seconds", &[]) > 0.0,
    );
    let mut all = receipts.clone();
    all.push(last);
    wait_for(40, "every receipt in a posted batch", || async {
        let mut ok = true;
        for r in &all {
            let v = get_view(&http, &base, &r.body.task_id).await;
            ok &= v.is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"));
        }
        ok
    })
    .await;
    for r in &all {
        let view = get_view(&http, &base, &r.body.task_id).await.unwrap();
        assert_eq!(view.digest, hex::encode(r.body.digest()));
        assert!(view.batch.as_ref().unwrap().post_signature.is_some());
        env.assert_proof_on_chain(&view).await;
    }

    // Vouchers: latest per channel is (a,n1)=300, (b,n1)=80, (a,n2)=60.
    wait_for(40, "three channels settled", || async {
        let s: Vec<SettlementView> = get_json(&http, &base, "/v1/settlements").await;
        let redeemed: u64 = s.iter().map(|s| s.amount).sum();
        redeemed == 300 + 80 + 60
    })
    .await;
    let fee = |x: u64| x * u64::from(FEE_BPS) / 10_000;
    assert_eq!(
        env.node_balance(&n1.pubkey()).await,
        300 - fee(300) + 80 - fee(80)
    );
    assert_eq!(env.node_balance(&n2.pubkey()).await, 60 - fee(60));
    assert_eq!(env.escrow_balance(&a.pubkey()).await, DEPOSIT - 360);
    assert_eq!(env.escrow_balance(&b.pubkey()).await, DEPOSIT - 80);
    let config = env.rpc.config().await.unwrap();
    assert_eq!(
        config.reward_pool,
        REWARD_POOL + fee(300) + fee(80) + fee(60)
    );

    let stats: StatsView = get_json(&http, &base, "/v1/stats").await;
    assert_eq!((stats.receipts, stats.batched), (6, 6));
    assert_eq!(
        stats.tasks_per_minute.iter().map(|b| b.tasks).sum::<u64>(),
        6
    );
    let batches: Vec<BatchView> = get_json(&http, &base, "/v1/batches").await;
    assert_eq!(batches.iter().map(|b| b.task_count).sum::<u32>(), 6);
    assert_eq!(config.total_tasks, 6);

    // The same, scraped as Prometheus metrics and read by a text-format parser.
    let scrape = strata_test_utils::scrape(&format!("{base}/metrics")).await;
    let metric = |name: &str| scrape.value(name, &[]);
    for name in strata_test_utils::dashboard_metrics("strata_relayer_") {
        assert!(
            scrape.has(&name),
            "the dashboard plots {name}, the relayer has none"
        );
    }
    assert_eq!(metric("strata_relayer_receipts"), 6.0);
    assert_eq!(metric("strata_relayer_receipts_batched"), 6.0);
    assert_eq!(metric("strata_relayer_receipts_pending"), 0.0);
    assert_eq!(metric("strata_relayer_batch_lag_seconds"), 0.0);
    assert_eq!(metric("strata_relayer_unredeemed_base_units"), 0.0);
    assert_eq!(metric("strata_relayer_channels_unredeemed"), 0.0);
    assert_eq!(metric("strata_relayer_batches"), batches.len() as f64);
    assert_eq!(
        metric("strata_relayer_settled_paid_base_units"),
        stats.settled_paid as f64
    );
    assert!(stats.settled_paid > 0);

    handle.shutdown().await;
    relayer.shutdown().await;
}
