//! A rollout job end to end: a gateway and one node over real p2p with the
//! real model. Two arithmetic prompts, groups of two: every completion is a
//! paid, receipted task whose voucher moved the client's total by its
//! price, carries the sampled tokens' log-probabilities (≤ 0, one per
//! token), policy version 0 and a reward equal to `strata-rl`'s
//! recomputation from its text; the prompts are the task's, regenerated
//! from its seed here.

use serde_json::{json, Value};
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;
use strata_wire::Receipt;

const PROMPTS: usize = 2;
const GROUP: usize = 2;
const SEED: u64 = 11;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_job_is_paid_receipted_and_its_rewards_recompute() {
    let _turn = crate::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.nodes = 1;
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let gw = &t.net.gateway;
    let paid_before: u64 = gw.voucher_totals().iter().map(|(_, _, c)| c).sum();

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/rollouts", gw.url()))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({
            "model": MODEL_NAME, "policy_version": "0",
            "task": {"name": "arithmetic", "seed": 5, "count": PROMPTS},
            "group_size": GROUP, "max_tokens": 8,
            "sampling": {"temperature": 1.0, "top_k": 40, "seed": SEED},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "rollout", "{body}");
    assert_eq!(body["reward"], json!({"name": "arithmetic", "version": 1}));
    assert_eq!(body["usage"]["failed"], 0, "{body}");

    let expected = strata_rl::generate("arithmetic", 5, PROMPTS).unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), PROMPTS);
    let mut prices = 0u64;
    let mut seeds = std::collections::HashSet::new();
    for (i, (r, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(r["prompt"], want.prompt.as_str());
        assert_eq!(r["expected"], want.expected.as_str());
        let group = r["completions"].as_array().unwrap();
        assert_eq!(group.len(), GROUP, "{r}");
        for (m, c) in group.iter().enumerate() {
            let text = c["text"].as_str().unwrap();
            let reward = strata_rl::score("arithmetic", &want.expected, text).unwrap();
            assert_eq!(c["reward"].as_f64(), Some(f64::from(reward)), "{c}");
            assert_eq!(c["policy_version"], 0);

            let ids = c["token_ids"].as_array().unwrap();
            let logprobs = c["logprobs"].as_array().unwrap();
            assert!(!logprobs.is_empty() && logprobs.len() == ids.len(), "{c}");
            assert!(logprobs
                .iter()
                .all(|l| l.as_f64().is_some_and(|l| l <= 0.0)));

            // The receipt: the node's signature over this task, its price,
            // and the member's own seed.
            let seed = c["seed"].as_u64().unwrap();
            assert_eq!(seed, strata_rl::member_seed(SEED, i as u64, m as u64));
            assert!(seeds.insert(seed), "group members draw with distinct seeds");
            let receipt =
                Receipt::decode_verified(&hex::decode(c["receipt"].as_str().unwrap()).unwrap())
                    .unwrap();
            let price = c["price"].as_u64().unwrap();
            assert!(price > 0);
            assert_eq!(receipt.body.price, price);
            assert_eq!(hex::encode(receipt.body.task_id), c["task_id"]);
            assert_eq!(receipt.body.sampling.seed, seed);
            assert_eq!(
                receipt.body.completion_tokens as usize,
                ids.len(),
                "a logprob per billed token"
            );
            prices += price;
        }
    }
    assert_eq!(body["usage"]["price"], prices);
    let paid_after: u64 = gw.voucher_totals().iter().map(|(_, _, c)| c).sum();
    assert_eq!(
        paid_after - paid_before,
        prices,
        "the vouchers moved by the sum of the prices"
    );
    t.shutdown().await;
}
