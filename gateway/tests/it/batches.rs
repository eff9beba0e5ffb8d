//! Deferred jobs (`/v1/files`, `/v1/batches`) against a real local chain,
//! with fake nodes over real p2p: a batch whose price cap no idle node
//! meets waits while an interactive request is served at once; it survives
//! a gateway restart on the same state dir, and another while one of its
//! requests is running (that one runs again), then completes on the cheap
//! node, paid like any task, never beyond the node's room for batch work;
//! bad lines are reported per line while the rest run; and every refusal
//! is an OpenAI error object.

use std::time::Duration;

use serde_json::{json, Value};
use strata_chain::params::{self, TOKEN};
use strata_chain::Keypair;
use strata_gateway::RunningGateway;
use strata_test_utils::chain::LocalChain;

use crate::common::*;

const KEY: &str = "batch-key";
const OTHER: &str = "other-key";
const CHAT: &str = "/v1/chat/completions";
const ROLLOUTS: &str = "/v1/rollouts";
/// Nothing listens here: the refusals need no chain.
const NO_CHAIN: &str = "http://127.0.0.1:9";

/// `POST /v1/files` with a hand-made multipart body (what the official
/// clients send): `purpose` then `file`, either left out when `None`.
async fn upload(
    gw: &RunningGateway,
    key: &str,
    purpose: Option<&str>,
    file: Option<&[u8]>,
) -> (u16, Value) {
    let mut body = Vec::new();
    if let Some(p) = purpose {
        body.extend_from_slice(
            format!(
                "--B0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{p}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some(f) = file {
        body.extend_from_slice(b"--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(f);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--B0undary--\r\n");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/files", gw.url()))
        .bearer_auth(key)
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &RunningGateway, path: &str, key: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", gw.url()))
        .bearer_auth(key)
        .send()
        .await
        .expect("the gateway answers");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap_or_default().to_vec())
}

async fn get_json(gw: &RunningGateway, path: &str, key: &str) -> (u16, Value) {
    let (status, body) = get(gw, path, key).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn jsonl(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

fn request_line(custom_id: &str, content: &str) -> String {
    json!({
        "custom_id": custom_id, "method": "POST", "url": CHAT,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": content}],
                 "max_tokens": 4, "temperature": 0},
    })
    .to_string()
}

/// The file's lines as JSON.
async fn file_lines(gw: &RunningGateway, id: &str) -> Vec<Value> {
    let (status, bytes) = get(gw, &format!("/v1/files/{id}/content"), KEY).await;
    assert_eq!(status, 200);
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_idle_cheap_capacity_survives_a_restart_and_completes() {
    let chain = LocalChain::start(params::local()).await;
    let client = chain.client(10 * TOKEN).await;
    // The only node at first asks more than the batch's cap.
    let dear = FakeNode::start(5, 0, 4).await;
    chain
        .register_node(&dear.key, &dear.addrs, 100 * TOKEN)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = || vec![(KEY.to_string(), client.insecure_clone())];
    let gw = gateway(&chain.url, accounts(), dir.path(), &[&dear]).await;
    wait_for_nodes(&gw, 1).await;

    // Three good requests and three bad lines.
    let lines = vec![
        request_line("q1", "one"),
        "{\"custom_id\": \"broken".to_string(),
        request_line("q2", "two"),
        request_line("q1", "the same id again"),
        json!({"custom_id": "q9", "method": "POST", "url": CHAT,
               "body": {"model": MODEL, "messages": []}})
        .to_string(),
        request_line("q3", "three"),
    ];
    let (status, file) = upload(&gw, KEY, Some("batch"), Some(&jsonl(&lines))).await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    let (status, batch) = post(
        &gw,
        "/v1/batches",
        Some(KEY),
        json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h",
               "metadata": {"strata_max_price_per_token": "1"}})
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 6, "completed": 0, "failed": 3})
    );
    assert_eq!(batch["strata"]["max_price_per_token"], 1);
    let errors: Vec<(u64, &str)> = batch["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (2, "invalid_json"),
            (4, "duplicate_custom_id"),
            (5, "invalid_request")
        ]
    );
    let id = batch["id"].as_str().unwrap().to_string();

    // The batch queue is full and waiting; an interactive request is
    // served at once, and it is the only task any node has started.
    let (status, body) = post(&gw, CHAT, Some(KEY), chat(MODEL, 8)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(dear.started(), 1);
    // Batch work had its chances (the runner looks every 200 ms) and took
    // none: no node under the cap.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(dear.started(), 1);
    let (_, now) = get_json(&gw, &format!("/v1/batches/{id}"), KEY).await;
    assert_eq!(now["status"], "in_progress");
    assert_eq!(now["request_counts"]["completed"], 0);

    // The gateway restarts on the same state dir; a node under the cap
    // appears meanwhile, one that starts tasks and never finishes them: a
    // batch request is running there when the gateway stops again.
    gw.shutdown().await;
    let stall = FakeNode::start(1, 2, 4).await;
    stall.set(Behaviour::Stall);
    chain
        .register_node(&stall.key, &stall.addrs, 100 * TOKEN)
        .await;
    let gw = gateway(&chain.url, accounts(), dir.path(), &[&dear, &stall]).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while stall.started() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batch request started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
    assert_eq!(stall.started(), 1, "room for one batch request at a time");
    stall.shutdown().await;

    // Restarted again with an honest node under the cap, with two of its
    // four slots taken: room for one batch request at a time beside the
    // interactive reserve. The abandoned request, with no result recorded,
    // runs again.
    let cheap = FakeNode::start(1, 2, 4).await;
    chain
        .register_node(&cheap.key, &cheap.addrs, 100 * TOKEN)
        .await;
    let gw = gateway(&chain.url, accounts(), dir.path(), &[&dear, &cheap]).await;
    let (status, listed) = get_json(&gw, "/v1/batches", KEY).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let deadline = tokio::time::Instant::now() + SETTLE;
    let done = loop {
        let (_, b) = get_json(&gw, &format!("/v1/batches/{id}"), KEY).await;
        if b["status"] == "completed" {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch did not complete after the restart: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        done["request_counts"],
        json!({"total": 6, "completed": 3, "failed": 3})
    );
    // Only nodes under the cap ran batch work; every request has one
    // result, the abandoned one's from its second run.
    assert_eq!((cheap.started(), dear.started()), (3, 1));
    // Never more than the room beyond the reserve (the runner holds a
    // node's slot from the moment it picks it).
    assert_eq!(cheap.max_open(), 1);
    assert_eq!(done["strata"]["cost"], 3 * cheap.price());
    assert!(done["completed_at"].as_u64().is_some());

    let out = file_lines(&gw, done["output_file_id"].as_str().unwrap()).await;
    let mut ids: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["q1", "q2", "q3"]);
    for l in &out {
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        assert!(l["error"].is_null());
        let body = &l["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
        assert_eq!(body["strata"]["price"], cheap.price());
        assert!(body["strata"]["receipt"].as_str().is_some());
    }
    let err = file_lines(&gw, done["error_file_id"].as_str().unwrap()).await;
    let reported: Vec<(u64, &str)> = err
        .iter()
        .map(|l| {
            (
                l["error"]["line"].as_u64().unwrap(),
                l["error"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        vec![
            (2, "invalid_json"),
            (4, "duplicate_custom_id"),
            (5, "invalid_request")
        ]
    );
    assert_eq!(err[1]["custom_id"], "q1");
    // The output file is the key's like its input.
    let (status, meta) = get_json(
        &gw,
        &format!("/v1/files/{}", done["output_file_id"].as_str().unwrap()),
        KEY,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(meta["purpose"], "batch_output");
    // Finished is final: cancel is refused.
    let got = post(
        &gw,
        &format!("/v1/batches/{id}/cancel"),
        Some(KEY),
        Vec::new(),
    )
    .await;
    assert_error(
        &got,
        400,
        "invalid_request_error",
        "invalid_request",
        "cancel a completed batch",
    );

    gw.shutdown().await;
    for n in [dear, cheap] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_batches_refuse_bad_input_with_openai_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        NO_CHAIN,
        vec![(KEY.into(), Keypair::new()), (OTHER.into(), Keypair::new())],
        dir.path(),
        &[],
    )
    .await;
    let bad = ("invalid_request_error", "invalid_request");
    let good = jsonl(&[request_line("a", "hi")]);

    let got = upload(&gw, "nobody", Some("batch"), Some(&good)).await;
    assert_error(&got, 401, bad.0, "invalid_api_key", "unknown key");
    let got = upload(&gw, KEY, Some("batch"), None).await;
    assert_error(&got, 400, bad.0, bad.1, "no file");
    let got = upload(&gw, KEY, None, Some(&good)).await;
    assert_error(&got, 400, bad.0, bad.1, "no purpose");
    let got = upload(&gw, KEY, Some("fine-tune"), Some(&good)).await;
    assert_error(&got, 400, bad.0, bad.1, "wrong purpose");
    let got = upload(&gw, KEY, Some("batch"), Some(b"")).await;
    assert_error(&got, 400, bad.0, bad.1, "empty file");
    let huge = vec![b'x'; 8 * 1024 * 1024 + 1];
    let got = upload(&gw, KEY, Some("batch"), Some(&huge)).await;
    assert_error(&got, 413, bad.0, "request_too_large", "oversized file");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/files", gw.url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "not multipart");

    let (status, file) = upload(&gw, KEY, Some("batch"), Some(&good)).await;
    assert_eq!(status, 200, "{file}");
    let fid = file["id"].as_str().unwrap();
    let (status, content) = get(&gw, &format!("/v1/files/{fid}/content"), KEY).await;
    assert_eq!((status, content), (200, good.clone()));
    // Another key's file does not exist for this one.
    for path in [
        format!("/v1/files/{fid}"),
        format!("/v1/files/{fid}/content"),
    ] {
        let got = get_json(&gw, &path, OTHER).await;
        assert_error(&got, 404, bad.0, "not_found", "another key's file");
    }

    let create = |key: &'static str, body: Value| {
        let gw = &gw;
        async move { post(gw, "/v1/batches", Some(key), body.to_string().into_bytes()).await }
    };
    let with = |input: &str, endpoint: &str, window: &str| json!({"input_file_id": input, "endpoint": endpoint, "completion_window": window});
    let got = create(OTHER, with(fid, CHAT, "24h")).await;
    assert_error(
        &got,
        404,
        bad.0,
        "not_found",
        "a batch over another key's file",
    );
    let got = create(KEY, with("file-nope", CHAT, "24h")).await;
    assert_error(&got, 404, bad.0, "not_found", "no such file");
    let got = create(KEY, with(fid, "/v1/embeddings", "24h")).await;
    assert_error(&got, 400, bad.0, bad.1, "unknown endpoint");
    let got = create(KEY, with(fid, CHAT, "1h")).await;
    assert_error(&got, 400, bad.0, bad.1, "unknown completion window");
    let got = create(KEY, json!({"endpoint": CHAT})).await;
    assert_error(&got, 400, bad.0, bad.1, "no input file");
    let mut priced = with(fid, CHAT, "24h");
    priced["metadata"] = json!({"strata_max_price_per_token": "cheap"});
    let got = create(KEY, priced).await;
    assert_error(&got, 400, bad.0, bad.1, "a price cap that is no number");
    // Every line refused: the batch fails whole, each line reported.
    let (_, junk) = upload(&gw, KEY, Some("batch"), Some(b"not json\n{}\n")).await;
    let (status, failed) = create(KEY, with(junk["id"].as_str().unwrap(), CHAT, "24h")).await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"].as_array().unwrap().len(), 2);
    assert!(failed["error_file_id"].as_str().is_some());
    assert!(failed["output_file_id"].is_null());

    // A batch waits (no node), can be cancelled, and then is final.
    let (status, b) = create(KEY, with(fid, CHAT, "24h")).await;
    assert_eq!(status, 200, "{b}");
    let bid = b["id"].as_str().unwrap();
    let got = get_json(&gw, &format!("/v1/batches/{bid}"), OTHER).await;
    assert_error(&got, 404, bad.0, "not_found", "another key's batch");
    let (status, listed) = get_json(&gw, "/v1/batches", OTHER).await;
    assert_eq!(
        (status, listed["data"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, c) = post(&gw, &format!("/v1/batches/{bid}/cancel"), Some(KEY), vec![]).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(
        c["request_counts"],
        json!({"total": 1, "completed": 0, "failed": 1})
    );
    let (status, listed) = get_json(&gw, "/v1/batches?limit=1", KEY).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], bid);
    assert_eq!(listed["has_more"], true);
    gw.shutdown().await;
}

/// A rollout-job line (`url` `/v1/rollouts`) with `body`.
fn rollout_line(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": ROLLOUTS, "body": body}).to_string()
}

/// A rollout job's answer without what differs from one run to another of
/// the same job (ids, times, the node, what it was paid and its receipt).
fn rollout_shape(body: &Value) -> Value {
    let mut b = body.clone();
    for k in ["id", "created"] {
        b.as_object_mut().unwrap().remove(k);
    }
    b["usage"].as_object_mut().unwrap().remove("price");
    for r in b["results"].as_array_mut().unwrap() {
        for c in r["completions"].as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            for k in ["task_id", "node", "price", "voucher_cumulative", "receipt"] {
                c.remove(k);
            }
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_jobs_run_through_the_batch_queue() {
    let chain = LocalChain::start(params::local()).await;
    let client = chain.client(10 * TOKEN).await;
    // Only a node above the batch's cap at first: nothing runs.
    let dear = FakeNode::start(5, 0, 4).await;
    chain
        .register_node(&dear.key, &dear.addrs, 100 * TOKEN)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = || vec![(KEY.to_string(), client.insecure_clone())];
    let gw = gateway(&chain.url, accounts(), dir.path(), &[&dear]).await;
    wait_for_nodes(&gw, 1).await;

    let seeded = json!({
        "model": MODEL, "policy_version": 0,
        "task": {"name": "arithmetic", "seed": 1, "count": 2},
        "group_size": 2, "max_tokens": 8, "sampling": {"temperature": 1.0, "seed": 7},
    });
    let lines = vec![
        rollout_line("r1", seeded.clone()),
        rollout_line(
            "bad",
            json!({"model": MODEL, "policy_version": 0, "reward": "helpfulness",
                   "task": {"name": "arithmetic", "seed": 1, "count": 1}, "group_size": 2}),
        ),
        // No seed: one is drawn at create time and kept with the line.
        rollout_line(
            "r2",
            json!({"model": MODEL, "policy_version": "0", "reward": "format",
                   "prompts": [{"prompt": "Say hi."}], "group_size": 3, "max_tokens": 4}),
        ),
    ];
    let (status, file) = upload(&gw, KEY, Some("batch"), Some(&jsonl(&lines))).await;
    assert_eq!(status, 200, "{file}");
    // The endpoint must be the lines' own.
    let (status, refused) = post(
        &gw,
        "/v1/batches",
        Some(KEY),
        json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["request_counts"]["failed"], 3, "{refused}");
    let (status, batch) = post(
        &gw,
        "/v1/batches",
        Some(KEY),
        json!({"input_file_id": file["id"], "endpoint": ROLLOUTS, "completion_window": "24h",
               "metadata": {"strata_max_price_per_token": "1"}})
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["endpoint"], ROLLOUTS);
    assert_eq!(
        batch["request_counts"],
        json!({"total": 3, "completed": 0, "failed": 1})
    );
    let errors = batch["errors"]["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{batch}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["code"].as_str()),
        (Some(2), Some("invalid_request"))
    );
    let why = errors[0]["message"].as_str().unwrap();
    assert!(
        why.starts_with("line 2:") && why.contains("unknown reward function `helpfulness`"),
        "{why}"
    );
    let id = batch["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(dear.started(), 0, "no node under the cap yet");

    // Restarted on the same state dir with a node under the cap: the
    // accepted lines run there.
    gw.shutdown().await;
    let cheap = FakeNode::start(1, 0, 4).await;
    chain
        .register_node(&cheap.key, &cheap.addrs, 100 * TOKEN)
        .await;
    let gw = gateway(&chain.url, accounts(), dir.path(), &[&dear, &cheap]).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    let done = loop {
        let (_, b) = get_json(&gw, &format!("/v1/batches/{id}"), KEY).await;
        if b["status"] == "completed" {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollout batch did not complete: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 2, "failed": 1})
    );
    // 2 × 2 + 1 × 3 completions, each a paid task on the cheap node, one at
    // a time per line.
    assert_eq!((cheap.started(), dear.started()), (7, 0));
    assert!(cheap.max_open() <= 2, "{}", cheap.max_open());
    assert_eq!(done["strata"]["cost"], 7 * cheap.price());

    let out = file_lines(&gw, done["output_file_id"].as_str().unwrap()).await;
    let mut by_id: Vec<(&str, &Value)> = out
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap(), &l["response"]["body"]))
        .collect();
    by_id.sort_by_key(|(c, _)| *c);
    assert_eq!(
        by_id.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
    for l in &out {
        let (prompts, group) = if l["custom_id"] == "r1" {
            (2, 2)
        } else {
            (1, 3)
        };
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        assert!(l["error"].is_null());
        assert_eq!(l["response"]["request_id"], l["response"]["body"]["id"]);
        let body = &l["response"]["body"];
        assert_eq!(body["object"], "rollout", "{body}");
        assert_eq!(body["usage"]["completions"], prompts * group);
        assert_eq!(body["usage"]["price"], prompts * group * cheap.price());
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len() as u64, prompts, "{body}");
        for r in results {
            let cs = r["completions"].as_array().unwrap();
            assert_eq!(cs.len() as u64, group, "{body}");
            for c in cs {
                assert_eq!(c["text"], ANSWER);
                assert_eq!(
                    c["token_ids"],
                    json!([FAKE_TOKEN, FAKE_TOKEN + 1, FAKE_TOKEN + 2])
                );
                assert_eq!(
                    c["logprobs"],
                    json!([FAKE_LOGPROB, FAKE_LOGPROB, FAKE_LOGPROB])
                );
                assert!(c["reward"].as_f64().is_some(), "{c}");
                assert!(c["receipt"].as_str().is_some(), "{c}");
                assert_eq!(c["price"], cheap.price());
            }
        }
    }
    assert!(by_id[1].1["sampling"]["seed"].as_u64().is_some());
    let err = file_lines(&gw, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(err.len(), 1);
    assert_eq!(
        (
            err[0]["custom_id"].as_str(),
            err[0]["error"]["line"].as_u64()
        ),
        (Some("bad"), Some(2))
    );

    // The line's body is what `POST /v1/rollouts` answers for the same job.
    let (status, direct) = post(&gw, ROLLOUTS, Some(KEY), seeded.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{direct}");
    assert_eq!(rollout_shape(by_id[0].1), rollout_shape(&direct));

    gw.shutdown().await;
    for n in [dear, cheap] {
        n.shutdown().await;
    }
}
