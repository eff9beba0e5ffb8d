//! Pipelined tasks: hop receipts (version 3) in, `/v1/tasks/{id}` out. The
//! hops of a task listed by segment and route order with their links
//! (linked, incomplete while a hop's receipt is missing, broken at the hop
//! whose input is not what its predecessor handed on); each hop receipt
//! batched on-chain with a proof like any receipt; a second receipt for one
//! hop listed as a conflict instead of hiding or replacing the first; a
//! receipt filed for another node's hop stored apart, never in its way.

use crate::common::*;
use strata_chain::{Keypair, Signer};
use strata_relayer::http::TaskView;
use strata_relayer::store::MAX_HOP_CLAIMS;
use strata_relayer::Relayer;
use strata_wire::Receipt;

fn task(n: u8) -> [u8; 32] {
    [0xa0 | n; 32]
}

async fn task_view(
    http: &reqwest::Client,
    base: &str,
    task: &[u8; 32],
) -> (u16, serde_json::Value) {
    let r = http
        .get(format!("{base}/v1/tasks/{}", hex::encode(task)))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post_ok(http: &reqwest::Client, base: &str, r: &Receipt) {
    let (status, body) = post(http, base, r.encode()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("stored")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_receipts_are_linked_batched_and_proved() {
    let env = setup(1, 3, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(env.relayer_config(dir.path(), 0))
        .await
        .expect("relayer starts");
    let base = relayer.http_url().to_string();
    let http = http();
    let nodes: Vec<&Keypair> = env.nodes.iter().collect();
    let t = task(1);
    let hops = hop_receipts(&nodes, &env.clients[0], t, 5, 5);

    // Hops 0 and 2 first: the middle one has not arrived.
    post_ok(&http, &base, &hops[2]).await;
    post_ok(&http, &base, &hops[0]).await;
    let (status, v) = task_view(&http, &base, &t).await;
    assert_eq!(status, 200, "{v}");
    let seg = &v["segments"][0];
    assert_eq!(seg["status"], "incomplete", "{v}");
    assert_eq!(seg["missing"], serde_json::json!([1]), "{v}");
    assert_eq!(seg["broken_at"], serde_json::Value::Null, "{v}");
    assert_eq!(seg["links"][0]["status"], "incomplete", "{v}");
    assert_eq!(seg["links"][1]["status"], "incomplete", "{v}");

    // The last one: three hops in route order, every link holds.
    post_ok(&http, &base, &hops[1]).await;
    let (_, v) = task_view(&http, &base, &t).await;
    let view: TaskView = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(view.task_id, hex::encode(t));
    assert!(!view.truncated);
    assert_eq!(view.segments.len(), 1, "{v}");
    let seg = &view.segments[0];
    assert_eq!((seg.segment, seg.count), (0, 3));
    assert_eq!(seg.status, "linked", "{v}");
    assert!(seg.missing.is_empty() && seg.conflicts.is_empty(), "{v}");
    assert_eq!(
        seg.links
            .iter()
            .map(|l| l.status.as_str())
            .collect::<Vec<_>>(),
        ["linked", "linked"]
    );
    for (k, (hop, r)) in seg.hops.iter().zip(&hops).enumerate() {
        let part = r.body.hop.unwrap();
        assert_eq!(hop.index as usize, k);
        assert_eq!(hop.claim, "stored");
        assert_eq!(hop.receipt_id, hex::encode(r.body.task_id));
        assert_eq!(hop.node, hex::encode(nodes[k].pubkey().to_bytes()));
        assert_eq!((hop.start, hop.end), (part.start, part.end));
        assert_eq!((hop.cells, hop.price), (part.cells, 5));
        assert_eq!(hop.work_units, part.cells / u64::from(HOP_MODEL_BLOCKS));
        assert_eq!(hop.raw, hex::encode(r.encode()));
    }

    // Each hop receipt is its own leaf, batched and proved like a v2 one,
    // and the task's view shows its inclusion.
    wait_for(40, "the hop receipts in a posted batch", || async {
        let (_, v) = task_view(&http, &base, &t).await;
        v["segments"][0]["hops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["batch"]["status"] == "posted")
    })
    .await;
    for r in &hops {
        let view = get_view(&http, &base, &r.body.task_id).await.unwrap();
        assert_eq!(view.version, 3);
        assert_eq!(view.raw, hex::encode(r.encode()));
        assert_eq!(view.work_units, r.body.work_units());
        env.assert_proof_on_chain(&view).await;
    }
    relayer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_and_conflicting_hops_are_shown() {
    let env = setup(2, 3, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(env.relayer_config(dir.path(), 0))
        .await
        .expect("relayer starts");
    let base = relayer.http_url().to_string();
    let http = http();
    let nodes: Vec<&Keypair> = env.nodes.iter().collect();
    let client = &env.clients[0];

    // Hop 1 says it received other states than hop 0 handed on.
    let t = task(2);
    let mut parts = hop_parts(&nodes, t, 0);
    parts[1].input_states = [0xee; 32];
    for (k, part) in parts.iter().enumerate() {
        post_ok(&http, &base, &hop_receipt(nodes[k], client, *part, 5, 5)).await;
    }
    let (_, v) = task_view(&http, &base, &t).await;
    let seg = &v["segments"][0];
    assert_eq!(seg["status"], "broken", "{v}");
    assert_eq!(seg["broken_at"], 1, "{v}");
    assert_eq!(seg["links"][0]["status"], "broken", "{v}");
    assert!(
        seg["links"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("hop 1's input states"),
        "{v}"
    );
    assert_eq!(seg["links"][1]["status"], "linked", "{v}");

    // Task 3: a node that never served it files a receipt for its hop 0
    // first (with its own voucher). A hop's receipt id names its node, so
    // the honest hop 0 is stored (and batched, and paid) all the same; both
    // are listed, and the route's is the one hop 1 names.
    let t = task(3);
    let honest = hop_receipts(&nodes, client, t, 5, 10);
    let squatter = Keypair::new();
    let mut fake = hop_parts(&nodes, t, 0)[0];
    fake.output_states = [0xbb; 32];
    let fake = hop_receipt(&squatter, &env.clients[1], fake, 0, 0);
    post_ok(&http, &base, &fake).await;
    for r in &honest {
        post_ok(&http, &base, r).await;
    }
    let (_, v) = task_view(&http, &base, &t).await;
    let seg = &v["segments"][0];
    assert_eq!(seg["conflicts"], serde_json::json!([0]), "{v}");
    let hops = seg["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 4, "{v}");
    assert!(hops.iter().all(|h| h["claim"] == "stored"), "{v}");
    let honest_hop0 = hops
        .iter()
        .find(|h| h["node"] == hex::encode(nodes[0].pubkey().to_bytes()))
        .expect("the honest hop 0 is listed");
    assert_eq!(honest_hop0["raw"], hex::encode(honest[0].encode()));
    assert_eq!(seg["status"], "linked", "{v}");

    // One node signing two receipts for one hop: the second is a conflict
    // under the same id, listed but never stored; claims per hop are bounded.
    for i in 0..=MAX_HOP_CLAIMS {
        let part = hop_parts(&nodes, t, 0)[0];
        let r = hop_receipt(nodes[0], client, part, 6 + i as u64, 11 + i as u64);
        let (status, body) = post(&http, &base, r.encode()).await;
        assert_eq!(status, 400, "{body}");
        let why = body["error"].as_str().unwrap();
        let listed = why.contains("listed as a conflicting claim");
        assert_eq!(listed, i < MAX_HOP_CLAIMS, "claim {i}: {why}");
    }
    let (_, v) = task_view(&http, &base, &t).await;
    let hops = v["segments"][0]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 4 + MAX_HOP_CLAIMS, "{v}");
    assert!(
        hops.iter()
            .filter(|h| h["claim"] == "conflicting")
            .all(|h| h["node"] == hex::encode(nodes[0].pubkey().to_bytes())),
        "{v}"
    );
    assert_eq!(v["segments"][0]["status"], "linked", "{v}");

    // Bad and unknown ids.
    let r = http
        .get(format!("{base}/v1/tasks/not-hex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, body) = task_view(&http, &base, &task(9)).await;
    assert_eq!(status, 404, "{body}");
    relayer.shutdown().await;
}
