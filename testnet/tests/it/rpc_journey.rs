//! The local chain end to end over JSON-RPC: the testnet genesis, then stake,
//! deposit, a voucher batch, a receipt batch and a reward claim, all sent by
//! the same client the binaries use, and read back by a plain
//! `solana-rpc-client`.

use anchor_lang::AccountDeserialize;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{
    accounts::Node, ix, messages, pda, rpc::ChainClient, ChainError, Signer, PROGRAM_ID,
};
use strata_test_utils::chain::start_localnet;
use strata_testnet::{bootstrap, genesis::TOKEN, GenesisOptions, TestnetKeys, TestnetManifest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testnet_genesis_and_settlement_over_rpc() {
    let dir = std::env::temp_dir().join(format!("strata-testnet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = TestnetKeys::load_or_create(&dir, 2).unwrap();
    let chain = start_localnet().await;
    let client = ChainClient::new(chain.rpc_url()).unwrap();
    let options = GenesisOptions::default();
    let manifest = bootstrap(&client, chain.ws_url(), &keys, &options)
        .await
        .expect("genesis");
    manifest.write(&dir).unwrap();
    assert_eq!(TestnetManifest::read(&dir).unwrap(), manifest);

    // A standard Solana client reads a registered node's account.
    let plain = RpcClient::new(chain.rpc_url().to_string());
    let node_key = keys.nodes[0].pubkey();
    let account = plain
        .get_account(&pda::node(&node_key))
        .await
        .expect("node account over RPC");
    assert_eq!(account.owner, PROGRAM_ID);
    let node = Node::try_deserialize(&mut account.data.as_slice()).unwrap();
    assert_eq!((node.operator, node.stake), (node_key, options.node_stake));

    // Stake more.
    let mint = keys.mint.pubkey();
    let node_ata = pda::associated_token(&node_key, &mint);
    client
        .send(
            &[ix::stake(&node_key, &node_ata, &mint, 5 * TOKEN)],
            &keys.nodes[0],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        client.node(&node_key).await.unwrap().unwrap().stake,
        options.node_stake + 5 * TOKEN
    );

    // The client deposits more, then a voucher batch pays node 0 and node 1 in one transaction.
    let c = &keys.client;
    let c_ata = pda::associated_token(&c.pubkey(), &mint);
    client
        .send(&[ix::deposit(&c.pubkey(), &c_ata, 20 * TOKEN)], c, &[])
        .await
        .unwrap();
    let n1 = keys.nodes[1].pubkey();
    let n1_ata = pda::associated_token(&n1, &mint);
    let before = (
        client.token_balance(&node_ata).await.unwrap(),
        client.token_balance(&n1_ata).await.unwrap(),
    );
    let signed = vec![
        SignedMessage::sign(
            c,
            &messages::voucher_message(PROGRAM_ID.as_array(), node_key.as_array(), 2 * TOKEN),
        ),
        SignedMessage::sign(
            c,
            &messages::voucher_message(PROGRAM_ID.as_array(), n1.as_array(), TOKEN),
        ),
    ];
    let redeem = ix::redeem_vouchers(
        &keys.relayer.pubkey(),
        &[
            ix::VoucherAccounts {
                client: c.pubkey(),
                node: node_key,
                node_token: node_ata,
            },
            ix::VoucherAccounts {
                client: c.pubkey(),
                node: n1,
                node_token: n1_ata,
            },
        ],
    );
    client
        .send(
            &[verify_instruction(&signed).unwrap(), redeem.clone()],
            &keys.relayer,
            &[],
        )
        .await
        .expect("voucher batch settles");
    let fee = |x: u64| strata_chain::fees::protocol_fee(x, options.params.protocol_fee_bps);
    assert_eq!(
        client.token_balance(&node_ata).await.unwrap() - before.0,
        2 * TOKEN - fee(2 * TOKEN)
    );
    assert_eq!(
        client.token_balance(&n1_ata).await.unwrap() - before.1,
        TOKEN - fee(TOKEN)
    );

    // Replaying it is refused with the program's named error.
    match client
        .send(
            &[verify_instruction(&signed).unwrap(), redeem.clone()],
            &keys.relayer,
            &[],
        )
        .await
    {
        Err(ChainError::Program { name, .. }) => assert_eq!(name, "StaleVoucher"),
        other => panic!("replay must be refused, got {other:?}"),
    }
    // A forged signature is refused by the runtime's precompile.
    let mut forged = SignedMessage::sign(
        &keys.relayer,
        &messages::voucher_message(PROGRAM_ID.as_array(), node_key.as_array(), 9 * TOKEN),
    );
    forged.signer = c.pubkey();
    assert!(client
        .send(
            &[verify_instruction(&[forged]).unwrap(), redeem],
            &keys.relayer,
            &[]
        )
        .await
        .is_err());

    // A receipt batch, then a reward root and a claim (twice: the second pays nothing).
    let leaves: Vec<[u8; 32]> = (0..3u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], node_key.as_array(), &[i; 32]))
        .collect();
    let batch_id = client.config().await.unwrap().next_batch_id;
    client
        .send(
            &[ix::post_batch(
                &keys.relayer.pubkey(),
                batch_id,
                0,
                merkle::root::<Ledger>(&leaves),
                3,
                300,
            )],
            &keys.relayer,
            &[],
        )
        .await
        .unwrap();
    assert!(client
        .account_data(&pda::batch(batch_id))
        .await
        .unwrap()
        .is_some());
    let rewards = vec![
        Ledger::reward_leaf(node_key.as_array(), 7 * TOKEN),
        Ledger::reward_leaf(n1.as_array(), 3 * TOKEN),
    ];
    // The program publishes the current epoch only (read from the chain's clock).
    let clock_sysvar = "SysvarC1ock11111111111111111111111111111111"
        .parse()
        .unwrap();
    let clock = client.account_data(&clock_sysvar).await.unwrap().unwrap();
    let now = i64::from_le_bytes(clock[32..40].try_into().unwrap());
    let epoch = client.config().await.unwrap().epoch_at(now);
    client
        .send(
            &[ix::publish_rewards(
                &keys.relayer.pubkey(),
                epoch,
                merkle::root::<Ledger>(&rewards),
                2,
                10 * TOKEN,
            )],
            &keys.relayer,
            &[],
        )
        .await
        .unwrap();
    let claim = ix::claim_rewards(
        &node_key,
        &node_ata,
        epoch,
        7 * TOKEN,
        0,
        merkle::proof::<Ledger>(&rewards, 0).unwrap(),
    );
    let before_claim = client.token_balance(&node_ata).await.unwrap();
    client
        .send(std::slice::from_ref(&claim), &keys.nodes[0], &[])
        .await
        .unwrap();
    assert_eq!(
        client.token_balance(&node_ata).await.unwrap() - before_claim,
        7 * TOKEN
    );
    match client.send(&[claim], &keys.nodes[0], &[]).await {
        Err(ChainError::Program { name, .. }) => assert_eq!(name, "NothingToClaim"),
        other => panic!("second claim must pay nothing, got {other:?}"),
    }

    // The vault holds exactly what the ledger says.
    let cfg = client.config().await.unwrap();
    assert_eq!(
        client.token_balance(&pda::vault()).await.unwrap(),
        cfg.total_stake + cfg.total_escrow + cfg.reward_pool + cfg.bonds_held
    );
    drop(chain);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unreachable_rpc_is_a_clear_error() {
    let client = ChainClient::new("http://127.0.0.1:1").unwrap();
    let err = client.ping().await.unwrap_err().to_string();
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
}
