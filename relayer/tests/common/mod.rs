//! Shared set-up for the relayer tests (also used by the CLI's relayer
//! test): a real embedded chain with the program, a mint, a registered
//! relayer that is the reward authority, a funded reward pool, paying
//! clients with escrow deposits, and node keys; plus receipt helpers and an
//! HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_chain::accounts::Batch;
use strata_chain::rpc::ChainClient;
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, pda, token, ConfigParams, Keypair, Pubkey, Signer};
use strata_localnet::{Localnet, LocalnetConfig};
use strata_p2p::P2pConfig;
use strata_relayer::RelayerConfig;
use strata_wire::api::ReceiptView;
use strata_wire::{parse_hex32, Receipt, ReceiptBody, Voucher};

pub use strata_chain::params::TOKEN;
pub const SOL: u64 = 1_000_000_000;
pub const DEPOSIT: u64 = 1_000 * TOKEN;
pub const REWARD_POOL: u64 = 10_000 * TOKEN;
pub const FEE_BPS: u16 = 500;

pub fn params(epoch_length: i64) -> ConfigParams {
    ConfigParams {
        epoch_length,
        protocol_fee_bps: FEE_BPS,
        ..strata_chain::params::fast()
    }
}

/// A bootstrapped chain.
pub struct Env {
    pub chain: Localnet,
    pub url: String,
    pub rpc: ChainClient,
    pub admin: Keypair,
    pub mint: Keypair,
    pub relayer: Keypair,
    pub clients: Vec<Keypair>,
    pub nodes: Vec<Keypair>,
}

pub async fn setup(clients: usize, nodes: usize, epoch_length: i64) -> Env {
    let chain = tokio::task::spawn_blocking(|| {
        Localnet::start(&LocalnetConfig {
            rpc_port: 0,
            ws_port: 0,
            slot_time_ms: 100,
        })
    })
    .await
    .unwrap()
    .expect("local chain starts");
    let url = chain.rpc_url().to_string();
    let rpc = ChainClient::new(&url).unwrap();
    let admin = Keypair::new();
    let mint = Keypair::new();
    let relayer = Keypair::new();
    for k in [&admin, &relayer] {
        rpc.airdrop(&k.pubkey(), 100 * SOL).await.unwrap();
    }
    let rent = rpc.rent(token::MINT_LEN).await.unwrap();
    let create =
        token::create_mint(&admin.pubkey(), &mint.pubkey(), &admin.pubkey(), rent).unwrap();
    rpc.send(&create, &admin, &[&mint]).await.unwrap();
    let init = ix::initialize(
        &admin.pubkey(),
        &mint.pubkey(),
        params(epoch_length),
        &relayer.pubkey(),
    );
    let add = ix::add_relayer(&admin.pubkey(), &relayer.pubkey());
    rpc.send(&[init, add], &admin, &[]).await.unwrap();
    let relayer_ata = token::faucet(
        &rpc,
        &admin,
        &mint.pubkey(),
        &relayer.pubkey(),
        0,
        REWARD_POOL,
    )
    .await
    .unwrap();
    rpc.send(
        &[ix::fund_rewards(
            &relayer.pubkey(),
            &relayer_ata,
            REWARD_POOL,
        )],
        &relayer,
        &[],
    )
    .await
    .unwrap();
    let mut client_keys = Vec::new();
    for _ in 0..clients {
        let c = Keypair::new();
        let ata = token::faucet(&rpc, &admin, &mint.pubkey(), &c.pubkey(), 10 * SOL, DEPOSIT)
            .await
            .unwrap();
        rpc.send(&[ix::deposit(&c.pubkey(), &ata, DEPOSIT)], &c, &[])
            .await
            .unwrap();
        client_keys.push(c);
    }
    let mut node_keys = Vec::new();
    for _ in 0..nodes {
        let n = Keypair::new();
        rpc.airdrop(&n.pubkey(), 10 * SOL).await.unwrap();
        node_keys.push(n);
    }
    Env {
        chain,
        url,
        rpc,
        admin,
        mint,
        relayer,
        clients: client_keys,
        nodes: node_keys,
    }
}

impl Env {
    pub fn relayer_config(&self, state_dir: &Path, reward_per_work_unit: u64) -> RelayerConfig {
        RelayerConfig {
            rpc_url: self.url.clone(),
            keypair: self.relayer.insecure_clone(),
            state_dir: state_dir.to_path_buf(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            p2p: P2pConfig::local(),
            batch_interval: Duration::from_millis(300),
            reward_interval: Duration::from_millis(300),
            reward_per_work_unit,
        }
    }

    pub async fn node_balance(&self, node: &Pubkey) -> u64 {
        self.rpc
            .token_balance(&pda::associated_token(node, &self.mint.pubkey()))
            .await
            .unwrap()
    }

    pub async fn escrow_balance(&self, client: &Pubkey) -> u64 {
        self.rpc.escrow(client).await.unwrap().unwrap().balance
    }

    /// Checks a receipt view's proof against the root of the on-chain batch.
    pub async fn assert_proof_on_chain(&self, view: &ReceiptView) {
        let inclusion = view.batch.as_ref().expect("batched");
        let batch: Batch = self
            .rpc
            .account(&pda::batch(inclusion.batch_id), "batch")
            .await
            .unwrap()
            .expect("batch on-chain");
        assert_eq!(hex::encode(batch.root), inclusion.root);
        assert_eq!(batch.task_count, inclusion.leaf_count);
        let proof: Vec<[u8; 32]> = inclusion
            .proof
            .iter()
            .map(|h| parse_hex32(h).unwrap())
            .collect();
        let raw = hex::decode(&view.raw).unwrap();
        let receipt = Receipt::decode_verified(&raw).unwrap();
        assert_eq!(hex::encode(receipt.leaf()), view.leaf);
        assert_eq!(
            merkle::verify::<Ledger>(
                &batch.root,
                receipt.leaf(),
                u64::from(inclusion.leaf_index),
                u64::from(batch.task_count),
                &proof
            ),
            Ok(())
        );
    }
}

/// A receipt for `task` served by `node`, paid by `client`'s voucher of `cumulative`.
pub fn receipt(
    node: &Keypair,
    client: &Keypair,
    task: u64,
    price: u64,
    cumulative: u64,
) -> Receipt {
    let mut task_id = [0u8; 32];
    task_id[..8].copy_from_slice(&task.to_le_bytes());
    task_id[8..16].copy_from_slice(&node.pubkey().to_bytes()[..8]);
    let body = ReceiptBody {
        version: strata_wire::receipt::RECEIPT_VERSION,
        task_id,
        node: node.pubkey().to_bytes(),
        model_hash: [7; 32],
        input_hash: [1; 32],
        output_hash: [2; 32],
        prompt_tokens: 10,
        completion_tokens: 22,
        commitment_root: [3; 32],
        sampling: strata_wire::Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 7,
        },
        price,
        voucher: Voucher::sign(client, &node.pubkey(), cumulative),
        finished_at_ms: 1_700_000_000_000 + task,
    };
    Receipt::sign(node, body).unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs raw bytes; returns (status, JSON body).
pub async fn post(http: &reqwest::Client, base: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{base}/v1/receipts"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

pub async fn get_view(
    http: &reqwest::Client,
    base: &str,
    task_id: &[u8; 32],
) -> Option<ReceiptView> {
    let r = http
        .get(format!("{base}/v1/receipts/{}", hex::encode(task_id)))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Polls `check` every 200 ms until it holds or `secs` pass.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}
