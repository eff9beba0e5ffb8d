//! A local testnet whose model is served only by a pipeline: three nodes
//! each hold a third of the blocks and announce them; the gateway routes an
//! ordinary OpenAI chat completion (and a streamed one) over them, answers
//! with the whole model's text, and pays each hop for its part: three hop
//! receipts, each verified, linked, batched by the relayer and redeemed.

use std::time::Duration;

use serde_json::{json, Value};
use strata_chain::{pda, Signer};
use strata_engine::{ChatMessage, Engine, GenerateRequest};
use strata_test_utils::wait_for;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;
use strata_wire::Receipt;

const PROMPT: &str = "Name three colours.";
const MAX_TOKENS: usize = 12;

/// The whole model's greedy text for the prompt, as a whole-model node
/// would answer it.
fn whole_model_text() -> String {
    let path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let engine = Engine::load(&path).unwrap();
    let prompt = engine
        .chat_prompt(&[ChatMessage::new("user", PROMPT)])
        .unwrap();
    let req = GenerateRequest {
        stop_tokens: engine.end_of_turn_tokens(),
        ..GenerateRequest::greedy(prompt, MAX_TOKENS)
    };
    let tokens = strata_engine::generate(&engine.model, req).unwrap().tokens;
    let bytes = engine.tokenizer.decode_bytes(&tokens, true).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn request(stream: bool) -> Value {
    json!({
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_and_pays_a_pipeline_of_three_hops() {
    let _turn = crate::one_at_a_time().await;
    let expected = tokio::task::spawn_blocking(whole_model_text).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.network.pipeline = vec![0..10, 10..20, 20..30];
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", t.net.gateway.url());

    let resp = http
        .post(&url)
        .bearer_auth(DEMO_API_KEY)
        .json(&request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], expected, "{body}");
    let hops = body["strata"]["hops"].as_array().expect("hop receipts");
    assert_eq!(hops.len(), 3, "{body}");
    let receipts: Vec<Receipt> = hops
        .iter()
        .map(|h| {
            let raw = hex::decode(h["receipt"].as_str().unwrap()).unwrap();
            Receipt::decode_verified(&raw).unwrap()
        })
        .collect();
    let nodes: Vec<[u8; 32]> = t.keys.nodes.iter().map(|k| k.pubkey().to_bytes()).collect();
    let mut total = 0;
    for (k, r) in receipts.iter().enumerate() {
        let hop = r.body.hop.unwrap();
        assert_eq!((hop.index, hop.count), (k as u8, 3));
        assert_eq!(
            r.body.node, nodes[k],
            "hop {k} is the node holding its blocks"
        );
        if k > 0 {
            let prev = receipts[k - 1].body.hop.unwrap();
            assert_eq!(
                prev.output_states,
                hop.input_states,
                "hops {k} and {} link",
                k - 1
            );
        }
        total += r.body.price;
    }
    let usage = &body["usage"];
    let billed =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(body["strata"]["price"], total);
    assert!(
        total <= billed * 10 && total + 3 > billed * 10,
        "three hops cost what one node would, up to rounding: {total} for {billed} tokens"
    );

    // Streamed: the same text, piece by piece.
    let resp = http
        .post(&url)
        .bearer_auth(DEMO_API_KEY)
        .json(&request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sse = resp.text().await.unwrap();
    let mut streamed = String::new();
    for line in sse.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(t);
        }
    }
    assert_eq!(streamed, expected);

    // The relayer redeems every hop's voucher.
    let client = t.keys.client.pubkey();
    for r in &receipts {
        let channel = pda::channel(&client, &strata_chain::Pubkey::from(r.body.node));
        let rpc = &t.rpc;
        wait_for(
            Duration::from_secs(60),
            "the hop's voucher is redeemed",
            || async move {
                let c: Option<strata_chain::accounts::Channel> =
                    rpc.account(&channel, "channel").await.unwrap();
                c.is_some_and(|c| c.redeemed > 0)
            },
        )
        .await;
    }
    t.shutdown().await;
}
