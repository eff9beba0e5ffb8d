//! Restarting the local testnet on the same state directory: the keys are
//! the same, the chain is new, and nothing the services kept from the old
//! chain leaks into the new one (a stale voucher total would make the client
//! pay again for work done on the old chain).

use std::time::Duration;

use serde_json::json;
use strata_chain::Signer;
use strata_test_utils::wait_for;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;

/// Pays for one completion; returns its price.
async fn pay(t: &LocalTestnet) -> u64 {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/completions", t.net.gateway.url()))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["strata"]["price"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_identities_and_charges_only_new_work() {
    let _turn = crate::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let first = LocalTestnet::start(dir.path(), LocalOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    let client = first.keys.client.pubkey();
    let nodes: Vec<_> = first.keys.nodes.iter().map(|k| k.pubkey()).collect();
    for _ in 0..3 {
        pay(&first).await;
    }
    first.shutdown().await;

    let second = LocalTestnet::start(dir.path(), LocalOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    assert_eq!(second.keys.client.pubkey(), client);
    let again: Vec<_> = second.keys.nodes.iter().map(|k| k.pubkey()).collect();
    assert_eq!(again, nodes);
    let price = pay(&second).await;
    wait_for(
        Duration::from_secs(60),
        "the voucher to be redeemed",
        || {
            let (rpc, client) = (&second.rpc, &client);
            async move { rpc.escrow(client).await.unwrap().unwrap().total_paid > 0 }
        },
    )
    .await;
    let paid = second
        .rpc
        .escrow(&client)
        .await
        .unwrap()
        .unwrap()
        .total_paid;
    assert_eq!(
        paid, price,
        "the new chain's escrow pays for the new task only"
    );
    second.shutdown().await;
}
