//! Shared set-up for the relayer tests (also used by the CLI's relayer,
//! audit and explorer tests): a real embedded chain with the program, a
//! mint, a registered relayer that is the reward authority, a funded reward
//! pool, paying clients with escrow deposits, and node keys; plus receipt
//! helpers and an HTTP client; and an [`AuditWorld`]: registered verifiers,
//! sealed batches, signed audit reports and challenges taken to a verdict.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_chain::accounts::{Batch, Challenge};
use strata_chain::audit::AuditPlan;
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::{
    audit, ix, pda, registration, token, Capacity, ConfigParams, Keypair, Pubkey, Signer,
    ROLE_COMPUTE, ROLE_VERIFIER,
};
use strata_localnet::{Localnet, LocalnetConfig};
use strata_p2p::P2pConfig;
use strata_relayer::{Relayer, RelayerConfig, RunningRelayer};
use strata_wire::api::ReceiptView;
use strata_wire::audit::{AuditBody, AuditOutcome, AuditReport, AUDIT_VERSION};
use strata_wire::{parse_hex32, HopPart, Receipt, ReceiptBody, Voucher};

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
    setup_with(params(epoch_length), clients, nodes).await
}

/// [`setup`] with the chain's parameters given.
pub async fn setup_with(params: ConfigParams, clients: usize, nodes: usize) -> Env {
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
    let init = ix::initialize(&admin.pubkey(), &mint.pubkey(), params, &relayer.pubkey());
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
        hop: None,
        adapter: None,
    };
    Receipt::sign(node, body).unwrap()
}

/// Blocks of the model the hop receipts of [`hop_parts`] split.
pub const HOP_MODEL_BLOCKS: u16 = 30;
/// Positions each hop of [`hop_parts`] ran.
pub const HOP_POSITIONS: u32 = 32;

/// The hop parts of segment `segment` of pipelined task `task`, served by
/// `nodes` in route order over [`HOP_MODEL_BLOCKS`] blocks split evenly,
/// linked: hop k+1's input states are hop k's output states and each names
/// its neighbours. Each bills every position it ran on each of its blocks.
pub fn hop_parts(nodes: &[&Keypair], task: [u8; 32], segment: u8) -> Vec<HopPart> {
    let count = u8::try_from(nodes.len()).unwrap();
    let per = HOP_MODEL_BLOCKS / u16::from(count);
    let states = |k: usize| {
        let mut s = [0u8; 32];
        s[0] = 0x5a;
        s[1] = segment;
        s[2] = k as u8;
        s[3..11].copy_from_slice(&task[..8]);
        s
    };
    let key = |k: Option<usize>| {
        k.and_then(|k| nodes.get(k))
            .map_or([0; 32], |n| n.pubkey().to_bytes())
    };
    (0..nodes.len())
        .map(|k| {
            let index = k as u8;
            let start = per * u16::from(index);
            let end = if index + 1 == count {
                HOP_MODEL_BLOCKS
            } else {
                start + per
            };
            HopPart {
                task_id: task,
                segment,
                index,
                count,
                start,
                end,
                n_layers: HOP_MODEL_BLOCKS,
                positions: HOP_POSITIONS,
                cells: u64::from(HOP_POSITIONS) * u64::from(end - start),
                sample_offset: 0,
                input_states: states(k),
                output_states: states(k + 1),
                prev: key(k.checked_sub(1)),
                next: key(Some(k + 1)),
            }
        })
        .collect()
}

/// A version-3 receipt of `node` for hop `part`, paid by `client`'s voucher
/// of `cumulative`.
pub fn hop_receipt(
    node: &Keypair,
    client: &Keypair,
    part: HopPart,
    price: u64,
    cumulative: u64,
) -> Receipt {
    let first = part.index == 0;
    let last = part.index + 1 == part.count;
    let body = ReceiptBody {
        version: strata_wire::receipt::HOP_RECEIPT_VERSION,
        task_id: strata_wire::hop_task_id(
            &part.task_id,
            part.segment,
            part.index,
            &node.pubkey().to_bytes(),
        ),
        node: node.pubkey().to_bytes(),
        model_hash: [7; 32],
        // Only the first hop saw the prompt, only the last sampled.
        input_hash: if first { [1; 32] } else { [0; 32] },
        output_hash: if last { [2; 32] } else { [0; 32] },
        prompt_tokens: 10,
        completion_tokens: 22,
        commitment_root: [3 + part.index; 32],
        sampling: strata_wire::Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 7,
        },
        price,
        voucher: Voucher::sign(client, &node.pubkey(), cumulative),
        finished_at_ms: 1_700_000_000_000 + u64::from(part.index),
        hop: Some(part),
        adapter: None,
    };
    Receipt::sign(node, body).unwrap()
}

/// The linked hop receipts of segment 0 of `task` served by `nodes`, each
/// paid by `client` with a voucher of `cumulative` (one channel per node).
pub fn hop_receipts(
    nodes: &[&Keypair],
    client: &Keypair,
    task: [u8; 32],
    price: u64,
    cumulative: u64,
) -> Vec<Receipt> {
    hop_parts(nodes, task, 0)
        .into_iter()
        .zip(nodes)
        .map(|(part, node)| hop_receipt(node, client, part, price, cumulative))
        .collect()
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

/// Seconds a challenge of an [`AuditWorld`] waits for its verdict.
pub const VERDICT_TIMEOUT: i64 = 8;
/// Bonded stake of the [`AuditWorld`]'s compute node.
pub const NODE_STAKE: u64 = 1_000 * TOKEN;
/// Bonded stake of each of its verifiers.
pub const VERIFIER_STAKE: u64 = 200 * TOKEN;

/// [`params`] for audits: every receipt audited, a challenge window long
/// enough to open challenges in, and a short verdict timeout.
pub fn audit_params(epoch_length: i64) -> ConfigParams {
    ConfigParams {
        audit_rate_bps: 10_000,
        challenge_window: 600,
        verdict_timeout: VERDICT_TIMEOUT,
        unbonding_period: 600 + VERDICT_TIMEOUT,
        ..params(epoch_length)
    }
}

impl Env {
    /// Gives `key` `stake + spare` tokens and registers it with `roles`,
    /// staking `stake`.
    pub async fn register(&self, key: &Keypair, roles: u8, stake: u64, spare: u64) {
        token::faucet(
            &self.rpc,
            &self.admin,
            &self.mint.pubkey(),
            &key.pubkey(),
            10 * SOL,
            stake + spare,
        )
        .await
        .unwrap();
        registration::ensure_registered(
            &self.rpc,
            key,
            &["/ip4/127.0.0.1/tcp/4001".to_string()],
            Capacity::default(),
            roles,
            stake,
        )
        .await
        .unwrap();
    }

    /// Waits until the chain is past `slot`.
    pub async fn wait_past_slot(&self, slot: u64) {
        wait_for(30, "the chain to pass a seed slot", || async {
            self.rpc.slot().await.unwrap() > slot
        })
        .await;
    }

    /// Draws batch `id`'s audit seed (once its seed slot has passed) and
    /// returns the sealed batch.
    pub async fn seal(&self, id: u64) -> Batch {
        let batch = self.rpc.batch(id).await.unwrap().expect("batch on-chain");
        if batch.audit_seed != [0; 32] {
            return batch;
        }
        self.wait_past_slot(batch.seed_slot).await;
        self.rpc
            .send(&[ix::seal_batch(id)], &self.admin, &[])
            .await
            .unwrap();
        let batch = self.rpc.batch(id).await.unwrap().unwrap();
        assert_ne!(batch.audit_seed, [0; 32], "batch {id} sealed");
        batch
    }
}

/// One receipt of an [`AuditWorld`] with what the audit rules say about it.
pub struct Assignment {
    /// The receipt.
    pub receipt: Receipt,
    /// Its batch.
    pub batch_id: u64,
    /// Its leaf index.
    pub leaf_index: u32,
    /// The audit plan (no layers or steps drawn).
    pub plan: AuditPlan,
    /// The batch's leaves (for proofs).
    pub leaves: Vec<[u8; 32]>,
}

/// A chain where every receipt is audited, with a registered compute node
/// (`env.nodes[0]`) and three registered verifiers (each with a spare 50
/// tokens for challenge bonds), a running relayer, and receipts of that node
/// in posted and sealed batches with their audit assignments.
pub struct AuditWorld {
    pub env: Env,
    pub relayer: RunningRelayer,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub verifiers: Vec<Keypair>,
    pub tasks: Vec<Assignment>,
}

impl AuditWorld {
    /// Builds the world with `receipts` receipts (32 work units each).
    pub async fn start(receipts: usize, reward_per_work_unit: u64, epoch_length: i64) -> Self {
        let env = setup_with(audit_params(epoch_length), 1, 1).await;
        env.register(&env.nodes[0], ROLE_COMPUTE, NODE_STAKE, 0)
            .await;
        let verifiers: Vec<Keypair> = (0..3).map(|_| Keypair::new()).collect();
        for v in &verifiers {
            env.register(v, ROLE_VERIFIER, VERIFIER_STAKE, 50 * TOKEN)
                .await;
        }
        let dir = tempfile::tempdir().unwrap();
        let relayer = Relayer::start(env.relayer_config(dir.path(), reward_per_work_unit))
            .await
            .expect("relayer starts");
        let base = relayer.http_url().to_string();
        let http = http();
        let mut all = Vec::new();
        for i in 0..receipts {
            let task = i as u64 + 1;
            let r = receipt(&env.nodes[0], &env.clients[0], task, 10, 10 * task);
            let (status, body) = post(&http, &base, r.encode()).await;
            assert_eq!(status, 200, "{body}");
            all.push(r);
        }
        wait_for(60, "every receipt in a posted batch", || async {
            let mut ok = true;
            for r in &all {
                let v = get_view(&http, &base, &r.body.task_id).await;
                ok &= v.is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"));
            }
            ok
        })
        .await;
        let config = env.rpc.config().await.unwrap();
        let nodes = env.rpc.registered_nodes().await.unwrap();
        let mut tasks = Vec::new();
        for r in all {
            let view = get_view(&http, &base, &r.body.task_id).await.unwrap();
            let inclusion = view.batch.unwrap();
            let batch = env.seal(inclusion.batch_id).await;
            let plan = audit::plan(
                &config,
                &batch,
                &r.leaf(),
                &env.nodes[0].pubkey(),
                &nodes,
                0,
                0,
            )
            .unwrap();
            assert!(plan.audited, "the rate is 100 %");
            let path = format!("/v1/batches/{}/receipts", inclusion.batch_id);
            let listed: serde_json::Value = get_json(&http, &base, &path).await;
            let leaves = listed["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    let raw = hex::decode(x["raw"].as_str().unwrap()).unwrap();
                    Receipt::decode_verified(&raw).unwrap().leaf()
                })
                .collect();
            tasks.push(Assignment {
                receipt: r,
                batch_id: inclusion.batch_id,
                leaf_index: inclusion.leaf_index,
                plan,
                leaves,
            });
        }
        AuditWorld {
            env,
            relayer,
            base,
            dir,
            verifiers,
            tasks,
        }
    }

    /// The world's verifier with key `key`.
    pub fn verifier(&self, key: &Pubkey) -> &Keypair {
        self.verifiers
            .iter()
            .find(|v| v.pubkey() == *key)
            .expect("one of the world's verifiers")
    }

    /// A report on `task` signed by `verifier`.
    pub fn report(
        &self,
        task: &Assignment,
        verifier: &Keypair,
        outcome: AuditOutcome,
        work_digest: [u8; 32],
    ) -> AuditReport {
        let body = AuditBody {
            version: AUDIT_VERSION,
            task_id: task.receipt.body.task_id,
            batch_id: task.batch_id,
            leaf_index: task.leaf_index,
            node: task.receipt.body.node,
            verifier: verifier.pubkey().to_bytes(),
            layers: vec![3, 17],
            steps: vec![0, 5],
            outcome,
            work_digest,
            max_rel_dev: 0.001,
            cpu_micros: 1_250_000,
            finished_at_ms: 1_700_000_100_000,
        };
        AuditReport::sign(verifier, body).unwrap()
    }

    /// Opens a challenge against `task` by `challenger` (a funded key);
    /// returns the challenge account.
    pub async fn open_challenge(&self, challenger: &Keypair, task: &Assignment) -> Pubkey {
        let ata = pda::associated_token(&challenger.pubkey(), &self.env.mint.pubkey());
        let claim = ix::ReceiptClaim {
            leaf_index: task.leaf_index,
            task_id: task.receipt.body.task_id,
            receipt_digest: task.receipt.body.digest(),
            proof: merkle::proof::<Ledger>(&task.leaves, task.leaf_index as usize).unwrap(),
        };
        let open = ix::open_challenge(
            &challenger.pubkey(),
            &ata,
            task.batch_id,
            &task.receipt.body.node.into(),
            claim,
        );
        self.env.rpc.send(&[open], challenger, &[]).await.unwrap();
        pda::challenge(&pda::batch(task.batch_id), task.leaf_index)
    }

    /// Draws `challenge`'s committee once its seed slot has passed.
    pub async fn draw(&self, challenge: &Pubkey) -> Challenge {
        let c: Challenge = self
            .env
            .rpc
            .account(challenge, "challenge")
            .await
            .unwrap()
            .unwrap();
        self.env.wait_past_slot(c.seed_slot).await;
        self.env
            .rpc
            .send(&[ix::draw_committee(challenge)], &self.env.admin, &[])
            .await
            .unwrap();
        self.env
            .rpc
            .account(challenge, "challenge")
            .await
            .unwrap()
            .unwrap()
    }

    /// Resolves `challenge` with the verdict `upheld` signed by `voters`.
    pub async fn resolve(&self, challenge: &Pubkey, voters: &[&Keypair], upheld: bool) {
        let c: Challenge = self
            .env
            .rpc
            .account(challenge, "challenge")
            .await
            .unwrap()
            .unwrap();
        let message = strata_chain::messages::verdict_message(
            strata_chain::PROGRAM_ID.as_array(),
            challenge.as_array(),
            upheld,
        );
        let signed: Vec<SignedMessage> = voters
            .iter()
            .map(|v| SignedMessage::sign(v, &message))
            .collect();
        let challenger_ata = pda::associated_token(&c.challenger, &self.env.mint.pubkey());
        let keys: Vec<Pubkey> = voters.iter().map(|v| v.pubkey()).collect();
        let ixs = vec![
            verify_instruction(&signed).unwrap(),
            ix::resolve_challenge(
                &voters[0].pubkey(),
                challenge,
                &c.batch,
                &c.node,
                &challenger_ata,
                &keys,
                upheld,
            ),
        ];
        self.env.rpc.send(&ixs, voters[0], &[]).await.unwrap();
    }

    /// Waits out `challenge`'s deadline and expires it.
    pub async fn expire(&self, challenge: &Pubkey) {
        let c: Challenge = self
            .env
            .rpc
            .account(challenge, "challenge")
            .await
            .unwrap()
            .unwrap();
        let challenger_ata = pda::associated_token(&c.challenger, &self.env.mint.pubkey());
        let expire = ix::expire_challenge(
            &self.env.admin.pubkey(),
            challenge,
            &c.batch,
            &c.node,
            &c.challenger,
            &challenger_ata,
        );
        // The chain's clock decides: retry until it is past the deadline.
        let deadline = Instant::now() + Duration::from_secs(VERDICT_TIMEOUT as u64 + 30);
        loop {
            match self
                .env
                .rpc
                .send(std::slice::from_ref(&expire), &self.env.admin, &[])
                .await
            {
                Ok(_) => return,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("expire_challenge: {e}"),
            }
        }
    }

    /// POSTs an encoded report as `{"raw": hex}`; returns (status, JSON body).
    pub async fn post_audit(&self, bytes: &[u8]) -> (u16, serde_json::Value) {
        post_audit(&http(), &self.base, bytes).await
    }
}

/// POSTs an encoded audit report to `base` as `{"raw": hex}`.
pub async fn post_audit(
    http: &reqwest::Client,
    base: &str,
    bytes: &[u8],
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{base}/v1/audits"))
        .json(&serde_json::json!({ "raw": hex::encode(bytes) }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// GETs `path` from `base` as JSON (any type the answer should parse as).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> T {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
