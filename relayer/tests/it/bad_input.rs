//! Bad receipts get a clear 400 and nothing is stored: forged node or
//! client signatures, a replayed voucher, a second receipt for a task,
//! oversized and garbage bodies. No chain is needed for that.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
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
    let stats: StatsView = get_json(&http, &base, "/v1/stats").await;
    assert_eq!(stats.receipts, 1);
    assert!(get_view(&http, &base, &good.body.task_id).await.is_some());
    for r in [&forged, &tampered, &bad_voucher, &replay] {
        assert!(get_view(&http, &base, &r.body.task_id).await.is_none());
    }
    relayer.shutdown().await;
}

/// Bad audit reports get a clear 400 and nothing is stored: oversized,
/// garbage JSON, not hex, not a report, a forged signature, an unknown task,
/// a receipt not batched yet, a report naming another node; and bad reads.
/// All of these are refused before the chain is asked (none is reachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audit_reports_are_refused_and_not_stored() {
    use strata_chain::Signer;
    use strata_wire::audit::{AuditBody, AuditOutcome, AuditReport, AUDIT_VERSION};

    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(RelayerConfig {
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
    let (node, client, verifier) = (Keypair::new(), Keypair::new(), Keypair::new());
    let stored = receipt(&node, &client, 1, 50, 50);
    assert_eq!(post(&http, &base, stored.encode()).await.0, 200);
    let report = |task_id: [u8; 32], node: [u8; 32]| {
        AuditReport::sign(
            &verifier,
            AuditBody {
                version: AUDIT_VERSION,
                task_id,
                batch_id: 0,
                leaf_index: 0,
                node,
                verifier: verifier.pubkey().to_bytes(),
                layers: vec![1],
                steps: vec![0],
                outcome: AuditOutcome::Passed,
                work_digest: [5; 32],
                max_rel_dev: 0.0,
                cpu_micros: 10,
                finished_at_ms: 1,
            },
        )
        .unwrap()
    };
    let refused = |status: u16, body: &serde_json::Value, code: u16, needle: &str| {
        let msg = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, code, "{body}");
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    };
    let send_raw = |body: Vec<u8>| {
        let http = http.clone();
        let url = format!("{base}/v1/audits");
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>()
                    .await
                    .unwrap_or(serde_json::Value::Null),
            )
        }
    };

    // Oversized (over the route's own limit, which is above the 4 KiB of the
    // other routes: a 6 KiB body reaches the report decoder).
    let limit = strata_relayer::http::MAX_AUDIT_BODY;
    let (status, body) = send_raw(vec![b'a'; limit + 1]).await;
    refused(status, &body, 400, "exceeds");
    let big = format!("{{\"raw\": \"{}\"}}", "00".repeat(3 * 1024));
    let (status, body) = send_raw(big.into_bytes()).await;
    refused(status, &body, 400, "invalid audit report");
    // Garbage JSON, not hex, not a report, trailing bytes.
    let (status, body) = send_raw(b"{\"raw\": 12".to_vec()).await;
    refused(status, &body, 400, "expected JSON");
    let (status, body) = send_raw(b"{\"raw\": \"xyz\"}".to_vec()).await;
    refused(status, &body, 400, "not a hex string");
    let (status, body) = post_audit(&http, &base, b"hello").await;
    refused(status, &body, 400, "invalid audit report");
    let good = report(stored.body.task_id, stored.body.node);
    let mut trailing = good.encode();
    trailing.push(0);
    let (status, body) = post_audit(&http, &base, &trailing).await;
    refused(status, &body, 400, "invalid audit report");
    // Forged: a field changed after signing, or another key's signature.
    let mut forged = good.clone();
    forged.body.work_digest = [6; 32];
    let (status, body) = post_audit(&http, &base, &forged.encode()).await;
    refused(status, &body, 400, "signature does not match its verifier");
    let mut stolen = good.clone();
    stolen.body.verifier = Keypair::new().pubkey().to_bytes();
    let (status, body) = post_audit(&http, &base, &stolen.encode()).await;
    refused(status, &body, 400, "signature does not match its verifier");
    // An unknown task, a receipt not batched yet, another node.
    let (status, body) =
        post_audit(&http, &base, &report([8; 32], stored.body.node).encode()).await;
    refused(status, &body, 400, "unknown task");
    let (status, body) = post_audit(&http, &base, &good.encode()).await;
    refused(status, &body, 400, "not in a batch yet");
    let other_node = report(stored.body.task_id, Keypair::new().pubkey().to_bytes());
    let (status, body) = post_audit(&http, &base, &other_node.encode()).await;
    refused(status, &body, 400, "names node");

    // Reads: bad queries are 400, an unknown batch 404.
    for (path, code) in [
        ("/v1/audits?limit=0", 400),
        ("/v1/audits?limit=501", 400),
        ("/v1/audits?task=xyz", 400),
        ("/v1/challenges?task=xyz", 400),
        ("/v1/batches/xyz/receipts", 400),
        ("/v1/batches/7/receipts", 404),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    // Nothing was stored.
    let listed: serde_json::Value = get_json(&http, &base, "/v1/audits").await;
    assert_eq!(listed, serde_json::json!([]));
    let by_task: serde_json::Value = get_json(
        &http,
        &base,
        &format!("/v1/audits?task={}", hex::encode(stored.body.task_id)),
    )
    .await;
    assert_eq!(by_task, serde_json::json!([]));
    let challenges: serde_json::Value = get_json(&http, &base, "/v1/challenges").await;
    assert_eq!(challenges, serde_json::json!([]));
    relayer.shutdown().await;
}
