//! The committed Anchor IDL (`idl/strata.json`) is all another language needs:
//! the Anchor TypeScript client (`clients/ts/read-chain.mjs`, with
//! `@coral-xyz/anchor` and `@solana/web3.js`), given only the IDL, decodes
//! every account and every event of a local chain on which the testnet
//! genesis, a stake, a deposit, a withdrawal request, a voucher redemption, a
//! receipt batch, a challenge, a reward root and a claim happened; each field
//! it prints must equal what the Rust client reads. Whole objects are
//! compared, so a field mis-decoded, missing or extra fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use solana_rpc_client::api::request::RpcRequest;
use strata_chain::accounts::{
    Batch, Challenge, ChallengeStatus, ClaimRecord, Config, Escrow, Node, Relayer, RewardEpoch,
};
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::events::{from_logs, StrataEvent};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{
    ix, messages, pda, rpc::ChainClient, Capacity, ConfigParams, Pubkey, Signer, PROGRAM_ID,
    ROLE_VERIFIER,
};
use strata_test_utils::chain::start_localnet;
use strata_testnet::{bootstrap, genesis::TOKEN, GenesisOptions, TestnetKeys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_ts_client_decodes_accounts_and_events_by_the_idl() {
    // Before the chain: without node or the packages there is nothing to run.
    let script = js_client();
    let _turn = crate::one_at_a_time().await;
    let dir = std::env::temp_dir().join(format!("strata-idl-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = TestnetKeys::load_or_create_with(&dir, 2, 1).unwrap();
    let chain = start_localnet().await;
    let client = ChainClient::new(chain.rpc_url()).unwrap();
    let options = GenesisOptions::default();
    bootstrap(&client, chain.ws_url(), &keys, &options)
        .await
        .expect("genesis");

    let mint = keys.mint.pubkey();
    let node0 = keys.nodes[0].pubkey();
    let node0_ata = pda::associated_token(&node0, &mint);
    let c = &keys.client;
    let c_ata = pda::associated_token(&c.pubkey(), &mint);
    let verifier = &keys.verifiers[0];
    let v_ata = pda::associated_token(&verifier.pubkey(), &mint);
    let relayer = &keys.relayer;
    let mut sent = Vec::new();

    // A verifier registers and stakes; node 0 stakes more; the client
    // deposits more and asks for part of it back.
    let register = ix::register_node(
        &verifier.pubkey(),
        vec![
            "/ip4/127.0.0.1/tcp/4100".into(),
            "/ip4/10.0.0.7/udp/4100/quic-v1".into(),
        ],
        Capacity {
            memory_mb: 2_048,
            compute_score: 1_234,
            bandwidth_mbps: 100,
        },
        ROLE_VERIFIER,
    );
    let stake = ix::stake(&verifier.pubkey(), &v_ata, &mint, options.node_stake);
    sent.push(
        client
            .send(&[register, stake], verifier, &[])
            .await
            .unwrap(),
    );
    sent.push(
        client
            .send(
                &[ix::stake(&node0, &node0_ata, &mint, 5 * TOKEN)],
                &keys.nodes[0],
                &[],
            )
            .await
            .unwrap(),
    );
    sent.push(
        client
            .send(&[ix::deposit(&c.pubkey(), &c_ata, 20 * TOKEN)], c, &[])
            .await
            .unwrap(),
    );
    sent.push(
        client
            .send(&[ix::request_withdrawal(&c.pubkey(), 3 * TOKEN)], c, &[])
            .await
            .unwrap(),
    );

    // A voucher redeemed by the relayer.
    let voucher = SignedMessage::sign(
        c,
        &messages::voucher_message(PROGRAM_ID.as_array(), node0.as_array(), 2 * TOKEN),
    );
    let redeem = ix::redeem_vouchers(
        &relayer.pubkey(),
        &[ix::VoucherAccounts {
            client: c.pubkey(),
            node: node0,
            node_token: node0_ata,
        }],
    );
    sent.push(
        client
            .send(
                &[verify_instruction(&[voucher]).unwrap(), redeem],
                relayer,
                &[],
            )
            .await
            .unwrap(),
    );

    // A receipt batch, and the verifier challenges its first receipt.
    let leaves: Vec<[u8; 32]> = (0..3u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], node0.as_array(), &[i; 32]))
        .collect();
    let batch_id = client.config().await.unwrap().next_batch_id;
    let post = ix::post_batch(
        &relayer.pubkey(),
        batch_id,
        0,
        merkle::root::<Ledger>(&leaves),
        3,
        300,
    );
    sent.push(client.send(&[post], relayer, &[]).await.unwrap());
    let claim = ix::ReceiptClaim {
        leaf_index: 0,
        task_id: [0; 32],
        receipt_digest: [0; 32],
        proof: merkle::proof::<Ledger>(&leaves, 0).unwrap(),
    };
    let challenge = ix::open_challenge(&verifier.pubkey(), &v_ata, batch_id, &node0, claim);
    sent.push(client.send(&[challenge], verifier, &[]).await.unwrap());

    // A reward root for the current epoch, and node 0 claims from it.
    let clock_sysvar = "SysvarC1ock11111111111111111111111111111111"
        .parse()
        .unwrap();
    let clock = client.account_data(&clock_sysvar).await.unwrap().unwrap();
    let now = i64::from_le_bytes(clock[32..40].try_into().unwrap());
    let epoch = client.config().await.unwrap().epoch_at(now);
    let rewards = vec![
        Ledger::reward_leaf(node0.as_array(), 7 * TOKEN),
        Ledger::reward_leaf(keys.nodes[1].pubkey().as_array(), 3 * TOKEN),
    ];
    let publish = ix::publish_rewards(
        &relayer.pubkey(),
        epoch,
        merkle::root::<Ledger>(&rewards),
        2,
        10 * TOKEN,
    );
    sent.push(client.send(&[publish], relayer, &[]).await.unwrap());
    let claim = ix::claim_rewards(
        &node0,
        &node0_ata,
        epoch,
        7 * TOKEN,
        0,
        merkle::proof::<Ledger>(&rewards, 0).unwrap(),
    );
    sent.push(client.send(&[claim], &keys.nodes[0], &[]).await.unwrap());

    // What the TypeScript client decodes, by the IDL alone.
    let started = std::time::Instant::now();
    let js = run_js(&script, chain.rpc_url());
    eprintln!(
        "idl_client: read-chain.mjs took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(js["programId"], json!(PROGRAM_ID.to_string()));
    assert_eq!(js["configAddress"], json!(pda::config().to_string()));
    same(
        "config (fetch)",
        &js["config"],
        &config_json(&client.config().await.unwrap()),
    );

    // Every account of every type the IDL names, each read again in Rust.
    let mut operators: Vec<Pubkey> = keys.nodes.iter().map(|k| k.pubkey()).collect();
    operators.push(verifier.pubkey());
    let batch = pda::batch(batch_id);
    let expected: [(&str, Vec<Pubkey>); 8] = [
        ("Batch", vec![batch]),
        ("Challenge", vec![pda::challenge(&batch, 0)]),
        ("ClaimRecord", vec![pda::claim_record(&node0)]),
        ("Config", vec![pda::config()]),
        ("Escrow", vec![pda::escrow(&c.pubkey())]),
        ("Node", operators.iter().map(pda::node).collect()),
        ("Relayer", vec![pda::relayer(&relayer.pubkey())]),
        ("RewardEpoch", vec![pda::reward_epoch(epoch)]),
    ];
    let kinds: BTreeSet<&str> = js["accounts"]
        .as_object()
        .expect("accounts")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        kinds,
        expected.iter().map(|(k, _)| *k).collect(),
        "the IDL's account types changed: teach this test the new ones"
    );
    let mut compared = 0;
    for (kind, addresses) in &expected {
        let listed = js["accounts"][kind].as_array().expect("a list per type");
        let found: BTreeSet<String> = listed
            .iter()
            .map(|a| a["address"].as_str().expect("address").to_string())
            .collect();
        let want: BTreeSet<String> = addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            found, want,
            "{kind} accounts found by the TypeScript client"
        );
        for item in listed {
            let address: Pubkey = item["address"].as_str().unwrap().parse().unwrap();
            let rust = account_json(&client, kind, &address).await;
            same(&format!("{kind} {address}"), &item["data"], &rust);
            compared += 1;
        }
    }

    // Every event of every transaction it found, against the Rust decoder.
    let transactions = js["transactions"].as_array().expect("transactions");
    let listed: BTreeSet<&str> = transactions
        .iter()
        .map(|t| t["signature"].as_str().expect("signature"))
        .collect();
    for signature in &sent {
        assert!(
            listed.contains(signature.to_string().as_str()),
            "the TypeScript client did not find transaction {signature}"
        );
    }
    let mut names = BTreeSet::new();
    let mut events = 0;
    for t in transactions {
        let signature = t["signature"].as_str().unwrap();
        let rust: Vec<Value> = from_logs(&transaction_logs(&client, signature).await)
            .iter()
            .map(event_json)
            .collect();
        let decoded = t["events"].as_array().expect("events");
        same(
            &format!("events of {signature}"),
            &Value::Array(decoded.clone()),
            &Value::Array(rust),
        );
        for e in decoded {
            names.insert(e["name"].as_str().unwrap().to_string());
            events += 1;
        }
    }
    for name in [
        "initialized",
        "relayerAdded",
        "rewardsFunded",
        "nodeUpdated",
        "staked",
        "deposited",
        "withdrawalRequested",
        "voucherRedeemed",
        "batchPosted",
        "challengeOpened",
        "rewardsPublished",
        "rewardsClaimed",
    ] {
        assert!(names.contains(name), "no {name} event decoded: {names:?}");
    }
    eprintln!(
        "idl_client: {compared} accounts of {} types and {events} events in {} transactions decoded alike",
        expected.len(),
        transactions.len()
    );
    drop(chain);
    let _ = std::fs::remove_dir_all(&dir);
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The client script, once `node` and its packages are known to be there;
/// otherwise a failure that names the script installing them.
fn js_client() -> PathBuf {
    let ts = repo_root().join("clients/ts");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH: run scripts/setup-ts (scripts/test does)"
    );
    assert!(
        ts.join("node_modules/@coral-xyz/anchor/package.json")
            .exists()
            && ts
                .join("node_modules/@solana/web3.js/package.json")
                .exists(),
        "{} has no installed packages: run scripts/setup-ts (scripts/test does)",
        ts.display()
    );
    ts.join("read-chain.mjs")
}

fn run_js(script: &Path, url: &str) -> Value {
    let idl = repo_root().join("idl/strata.json");
    let out = Command::new("node")
        .arg(script)
        .arg("--url")
        .arg(url)
        .arg("--idl")
        .arg(&idl)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "read-chain.mjs failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("read-chain.mjs prints JSON")
}

/// A transaction's log lines, as the RPC returns them.
async fn transaction_logs(client: &ChainClient, signature: &str) -> Vec<String> {
    let params = json!([
        signature,
        {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
    ]);
    let answer: Value = client
        .rpc()
        .send(RpcRequest::GetTransaction, params)
        .await
        .unwrap();
    answer
        .pointer("/meta/logMessages")
        .and_then(Value::as_array)
        .expect("logs")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Fails at the first place where the two differ, naming its path.
fn same(what: &str, js: &Value, rust: &Value) {
    fn first_difference(path: String, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(format!("{path}.{k}"), p, q),
                    (p, q) => Some(format!("{path}.{k}: {p:?} (TypeScript) vs {q:?} (Rust)")),
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| first_difference(format!("{path}[{i}]"), p, q)),
            _ if a == b => None,
            _ => Some(format!("{path}: {a} (TypeScript) vs {b} (Rust)")),
        }
    }
    if let Some(d) = first_difference(what.to_string(), js, rust) {
        panic!("the TypeScript client decoded something else than the Rust client reads: {d}");
    }
}

// The Rust client's values, written the way read-chain.mjs prints Anchor's:
// camelCase names, keys in base58, 64-bit integers as decimal strings, byte
// arrays as number arrays, enums as { variant: {} }.

fn key(k: &Pubkey) -> Value {
    json!(k.to_string())
}

fn big(x: impl ToString) -> Value {
    json!(x.to_string())
}

fn keys(ks: &[Pubkey]) -> Value {
    Value::Array(ks.iter().map(key).collect())
}

async fn account_json(client: &ChainClient, kind: &str, address: &Pubkey) -> Value {
    async fn read<T: anchor_lang::AccountDeserialize>(c: &ChainClient, a: &Pubkey) -> T {
        c.account::<T>(a, "account").await.unwrap().expect("exists")
    }
    match kind {
        "Batch" => batch_json(&read::<Batch>(client, address).await),
        "Challenge" => challenge_json(&read::<Challenge>(client, address).await),
        "ClaimRecord" => claim_record_json(&read::<ClaimRecord>(client, address).await),
        "Config" => config_json(&read::<Config>(client, address).await),
        "Escrow" => escrow_json(&read::<Escrow>(client, address).await),
        "Node" => node_json(&read::<Node>(client, address).await),
        "Relayer" => relayer_json(&read::<Relayer>(client, address).await),
        "RewardEpoch" => reward_epoch_json(&read::<RewardEpoch>(client, address).await),
        other => panic!("no Rust reading of account type {other}"),
    }
}

fn params_json(p: &ConfigParams) -> Value {
    json!({
        "minStake": big(p.min_stake),
        "unbondingPeriod": big(p.unbonding_period),
        "epochLength": big(p.epoch_length),
        "auditRateBps": p.audit_rate_bps,
        "slashBps": p.slash_bps,
        "challengerShareBps": p.challenger_share_bps,
        "challengeWindow": big(p.challenge_window),
        "challengeBond": big(p.challenge_bond),
        "verdictTimeout": big(p.verdict_timeout),
        "verifierQuorum": p.verifier_quorum,
        "committeeSize": p.committee_size,
        "protocolFeeBps": p.protocol_fee_bps,
        "epochRewardCap": big(p.epoch_reward_cap),
        "escrowWithdrawDelay": big(p.escrow_withdraw_delay),
        "auditLayers": p.audit_layers,
        "auditPositions": p.audit_positions,
        "seedDelaySlots": p.seed_delay_slots,
        "auditRewardBps": p.audit_reward_bps,
        "committeeReward": big(p.committee_reward),
    })
}

fn config_json(c: &Config) -> Value {
    json!({
        "version": c.version,
        "bump": c.bump,
        "vaultBump": c.vault_bump,
        "admin": key(&c.admin),
        "rewardAuthority": key(&c.reward_authority),
        "mint": key(&c.mint),
        "vault": key(&c.vault),
        "params": params_json(&c.params),
        "genesisTs": big(c.genesis_ts),
        "nextBatchId": big(c.next_batch_id),
        "lastRewardEpoch": big(c.last_reward_epoch),
        "totalStake": big(c.total_stake),
        "totalVerifierStake": big(c.total_verifier_stake),
        "totalEscrow": big(c.total_escrow),
        "rewardPool": big(c.reward_pool),
        "bondsHeld": big(c.bonds_held),
        "totalTasks": big(c.total_tasks),
        "totalWorkUnits": big(c.total_work_units),
        "epochOriginTs": big(c.epoch_origin_ts),
        "epochOrigin": big(c.epoch_origin),
        "reserved": c.reserved.to_vec(),
    })
}

fn capacity_json(c: &Capacity) -> Value {
    json!({
        "memoryMb": c.memory_mb,
        "computeScore": c.compute_score,
        "bandwidthMbps": c.bandwidth_mbps,
    })
}

fn node_json(n: &Node) -> Value {
    json!({
        "version": n.version,
        "bump": n.bump,
        "operator": key(&n.operator),
        "roles": n.roles,
        "capacity": capacity_json(&n.capacity),
        "multiaddrs": n.multiaddrs,
        "stake": big(n.stake),
        "unbonding": big(n.unbonding),
        "unbondingEnds": big(n.unbonding_ends),
        "openChallenges": n.open_challenges,
        "slashedTotal": big(n.slashed_total),
        "verifierSinceSlot": big(n.verifier_since_slot),
        "registeredAt": big(n.registered_at),
        "reserved": n.reserved.to_vec(),
    })
}

fn escrow_json(e: &Escrow) -> Value {
    json!({
        "version": e.version,
        "bump": e.bump,
        "client": key(&e.client),
        "balance": big(e.balance),
        "pendingWithdrawal": big(e.pending_withdrawal),
        "withdrawAfter": big(e.withdraw_after),
        "totalPaid": big(e.total_paid),
        "reserved": e.reserved.to_vec(),
    })
}

fn relayer_json(r: &Relayer) -> Value {
    json!({
        "version": r.version,
        "bump": r.bump,
        "authority": key(&r.authority),
        "batchesPosted": big(r.batches_posted),
        "reserved": r.reserved.to_vec(),
    })
}

fn batch_json(b: &Batch) -> Value {
    json!({
        "version": b.version,
        "bump": b.bump,
        "id": big(b.id),
        "relayer": key(&b.relayer),
        "epoch": big(b.epoch),
        "root": b.root.to_vec(),
        "taskCount": b.task_count,
        "workUnits": big(b.work_units),
        "postedAt": big(b.posted_at),
        "postedSlot": big(b.posted_slot),
        "seedSlot": big(b.seed_slot),
        "auditSeed": b.audit_seed.to_vec(),
        "openChallenges": b.open_challenges,
        "reserved": b.reserved.to_vec(),
    })
}

fn challenge_json(c: &Challenge) -> Value {
    let status = match c.status {
        ChallengeStatus::Open => "open",
        ChallengeStatus::Upheld => "upheld",
        ChallengeStatus::Rejected => "rejected",
    };
    json!({
        "version": c.version,
        "bump": c.bump,
        "challenger": key(&c.challenger),
        "node": key(&c.node),
        "batch": key(&c.batch),
        "leafIndex": c.leaf_index,
        "taskId": c.task_id.to_vec(),
        "bond": big(c.bond),
        "openedAt": big(c.opened_at),
        "deadline": big(c.deadline),
        "openedSlot": big(c.opened_slot),
        "seedSlot": big(c.seed_slot),
        "seed": c.seed.to_vec(),
        "totalVerifierStake": big(c.total_verifier_stake),
        "terms": {
            "slashBps": c.terms.slash_bps,
            "challengerShareBps": c.terms.challenger_share_bps,
            "verifierQuorum": c.terms.verifier_quorum,
            "committeeSize": c.terms.committee_size,
        },
        "status": { status: {} },
        "slashed": big(c.slashed),
        "reserved": c.reserved.to_vec(),
    })
}

fn claim_record_json(r: &ClaimRecord) -> Value {
    json!({
        "version": r.version,
        "bump": r.bump,
        "operator": key(&r.operator),
        "claimed": big(r.claimed),
        "lastEpoch": big(r.last_epoch),
        "reserved": r.reserved.to_vec(),
    })
}

fn reward_epoch_json(r: &RewardEpoch) -> Value {
    json!({
        "version": r.version,
        "bump": r.bump,
        "epoch": big(r.epoch),
        "root": r.root.to_vec(),
        "leafCount": r.leaf_count,
        "declared": big(r.declared),
        "remaining": big(r.remaining),
        "publishedAt": big(r.published_at),
        "reserved": r.reserved.to_vec(),
    })
}

/// An event as `{ name, data }`, the name as Anchor's client gives it.
fn event_json(event: &StrataEvent) -> Value {
    use StrataEvent as E;
    let (name, data) = match event {
        E::Initialized(e) => (
            "initialized",
            json!({
                "admin": key(&e.admin),
                "mint": key(&e.mint),
                "rewardAuthority": key(&e.reward_authority),
                "params": params_json(&e.params),
            }),
        ),
        E::ConfigUpdated(e) => (
            "configUpdated",
            json!({ "params": params_json(&e.params), "rewardAuthority": key(&e.reward_authority) }),
        ),
        E::RelayerAdded(e) => ("relayerAdded", json!({ "relayer": key(&e.relayer) })),
        E::RelayerRemoved(e) => ("relayerRemoved", json!({ "relayer": key(&e.relayer) })),
        E::NodeUpdated(e) => (
            "nodeUpdated",
            json!({
                "operator": key(&e.operator),
                "roles": e.roles,
                "capacity": capacity_json(&e.capacity),
                "multiaddrs": e.multiaddrs,
            }),
        ),
        E::NodeDeregistered(e) => ("nodeDeregistered", json!({ "operator": key(&e.operator) })),
        E::Staked(e) => (
            "staked",
            json!({ "operator": key(&e.operator), "amount": big(e.amount), "stake": big(e.stake) }),
        ),
        E::UnstakeRequested(e) => (
            "unstakeRequested",
            json!({
                "operator": key(&e.operator),
                "amount": big(e.amount),
                "unbondingEnds": big(e.unbonding_ends),
            }),
        ),
        E::StakeWithdrawn(e) => (
            "stakeWithdrawn",
            json!({ "operator": key(&e.operator), "amount": big(e.amount) }),
        ),
        E::Deposited(e) => (
            "deposited",
            json!({ "client": key(&e.client), "amount": big(e.amount), "balance": big(e.balance) }),
        ),
        E::WithdrawalRequested(e) => (
            "withdrawalRequested",
            json!({
                "client": key(&e.client),
                "amount": big(e.amount),
                "withdrawAfter": big(e.withdraw_after),
            }),
        ),
        E::Withdrawn(e) => (
            "withdrawn",
            json!({ "client": key(&e.client), "amount": big(e.amount) }),
        ),
        E::BatchPosted(e) => (
            "batchPosted",
            json!({
                "id": big(e.id),
                "relayer": key(&e.relayer),
                "epoch": big(e.epoch),
                "root": e.root.to_vec(),
                "taskCount": e.task_count,
                "workUnits": big(e.work_units),
            }),
        ),
        E::VoucherRedeemed(e) => (
            "voucherRedeemed",
            json!({
                "client": key(&e.client),
                "node": key(&e.node),
                "cumulative": big(e.cumulative),
                "paid": big(e.paid),
                "fee": big(e.fee),
            }),
        ),
        E::ChallengeOpened(e) => (
            "challengeOpened",
            json!({
                "challenge": key(&e.challenge),
                "node": key(&e.node),
                "batch": key(&e.batch),
                "leafIndex": e.leaf_index,
                "challenger": key(&e.challenger),
                "taskId": e.task_id.to_vec(),
                "seedSlot": big(e.seed_slot),
            }),
        ),
        E::CommitteeDrawn(e) => (
            "committeeDrawn",
            json!({ "challenge": key(&e.challenge), "seed": e.seed.to_vec() }),
        ),
        E::BatchSealed(e) => (
            "batchSealed",
            json!({ "id": big(e.id), "slot": big(e.slot), "auditSeed": e.audit_seed.to_vec() }),
        ),
        E::SeedRearmed(e) => (
            "seedRearmed",
            json!({ "account": key(&e.account), "seedSlot": big(e.seed_slot) }),
        ),
        E::ChallengeResolved(e) => (
            "challengeResolved",
            json!({
                "challenge": key(&e.challenge),
                "node": key(&e.node),
                "upheld": e.upheld,
                "slashed": big(e.slashed),
                "toChallenger": big(e.to_challenger),
                "voters": keys(&e.voters),
            }),
        ),
        E::ChallengeExpired(e) => (
            "challengeExpired",
            json!({ "challenge": key(&e.challenge), "node": key(&e.node) }),
        ),
        E::RewardsFunded(e) => (
            "rewardsFunded",
            json!({ "funder": key(&e.funder), "amount": big(e.amount) }),
        ),
        E::RewardsPublished(e) => (
            "rewardsPublished",
            json!({ "epoch": big(e.epoch), "root": e.root.to_vec(), "declared": big(e.declared) }),
        ),
        E::RewardsClaimed(e) => (
            "rewardsClaimed",
            json!({
                "operator": key(&e.operator),
                "epoch": big(e.epoch),
                "cumulative": big(e.cumulative),
                "paid": big(e.paid),
            }),
        ),
        E::BatchClosed(e) => (
            "batchClosed",
            json!({ "id": big(e.id), "relayer": key(&e.relayer), "lamports": big(e.lamports) }),
        ),
    };
    json!({ "name": name, "data": data })
}
