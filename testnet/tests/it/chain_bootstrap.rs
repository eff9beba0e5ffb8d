//! Discovery from the chain: a gateway given no bootstrap peer at all finds
//! every node through the multiaddrs they registered on-chain, and can route
//! to them.

use std::time::Duration;

use strata_gateway::GatewayConfig;
use strata_p2p::P2pConfig;
use strata_test_utils::wait_for;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_bootstrap_peers_finds_the_nodes_on_chain() {
    let _turn = crate::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTestnet::start(dir.path(), LocalOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    let gateway = strata_gateway::start(GatewayConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        rpc_url: t.manifest.rpc_url.clone(),
        accounts: vec![(DEMO_API_KEY.into(), t.keys.client.insecure_clone())],
        state_dir: dir.path().join("second-gateway"),
        p2p: P2pConfig::local(),
    })
    .await
    .unwrap();
    let nodes = t.keys.nodes.len();
    wait_for(
        Duration::from_secs(60),
        &format!("the gateway to hear all {nodes} nodes"),
        || {
            let heard = gateway.nodes_known();
            async move { heard >= nodes }
        },
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/completions", gateway.url()))
        .bearer_auth(DEMO_API_KEY)
        .json(&serde_json::json!({"model": strata_testnet::MODEL_NAME, "prompt": "Hello", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    gateway.shutdown().await;
    t.shutdown().await;
}
