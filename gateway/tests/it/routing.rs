//! Routing, the stake ceiling and payment against a real local chain, with
//! fake nodes over real p2p: a task goes to the least loaded node, around a
//! busy one, never to a node whose stake cannot answer for its cost; the
//! receipt the client gets back is the node's, checked; a wrong receipt, an
//! empty escrow or none at all are refused with their statuses.

use serde_json::Value;
use strata_chain::params::{self, TOKEN};
use strata_chain::{Keypair, Signer};
use strata_test_utils::chain::LocalChain;
use strata_test_utils::get_json;
use strata_wire::Receipt;

use crate::common::*;

const KEY: &str = "paying-key";
const POOR: &str = "poor-key";
const NO_ESCROW: &str = "no-escrow-key";
/// Base units per token every fake node asks.
const PRICE_PER_TOKEN: u64 = 1_000;
/// The least a node may stake; with the local parameters (2 % audits, 50 %
/// slash, safety factor 2) it answers for tasks of up to 0.5 tokens.
const STAKE: u64 = 100 * TOKEN;

/// Which fake node served a completion.
fn served_by(body: &Value) -> String {
    body["strata"]["node"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_go_to_the_least_loaded_node_within_its_stake_and_are_paid() {
    let chain = LocalChain::start(params::local()).await;
    let client = chain.client(10 * TOKEN).await;
    let poor = chain.client(5).await;
    let (loaded, idle) = (
        FakeNode::start(PRICE_PER_TOKEN, 3, 4).await,
        FakeNode::start(PRICE_PER_TOKEN, 0, 4).await,
    );
    for n in [&loaded, &idle] {
        chain.register_node(&n.key, &n.addrs, STAKE).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let accounts = vec![
        (KEY.to_string(), client.insecure_clone()),
        (POOR.to_string(), poor),
        (NO_ESCROW.to_string(), Keypair::new()),
    ];
    let gw = gateway(&chain.url, accounts, dir.path(), &[&loaded, &idle]).await;
    wait_for_nodes(&gw, 2).await;
    const CHAT: &str = "/v1/chat/completions";

    // The idle node serves; the answer carries its verified receipt.
    let (status, body) = post(&gw, CHAT, Some(KEY), chat(MODEL, 8)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by(&body), idle.key.pubkey().to_string());
    assert_eq!((idle.started(), loaded.started()), (1, 0));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        serde_json::json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        })
    );
    assert_eq!(body["strata"]["price"], idle.price());
    assert_eq!(body["strata"]["voucher_cumulative"], idle.price());
    let raw = hex::decode(body["strata"]["receipt"].as_str().unwrap()).unwrap();
    let receipt = Receipt::decode_verified(&raw).unwrap();
    assert_eq!(receipt.body.node, idle.key.pubkey().to_bytes());
    assert_eq!(receipt.body.voucher.client, client.pubkey().to_bytes());
    assert_eq!(hex::encode(receipt.body.task_id), body["strata"]["task_id"]);

    // A busy node is passed over for the next one, streaming too; the
    // client's voucher to the new node starts from zero.
    idle.set(Behaviour::Busy);
    let (status, body) = post(&gw, CHAT, Some(KEY), chat(MODEL, 8)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by(&body), loaded.key.pubkey().to_string());
    assert_eq!(body["strata"]["voucher_cumulative"], loaded.price());
    let stream = serde_json::json!({
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8, "stream": true,
    });
    let resp = reqwest::Client::new()
        .post(format!("{}{CHAT}", gw.url()))
        .bearer_auth(KEY)
        .json(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let said: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, ANSWER);
    let last = chunks.last().unwrap();
    assert_eq!(served_by(last), loaded.key.pubkey().to_string());
    assert_eq!(last["strata"]["voucher_cumulative"], 2 * loaded.price());
    assert_eq!(loaded.started(), 2);

    // More than any node's stake can answer for: refused, no node asked.
    let got = post(&gw, CHAT, Some(KEY), chat(MODEL, 2_000)).await;
    assert_error(
        &got,
        400,
        "invalid_request_error",
        "invalid_request",
        "over the ceiling",
    );
    assert!(got.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("stake"));
    assert_eq!((idle.started(), loaded.started()), (1, 2));

    // Deposits that do not cover the task, or no escrow at all.
    let got = post(&gw, CHAT, Some(POOR), chat(MODEL, 8)).await;
    assert_error(
        &got,
        402,
        "insufficient_quota",
        "insufficient_quota",
        "deposit exhausted",
    );
    let got = post(&gw, CHAT, Some(NO_ESCROW), chat(MODEL, 8)).await;
    assert_error(
        &got,
        402,
        "insufficient_quota",
        "insufficient_quota",
        "no escrow",
    );

    // A receipt for another price than the task's is the node's fault.
    loaded.set(Behaviour::WrongReceipt);
    let got = post(&gw, CHAT, Some(KEY), chat(MODEL, 8)).await;
    assert_error(&got, 502, "server_error", "node_error", "a wrong receipt");

    let stats: Value = get_json(&format!("{}/v1/stats", gw.url())).await;
    assert_eq!(stats["nodes"], 2);
    assert_eq!(stats["tasks"], 3, "only completed, paid tasks count");
    assert_eq!(
        stats["tokens"],
        3 * u64::from(PROMPT_TOKENS + COMPLETION_TOKENS)
    );

    gw.shutdown().await;
    idle.shutdown().await;
    loaded.shutdown().await;
}
