//! A rollout job at a policy version above 0, end to end on the local
//! testnet with the real model: a trainer key publishes a LoRA adapter as
//! version 1 over p2p, the node and the verifier (both following that
//! trainer) fetch it, and a rollout job at version 1 is paid and receipted:
//! every completion says version 1, its receipt (version 4) names the
//! adapter's digest, and the same job at version 0 (same seeds) gives
//! other tokens, so the adapter really ran. Every receipt of both jobs is
//! audited (audit rate 100 %) and passes: the verifier re-ran the layers
//! of version-1 tasks with the adapter. A version no node holds is a 503
//! that says which versions are served.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_chain::{Keypair, Signer};
use strata_engine::{Adapter, LoraPart, LoraTarget, ModelLayout};
use strata_p2p::{NodeIdentity, P2pConfig};
use strata_service::policy::prepare_policy;
use strata_test_utils::wait_for;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, POLICY};
use strata_wire::receipt::ADAPTED_RECEIPT_VERSION;
use strata_wire::Receipt;

const PROMPTS: usize = 2;
const GROUP: usize = 2;
const SEED: u64 = 11;

/// A rank-4 adapter of the real model (its config and SHA-256) on the
/// query, value and down projections of every block, small pseudo-random
/// factors.
fn real_adapter(version: u64) -> Adapter {
    let model = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let config = ModelLayout::read(&model).unwrap().config;
    let base = strata_wire::parse_hex32(strata_engine::DEFAULT_MODEL_SHA256).unwrap();
    let rank = 4;
    let mut state = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
    };
    let mut parts = Vec::new();
    for layer in 0..config.n_layers {
        for target in [LoraTarget::ALL[0], LoraTarget::ALL[2], LoraTarget::ALL[6]] {
            let (i, o) = target.dims(&config);
            parts.push(LoraPart {
                layer,
                target,
                a: (0..rank * i).map(|_| next()).collect(),
                b: (0..o * rank).map(|_| next()).collect(),
            });
        }
    }
    Adapter::new(base, version, rank, 8.0, parts).unwrap()
}

async fn job(gw: &str, version: u64) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{gw}/v1/rollouts"))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({
            "model": MODEL_NAME, "policy_version": version,
            "task": {"name": "arithmetic", "seed": 5, "count": PROMPTS},
            "group_size": GROUP, "max_tokens": 8,
            "sampling": {"temperature": 1.0, "top_k": 40, "seed": SEED},
        }))
        .send()
        .await
        .unwrap()
}

/// Every completion of a job's answer, prompt by prompt.
fn completions(body: &Value) -> Vec<Value> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["completions"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_job_at_a_published_version_runs_its_adapter_paid_receipted_and_audited() {
    let _turn = crate::one_at_a_time().await;
    let started = Instant::now();
    let trainer_key = Keypair::new();
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.nodes = 1;
    options.verifiers = 1;
    options.network.verifier_poll = Duration::from_millis(300);
    options.genesis.params.audit_rate_bps = 10_000;
    options.network.follow_trainers = vec![trainer_key.pubkey().to_bytes()];
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let gw = t.net.gateway.url();

    // The trainer joins the swarm and publishes version 1.
    let identity = NodeIdentity::from_keypair_bytes(trainer_key.to_bytes()).unwrap();
    let config = P2pConfig {
        bootstrap: t.net.relayer.p2p_addrs().to_vec(),
        ..P2pConfig::local()
    }
    .with_protocols(ALL_PROTOCOLS)
    .with_topics(ALL_TOPICS);
    let (trainer, _events) = strata_p2p::start(identity, config).await.unwrap();
    for n in &t.net.nodes {
        trainer.dial(&n.addrs[0]).await.unwrap();
    }
    for v in &t.net.verifiers {
        trainer.dial(&v.addrs[0]).await.unwrap();
    }
    let adapter = real_adapter(1);
    let path = dir.path().join("policy-v1.safetensors");
    std::fs::write(&path, adapter.to_bytes()).unwrap();
    let base = adapter.base_model();
    let a = prepare_policy(&trainer, &trainer_key, base, 1, &path)
        .await
        .unwrap();
    let node_store = t.net.nodes[0].policies.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_store.get(1).is_none() {
        assert!(
            Instant::now() < deadline,
            "the node never fetched version 1"
        );
        let _ = trainer.publish(&POLICY, a.encode()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(node_store.get(1).unwrap().digest(), adapter.digest());

    // A version no node holds: refused before anything is paid.
    let paid_before: u64 = t
        .net
        .gateway
        .voucher_totals()
        .iter()
        .map(|(_, _, c)| c)
        .sum();
    let r = job(&gw, 2).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("holds policy version 2"), "{msg}");

    // Version 1, once the gateway has heard the node announce it (every 2 s).
    let mut v1 = job(&gw, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while v1.status() == 503 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        v1 = job(&gw, 1).await;
    }
    assert_eq!(v1.status(), 200);
    let v1: Value = v1.json().await.unwrap();
    let v0 = job(&gw, 0).await;
    assert_eq!(v0.status(), 200);
    let v0: Value = v0.json().await.unwrap();
    assert_eq!(v1["policy_version"], 1);
    assert_eq!(v1["usage"]["failed"], 0, "{v1}");

    let digest = hex::encode(adapter.digest());
    let (c1, c0) = (completions(&v1), completions(&v0));
    assert_eq!(c1.len(), PROMPTS * GROUP);
    let mut prices = 0;
    let mut differ = 0;
    for (a, b) in c1.iter().zip(&c0) {
        assert_eq!(a["policy_version"], 1, "{a}");
        assert_eq!(a["adapter"], digest.as_str());
        assert_eq!(b["policy_version"], 0);
        assert!(b["adapter"].is_null());
        assert_eq!(a["seed"], b["seed"], "the same member seeds");
        let r = Receipt::decode_verified(&hex::decode(a["receipt"].as_str().unwrap()).unwrap())
            .unwrap();
        assert_eq!(r.body.version, ADAPTED_RECEIPT_VERSION);
        let part = r.body.adapter.unwrap();
        assert_eq!((part.policy_version, part.adapter), (1, adapter.digest()));
        assert_eq!(r.body.price, a["price"].as_u64().unwrap());
        let base_receipt =
            Receipt::decode_verified(&hex::decode(b["receipt"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            base_receipt.body.version,
            strata_wire::receipt::RECEIPT_VERSION
        );
        prices += r.body.price + base_receipt.body.price;
        if a["token_ids"] != b["token_ids"] {
            differ += 1;
        }
    }
    println!(
        "{differ} of {} completions differ between version 1 and version 0",
        c1.len()
    );
    assert!(differ > 0, "the adapter changed nothing: did it run?");
    let paid_after: u64 = t
        .net
        .gateway
        .voucher_totals()
        .iter()
        .map(|(_, _, c)| c)
        .sum();
    assert_eq!(
        paid_after - paid_before,
        prices,
        "both jobs paid, the refused one not"
    );

    // Every receipt is audited; the version-1 ones re-run with the adapter.
    let verifier = &t.net.verifiers[0];
    let want = (c1.len() + c0.len()) as u64;
    wait_for(Duration::from_secs(25), "every receipt audited", || async {
        verifier.stats().audits() >= want
    })
    .await;
    let s = verifier.stats();
    assert_eq!(
        (
            s.audits_passed,
            s.audits_failed,
            s.audits_withheld,
            s.audits_unknown_model
        ),
        (want, 0, 0, 0),
        "{s:?}"
    );
    println!("versioned rollout test took {:?}", started.elapsed());
    t.shutdown().await;
}
