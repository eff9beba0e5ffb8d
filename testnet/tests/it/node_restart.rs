//! The operator's journey on a real chain: a fresh node registers and stakes
//! itself; after a shutdown, a restart with the same key finds its stake and
//! changes nothing.

use strata_chain::rpc::ChainClient;
use strata_chain::Signer;
use strata_node::{start, NodeConfig};
use strata_p2p::P2pConfig;
use strata_test_utils::chain::start_localnet;
use strata_testnet::genesis::TOKEN;
use strata_testnet::{bootstrap, GenesisOptions, TestnetKeys, MODEL_NAME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_and_stakes_once_and_restarts_where_it_was() {
    let _turn = crate::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let chain = start_localnet().await;
    let rpc = ChainClient::new(chain.rpc_url()).unwrap();
    let keys = TestnetKeys::load_or_create(dir.path(), 1).unwrap();
    let genesis = GenesisOptions {
        register_nodes: false,
        ..GenesisOptions::default()
    };
    bootstrap(&rpc, chain.ws_url(), &keys, &genesis)
        .await
        .unwrap();
    let key = &keys.nodes[0];
    assert!(rpc.node(&key.pubkey()).await.unwrap().is_none());

    let config = || NodeConfig {
        keypair: key.insecure_clone(),
        rpc_url: Some(chain.rpc_url().to_string()),
        model_path: strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE),
        model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.to_string()),
        model_name: MODEL_NAME.into(),
        price_per_token: 10,
        max_concurrent: 4,
        max_tokens: 64,
        stake: 300 * TOKEN,
        p2p: P2pConfig::local(),
        relayer: None,
        profile_tokens: 4,
        quiet: true,
        state_dir: None,
        cheat: None,
        memory: Default::default(),
        follow_trainers: Vec::new(),
    };
    let first = start(config()).await.unwrap();
    let r = first.registration.unwrap();
    assert!(r.registered_now);
    assert_eq!(r.staked_now, 300 * TOKEN);
    let on_chain = rpc.node(&key.pubkey()).await.unwrap().unwrap();
    assert_eq!(on_chain.stake, 300 * TOKEN);
    assert_eq!(on_chain.multiaddrs, first.addrs);
    assert!(
        on_chain.capacity.compute_score > 0,
        "profiled speed is declared"
    );
    first.shutdown().await;

    let second = start(config()).await.unwrap();
    let r = second.registration.unwrap();
    assert!(!r.registered_now);
    assert_eq!(r.staked_now, 0, "a restart stakes nothing more");
    let on_chain = rpc.node(&key.pubkey()).await.unwrap().unwrap();
    assert_eq!(on_chain.stake, 300 * TOKEN);
    assert_eq!(
        on_chain.multiaddrs, second.addrs,
        "new listen addresses are published"
    );
    second.shutdown().await;
}
