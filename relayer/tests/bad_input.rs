//! Bad receipts get a clear 400 and nothing is stored: forged node or
//! client signatures, a replayed voucher, a second receipt for a task,
//! oversized and garbage bodies. No chain is needed for that.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use strata_chain::Keypair;
use strata_p2p::P2pConfig;
use strata_relayer::{Relayer, RelayerConfig};
use strata_wire::api::StatsView;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_receipts_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(RelayerConfig {
        // Nothing listens there: the loops just log and retry.
        rpc_url: "http://127.0.0.1:9".into(),
        keypair: Keypair::new(),
        state_dir: dir.path().to_path_buf(),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        p2p: P2pConfig::local(),
        batch_interval: Duration::from_secs(60),
        reward_interval: Duration::from_secs(60),
        reward_per_work_unit: 1,
    })
    .await
    .unwrap();
    let base = relayer.http_url().to_string();
    let http = http();
    let (node, client) = (Keypair::new(), Keypair::new());
    let good = receipt(&node, &client, 1, 50, 50);
    assert_eq!(post(&http, &base, good.encode()).await.0, 200);

    let refused = |body: serde_json::Value, needle: &str| {
        let msg = body["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    };

    // Forged node signature.
    let mut forged = receipt(&node, &client, 2, 50, 100);
    forged.signature[0] ^= 1;
    let (status, body) = post(&http, &base, forged.encode()).await;
    assert_eq!(status, 400);
    refused(body, "receipt signature does not match its node");

    // Body changed after signing (price raised).
    let mut tampered = receipt(&node, &client, 3, 50, 100);
    tampered.body.price = 60;
    let (status, body) = post(&http, &base, tampered.encode()).await;
    assert_eq!(status, 400);
    refused(body, "receipt signature does not match");

    // Forged voucher: signed by someone else than the client it names.
    let mut bad_voucher = receipt(&node, &client, 4, 50, 100);
    bad_voucher.body.voucher.client = Keypair::new().to_bytes()[32..].try_into().unwrap();
    let bad_voucher = strata_wire::Receipt::sign(&node, bad_voucher.body).unwrap();
    let (status, body) = post(&http, &base, bad_voucher.encode()).await;
    assert_eq!(status, 400);
    refused(body, "voucher signature does not match its client");

    // Replayed voucher: the first receipt's voucher on a new task.
    let mut replay = receipt(&node, &client, 5, 50, 50);
    replay.body.voucher = good.body.voucher;
    let replay = strata_wire::Receipt::sign(&node, replay.body).unwrap();
    let (status, body) = post(&http, &base, replay.encode()).await;
    assert_eq!(status, 400);
    refused(body, "replayed voucher");

    // Another receipt for the same task.
    let mut other = receipt(&node, &client, 1, 50, 150);
    other.body.prompt_tokens += 1;
    let other = strata_wire::Receipt::sign(&node, other.body).unwrap();
    let (status, body) = post(&http, &base, other.encode()).await;
    assert_eq!(status, 400);
    refused(body, "already has a different receipt");

    // Oversized (over the 4 KiB body limit, and over the receipt limit).
    let (status, body) = post(&http, &base, vec![0; 5000]).await;
    assert_eq!(status, 400);
    refused(body, "exceeds");
    let (status, body) = post(&http, &base, vec![0; 2000]).await;
    assert_eq!(status, 400);
    refused(body, "exceeds the limit");

    // Garbage and trailing bytes.
    let (status, body) = post(&http, &base, b"hello".to_vec()).await;
    assert_eq!(status, 400);
    refused(body, "malformed");
    let mut trailing = good.encode();
    trailing.push(0);
    assert_eq!(post(&http, &base, trailing).await.0, 400);

    // Reads: unknown task 404, bad id 400.
    let unknown = http
        .get(format!("{base}/v1/receipts/{}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let bad = http
        .get(format!("{base}/v1/receipts/xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // Only the good receipt is stored.
    let stats: StatsView = http
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.receipts, 1);
    assert!(get_view(&http, &base, &good.body.task_id).await.is_some());
    for r in [&forged, &tampered, &bad_voucher, &replay] {
        assert!(get_view(&http, &base, &r.body.task_id).await.is_none());
    }
    relayer.shutdown().await;
}
