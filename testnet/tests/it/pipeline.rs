//! A local testnet whose model is served only by a pipeline: three nodes
//! each hold a third of the blocks and announce them; the gateway routes an
//! ordinary OpenAI chat completion (and a streamed one) over them, answers
//! with the whole model's text, and pays each hop for its part: three hop
//! receipts, each verified, linked, batched by the relayer and redeemed.
//! A streamed request whose client goes away after a few chunks is
//! cancelled at the first hop, which is paid for what ran, as a whole node
//! would be, and the client pays no more than that.

use std::collections::{HashMap, HashSet};
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
/// A prompt the model answers at length, and room for a long answer: the
/// client goes away long before it ends.
const LONG_PROMPT: &str = "Write a long story about a dragon who learns to bake bread.";
const LONG_MAX_TOKENS: u32 = 400;
/// Content chunks the client reads before it goes away.
const CHUNKS_BEFORE_LEAVING: usize = 3;

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

/// The gateway's `/metrics`, as text.
async fn metrics_text(http: &reqwest::Client, gateway: &str) -> String {
    let resp = http.get(format!("{gateway}/metrics")).send().await.unwrap();
    resp.text().await.unwrap()
}

/// The value of one series (`name{labels}` as the text format writes it)
/// of the gateway's `/metrics`; 0 when absent.
async fn metric(http: &reqwest::Client, gateway: &str, series: &str) -> f64 {
    metrics_text(http, gateway)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A JSON answer of the relayer.
async fn get(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

/// The gateway's task counters: every task it ended, by route and
/// outcome (`strata_gateway_tasks_total` lines).
async fn task_counts(http: &reqwest::Client, gateway: &str) -> Vec<(String, f64)> {
    metrics_text(http, gateway)
        .await
        .lines()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            series
                .starts_with("strata_gateway_tasks_total")
                .then_some(())?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Pipelined tasks the gateway finished and charged.
const PIPELINE_TASKS: &str = r#"strata_gateway_tasks_total{route="pipeline",outcome="ok"}"#;
const CHARGED: &str = "strata_gateway_charged_base_units_total";
const PROMPT_BILLED: &str = r#"strata_gateway_tokens_total{kind="prompt"}"#;
const COMPLETION_BILLED: &str = r#"strata_gateway_tokens_total{kind="completion"}"#;

/// The pipelined task (its hop parts' `task_id`) of each hop receipt listed
/// in an answer's `strata.hops`.
fn tasks_of(hops: &Value) -> HashSet<[u8; 32]> {
    hops.as_array()
        .expect("hop receipts")
        .iter()
        .map(|h| {
            let raw = hex::decode(h["receipt"].as_str().unwrap()).unwrap();
            let r = Receipt::decode_verified(&raw).unwrap();
            r.body.hop.unwrap().task_id
        })
        .collect()
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

    // Logprobs are not carried back over hops yet: refused, clearly.
    let mut with_logprobs = request(false);
    with_logprobs["logprobs"] = json!(true);
    let resp = http
        .post(&url)
        .bearer_auth(DEMO_API_KEY)
        .json(&with_logprobs)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let refusal: Value = resp.json().await.unwrap();
    assert!(
        refusal["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("logprobs") && m.contains("pipelined")),
        "{refusal}"
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
    let mut known = tasks_of(&body["strata"]["hops"]);
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
        if chunk["strata"]["hops"].is_array() {
            known.extend(tasks_of(&chunk["strata"]["hops"]));
        }
    }
    assert_eq!(streamed, expected);
    assert_eq!(known.len(), 2, "two pipelined tasks so far");

    // A streamed request whose client goes away after a few chunks.
    let gateway = t.net.gateway.url();
    let tasks_before = metric(&http, &gateway, PIPELINE_TASKS).await;
    let ended = |counts: Vec<(String, f64)>| counts.iter().map(|c| c.1).sum::<f64>();
    let ended_before = ended(task_counts(&http, &gateway).await);
    let charged_before = metric(&http, &gateway, CHARGED).await;
    let prompt_before = metric(&http, &gateway, PROMPT_BILLED).await;
    let completion_before = metric(&http, &gateway, COMPLETION_BILLED).await;
    {
        // Its own client, so that dropping the response closes the socket.
        let leaving = reqwest::Client::new();
        let mut resp = leaving
            .post(&url)
            .bearer_auth(DEMO_API_KEY)
            .json(&json!({
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": LONG_PROMPT}],
                "max_tokens": LONG_MAX_TOKENS,
                "temperature": 0,
                "stream": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut content_chunks = 0;
        while content_chunks < CHUNKS_BEFORE_LEAVING {
            let bytes = resp.chunk().await.unwrap().expect("the stream goes on");
            content_chunks += String::from_utf8_lossy(&bytes)
                .matches(r#""content":""#)
                .count();
        }
    }
    // The task ends (however it ends) and is counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ended(task_counts(&http, &gateway).await) <= ended_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway ends the abandoned task"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&http, &gateway, PIPELINE_TASKS).await,
        tasks_before + 1.0,
        "the abandoned task is settled: {:?}",
        task_counts(&http, &gateway).await
    );
    let charged = metric(&http, &gateway, CHARGED).await - charged_before;
    let prompt = (metric(&http, &gateway, PROMPT_BILLED).await - prompt_before) as u64;
    let completion = (metric(&http, &gateway, COMPLETION_BILLED).await - completion_before) as u64;
    assert!(
        completion < u64::from(LONG_MAX_TOKENS) / 4,
        "the task stopped soon after the client left ({completion} of {LONG_MAX_TOKENS} tokens)"
    );
    // Its hop receipts reach the relayer: as many as the gateway charged
    // for.
    let relayer = t.net.relayer.http_url().to_string();
    let cancelled = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let list = get(&http, &format!("{relayer}/v1/receipts?limit=100")).await;
            let list = list.as_array().expect("a list of receipts").clone();
            let mut by_task: HashMap<[u8; 32], Vec<Receipt>> = HashMap::new();
            for item in list {
                let id = item["task_id"].as_str().unwrap();
                let view = get(&http, &format!("{relayer}/v1/receipts/{id}")).await;
                let raw = hex::decode(view["raw"].as_str().unwrap()).unwrap();
                let r = Receipt::decode_verified(&raw).unwrap();
                let Some(hop) = r.body.hop else { continue };
                if !known.contains(&hop.task_id) {
                    by_task.entry(hop.task_id).or_default().push(r);
                }
            }
            assert!(by_task.len() <= 1, "one more pipelined task");
            let signed = |rs: &Vec<Receipt>| rs.iter().map(|r| r.body.price).sum::<u64>() as f64;
            if let Some(rs) = by_task
                .into_values()
                .next()
                .filter(|rs| signed(rs) == charged)
            {
                break rs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the abandoned task's hop receipts reach the relayer"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let billed = prompt + completion;
    let mut cells = 0;
    let mut paid = 0;
    for r in &cancelled {
        let hop = r.body.hop.unwrap();
        assert_eq!(hop.segment, 0, "no failover");
        assert!(
            u64::from(hop.positions) <= billed,
            "hop {} ran {} positions: the prompt and the tokens billed ({billed}) at most",
            hop.index,
            hop.positions
        );
        assert!(hop.cells <= billed * u64::from(hop.end - hop.start));
        cells += hop.cells;
        paid += r.body.price;
    }
    // The first hop is paid for every token that ran through it, as a
    // whole node would be for a cancelled task.
    let head = cancelled
        .iter()
        .find(|r| r.body.hop.is_some_and(|h| h.index == 0))
        .expect("the first hop is paid");
    assert_eq!(head.body.hop.unwrap().cells, billed * 10);
    // Every hop ran the same positions (the first hop waits for the token
    // on its way back before it stops), so all three link and are paid:
    // every block of every billed token once, what one node would bill.
    assert_eq!(cancelled.len(), 3, "every hop is paid for a cancelled task");
    assert_eq!(cells, billed * 30, "{cells} cells for {billed} tokens");
    assert!(
        paid <= billed * 10,
        "at most what one node would charge for what ran: {paid} for {billed} tokens"
    );
    eprintln!(
        "client left after {CHUNKS_BEFORE_LEAVING} chunks: {completion} of {LONG_MAX_TOKENS} tokens generated, {prompt} prompt, {} hops paid, {cells} cells, {paid} charged",
        cancelled.len()
    );

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
