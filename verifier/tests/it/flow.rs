//! The verifier's whole loop on a real local chain, against a node that
//! never answers openings: the batch is sealed, every receipt audited (and
//! found withheld), reported, challenged; the committee is drawn, the
//! verifier judges, votes and submits the verdict; the node is slashed. A
//! restart then redoes nothing. (The relayer here is a stand-in serving the
//! API the verifier reads; the testnet runs the real one with real nodes.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use strata_chain::accounts::{Challenge, ChallengeStatus};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::params::{self, TOKEN};
use strata_chain::registration::ensure_registered;
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, token, Capacity, ConfigParams, Keypair, Signer, ROLE_COMPUTE};
use strata_localnet::{Localnet, LocalnetConfig};
use strata_p2p::P2pConfig;
use strata_verifier::{start, RunningVerifier, VerifierConfig};
use strata_wire::audit::{AuditOutcome, AuditReport, FailedCheck};
use strata_wire::{hex32, parse_hex32, Receipt};

use crate::support::{greedy, receipt, receipt_view};

const SOL: u64 = 1_000_000_000;

/// What the stand-in relayer serves and what it was sent.
#[derive(Default)]
struct Relayed {
    batch_id: u64,
    receipts: Vec<Receipt>,
    reports: Vec<AuditReport>,
}

type Shared = Arc<Mutex<Relayed>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Relayed> {
    s.lock().unwrap()
}

async fn batch_receipts(
    State(s): State<Shared>,
    Path(id): Path<u64>,
) -> (StatusCode, Json<serde_json::Value>) {
    let r = lock(&s);
    if id != r.batch_id || r.receipts.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no batch {id}") })),
        );
    }
    // The relayer's own shape, with fields the verifier does not need.
    let receipts: Vec<_> = r
        .receipts
        .iter()
        .enumerate()
        .map(|(i, rc)| {
            serde_json::json!({
                "leaf_index": i,
                "task_id": hex32(&rc.body.task_id),
                "node": strata_chain::Pubkey::from(rc.body.node).to_string(),
                "raw": hex::encode(rc.encode()),
            })
        })
        .collect();
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "batch_id": id, "status": "posted", "root": "", "receipts": receipts,
        })),
    )
}

async fn one_receipt(
    State(s): State<Shared>,
    Path(task): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    let r = lock(&s);
    let task = parse_hex32(&task).unwrap();
    let leaves: Vec<[u8; 32]> = r.receipts.iter().map(Receipt::leaf).collect();
    match r.receipts.iter().position(|rc| rc.body.task_id == task) {
        Some(i) => {
            let proof = merkle::proof::<Ledger>(&leaves, i).unwrap();
            let view = receipt_view(&r.receipts[i], r.batch_id, i as u32, &proof);
            (StatusCode::OK, Json(serde_json::to_value(view).unwrap()))
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "unknown task" })),
        ),
    }
}

async fn audits(
    State(s): State<Shared>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    let raw = body["raw"].as_str().unwrap_or_default();
    match hex::decode(raw)
        .ok()
        .and_then(|b| AuditReport::decode_verified(&b).ok())
    {
        Some(report) => {
            lock(&s).reports.push(report);
            (
                StatusCode::OK,
                Json(serde_json::json!({ "status": "stored" })),
            )
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": "invalid audit report" })),
        ),
    }
}

async fn stand_in_relayer(shared: Shared) -> String {
    let app = Router::new()
        .route("/v1/batches/{id}/receipts", get(batch_receipts))
        .route("/v1/receipts/{task}", get(one_receipt))
        .route("/v1/audits", post(audits))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Every receipt audited, a committee of whoever has stake, a quorum of one.
fn test_params() -> ConfigParams {
    ConfigParams {
        audit_rate_bps: 10_000,
        verifier_quorum: 1,
        committee_size: 3,
        seed_delay_slots: 2,
        ..params::local()
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn verifier(
    key: &Keypair,
    rpc_url: &str,
    relayer: &str,
    state_dir: &std::path::Path,
) -> RunningVerifier {
    start(VerifierConfig {
        keypair: key.insecure_clone(),
        rpc_url: rpc_url.into(),
        model_path: strata_engine::default_model_path().unwrap(),
        model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.into()),
        p2p: P2pConfig::local(),
        relayer_http: relayer.into(),
        stake: 100 * TOKEN,
        poll_interval: Duration::from_millis(300),
        opening_timeout: Duration::from_secs(2),
        state_dir: Some(state_dir.to_path_buf()),
        follow_trainers: Vec::new(),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_withholding_its_openings_is_challenged_judged_and_slashed() {
    let localnet = tokio::task::spawn_blocking(|| {
        Localnet::start(&LocalnetConfig {
            rpc_port: 0,
            ws_port: 0,
            slot_time_ms: 100,
        })
    })
    .await
    .unwrap()
    .unwrap();
    let url = localnet.rpc_url().to_string();
    let rpc = ChainClient::new(&url).unwrap();
    let (admin, mint, relayer) = (Keypair::new(), Keypair::new(), Keypair::new());
    rpc.airdrop(&admin.pubkey(), 100 * SOL).await.unwrap();
    rpc.airdrop(&relayer.pubkey(), 10 * SOL).await.unwrap();
    let rent = rpc.rent(token::MINT_LEN).await.unwrap();
    let create =
        token::create_mint(&admin.pubkey(), &mint.pubkey(), &admin.pubkey(), rent).unwrap();
    rpc.send(&create, &admin, &[&mint]).await.unwrap();
    let init = ix::initialize(
        &admin.pubkey(),
        &mint.pubkey(),
        test_params(),
        &admin.pubkey(),
    );
    rpc.send(&[init], &admin, &[]).await.unwrap();
    rpc.send(
        &[ix::add_relayer(&admin.pubkey(), &relayer.pubkey())],
        &admin,
        &[],
    )
    .await
    .unwrap();

    // A compute node with stake that will never answer (it is not even on
    // the network), and a funded verifier.
    let node = Keypair::new();
    let fund = |key: Keypair, tokens: u64| {
        let (rpc, admin, mint) = (rpc.clone(), admin.insecure_clone(), mint.pubkey());
        async move {
            token::faucet(&rpc, &admin, &mint, &key.pubkey(), 10 * SOL, tokens)
                .await
                .unwrap();
        }
    };
    fund(node.insecure_clone(), 100 * TOKEN).await;
    ensure_registered(
        &rpc,
        &node,
        &[],
        Capacity::default(),
        ROLE_COMPUTE,
        100 * TOKEN,
    )
    .await
    .unwrap();
    let verifier_key = Keypair::new();
    fund(verifier_key.insecure_clone(), 200 * TOKEN).await;

    let shared: Shared = Arc::default();
    let relayer_url = stand_in_relayer(shared.clone()).await;
    let state = tempfile::tempdir().unwrap();
    let v = verifier(&verifier_key, &url, &relayer_url, state.path()).await;
    assert!(v.registration.registered_now);
    assert_eq!(v.registration.stake, 100 * TOKEN);

    // The node's receipts, batched after the verifier registered.
    let model_hash = parse_hex32(strata_engine::DEFAULT_MODEL_SHA256).unwrap();
    let receipts: Vec<Receipt> = (0..2u8)
        .map(|i| {
            receipt(
                &node,
                [i + 1; 32],
                model_hash,
                &[1, 2, 3],
                &[4, 5],
                [i; 32],
                greedy(),
            )
        })
        .collect();
    let leaves: Vec<[u8; 32]> = receipts.iter().map(Receipt::leaf).collect();
    let batch_id = rpc.config().await.unwrap().next_batch_id;
    {
        let mut r = lock(&shared);
        r.batch_id = batch_id;
        r.receipts = receipts.clone();
    }
    let post = ix::post_batch(
        &relayer.pubkey(),
        batch_id,
        0,
        merkle::root::<Ledger>(&leaves),
        2,
        10,
    );
    rpc.send(&[post], &relayer, &[]).await.unwrap();

    wait_for("both verdicts", || v.stats().verdicts_submitted >= 2).await;
    let s = v.stats();
    assert_eq!(
        (
            s.audits_withheld,
            s.audits_passed,
            s.challenges_opened,
            s.votes_cast
        ),
        (2, 0, 2, 2),
        "{s:?}"
    );
    // The same counts, scraped from /metrics and parsed as Prometheus text.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let server = v.serve_metrics(listener);
    let m = strata_test_utils::scrape(&metrics_url).await;
    assert_eq!(
        m.value("strata_verifier_audits", &[("outcome", "withheld")]),
        2.0
    );
    assert_eq!(
        m.value("strata_verifier_audits", &[("outcome", "passed")]),
        0.0
    );
    assert_eq!(m.value("strata_verifier_challenges_opened", &[]), 2.0);
    assert_eq!(m.value("strata_verifier_votes_cast", &[]), 2.0);
    assert!(m.value("strata_verifier_verdicts_submitted", &[]) >= 2.0);
    let p2p = v.p2p.stats().await.unwrap();
    assert_eq!(
        m.value("strata_verifier_peers", &[]),
        p2p.connected_peers as f64
    );
    assert_eq!(
        m.value("strata_verifier_peers_banned", &[]),
        p2p.banned_peers as f64
    );
    for name in strata_test_utils::dashboard_metrics("strata_verifier") {
        assert!(
            m.has(&name),
            "the dashboard plots {name}, which the verifier does not export"
        );
    }
    server.abort();

    let slashed = rpc.node(&node.pubkey()).await.unwrap().unwrap();
    assert!(slashed.slashed_total > 0 && slashed.stake < 100 * TOKEN);
    assert_eq!(slashed.open_challenges, 0);
    let challenges: Vec<Challenge> = rpc
        .challenges()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(challenges.len(), 2);
    assert!(challenges
        .iter()
        .all(|c| c.status == ChallengeStatus::Upheld && c.challenger == verifier_key.pubkey()));

    // Reports as assigned verifier and as committee member, all "withheld".
    wait_for("four reports", || lock(&shared).reports.len() >= 4).await;
    for r in &lock(&shared).reports {
        assert_eq!(r.body.verifier, verifier_key.pubkey().to_bytes());
        assert_eq!(r.body.node, node.pubkey().to_bytes());
        assert!(matches!(
            r.body.outcome,
            AuditOutcome::Failed {
                check: FailedCheck::Withheld,
                ..
            }
        ));
        assert_eq!(r.body.layers.len(), 6);
    }

    // A restart registers nothing new and audits nothing again.
    v.shutdown().await;
    let again = verifier(&verifier_key, &url, &relayer_url, state.path()).await;
    assert!(!again.registration.registered_now);
    assert_eq!(again.registration.staked_now, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(again.stats(), Default::default());
    // Still four reports: a report whose delivery a shutdown cut short is
    // sent again after the restart (at least once; the relayer keeps one),
    // but nothing new is reported.
    let mut distinct: Vec<AuditReport> = Vec::new();
    for r in lock(&shared).reports.iter() {
        if !distinct.contains(r) {
            distinct.push(r.clone());
        }
    }
    assert_eq!(distinct.len(), 4);
    again.shutdown().await;
}
