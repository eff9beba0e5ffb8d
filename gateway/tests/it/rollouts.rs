//! `POST /v1/rollouts` refusals, without a chain: every bad job (unknown
//! reward or task, group size out of range, a job over the completion
//! limit, a policy version no node holds, ...) is an OpenAI error
//! object with a clear message, and no node is asked to run anything.

use serde_json::{json, Value};
use strata_chain::Keypair;
use strata_wire::task::MAX_PROMPT_BYTES;

use crate::common::*;

const KEY: &str = "test-key";
/// Nothing listens here: the chain is out of reach.
const NO_CHAIN: &str = "http://127.0.0.1:9";
const ROLLOUTS: &str = "/v1/rollouts";

/// A valid job (two arithmetic prompts, groups of two) with `extra` fields
/// set over it (`null` removes one).
fn job(extra: Value) -> Vec<u8> {
    let mut body = json!({
        "model": MODEL, "policy_version": 0,
        "task": {"name": "arithmetic", "seed": 1, "count": 2},
        "group_size": 2, "max_tokens": 8,
        "sampling": {"temperature": 1.0, "seed": 7},
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollout_jobs_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = FakeNode::start(10, 0, 4).await;
    let gw = gateway(
        NO_CHAIN,
        vec![(KEY.into(), Keypair::new())],
        dir.path(),
        &[&node],
    )
    .await;
    wait_for_nodes(&gw, 1).await;

    let prompts = |n: usize, text: &str| json!(vec![json!({"prompt": text, "expected": "3"}); n]);
    let bad = (400, "invalid_request_error", "invalid_request");
    // (body, key, status, type, code, a part of the message, the case)
    type Case = (
        Vec<u8>,
        Option<&'static str>,
        (u16, &'static str, &'static str),
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            b"{\"model\": ".to_vec(),
            Some(KEY),
            bad,
            "invalid JSON",
            "malformed JSON",
        ),
        (
            job(json!({"group_size": null})),
            Some(KEY),
            bad,
            "group_size",
            "no group_size",
        ),
        (
            job(json!({"temperature": 0.5})),
            Some(KEY),
            bad,
            "unknown field",
            "a sampling field outside sampling",
        ),
        (
            job(json!({"reward": "helpfulness"})),
            Some(KEY),
            bad,
            "unknown reward function `helpfulness`",
            "unknown reward function",
        ),
        (
            job(json!({"task": {"name": "division", "seed": 1, "count": 2}})),
            Some(KEY),
            bad,
            "unknown task `division`",
            "unknown task",
        ),
        (
            job(json!({"task": null, "prompts": prompts(2, "1 + 2?")})),
            Some(KEY),
            bad,
            "reward is required",
            "explicit prompts without a reward",
        ),
        (
            job(json!({"prompts": prompts(2, "1 + 2?"), "reward": "arithmetic"})),
            Some(KEY),
            bad,
            "exactly one of task or prompts",
            "both task and prompts",
        ),
        (
            job(json!({"task": null})),
            Some(KEY),
            bad,
            "exactly one of task or prompts",
            "neither task nor prompts",
        ),
        (
            job(json!({"task": null, "prompts": [], "reward": "arithmetic"})),
            Some(KEY),
            bad,
            "must not be empty",
            "no prompts",
        ),
        (
            job(json!({"task": null, "prompts": prompts(1, ""), "reward": "arithmetic"})),
            Some(KEY),
            bad,
            "prompts[0].prompt is empty",
            "an empty prompt",
        ),
        (
            job(
                json!({"task": null, "prompts": [{"prompt": "1 + 2?", "expected": "three"}], "reward": "arithmetic"}),
            ),
            Some(KEY),
            bad,
            "decimal integer",
            "an arithmetic answer that is no integer",
        ),
        (
            job(json!({"group_size": 0})),
            Some(KEY),
            bad,
            "group_size must be between 1 and 16",
            "group_size 0",
        ),
        (
            job(json!({"group_size": 17})),
            Some(KEY),
            bad,
            "group_size must be between 1 and 16",
            "group_size 17",
        ),
        (
            job(json!({"group_size": -1})),
            Some(KEY),
            bad,
            "group_size must be between 1 and 16",
            "negative group_size",
        ),
        (
            job(json!({"task": {"name": "copy", "seed": 1, "count": 17}, "group_size": 16})),
            Some(KEY),
            bad,
            "272 completions; at most 256",
            "a task job over 256 completions",
        ),
        (
            job(json!({"task": null, "prompts": prompts(129, "1 + 2?"), "reward": "arithmetic"})),
            Some(KEY),
            bad,
            "258 completions; at most 256",
            "an explicit job over 256 completions",
        ),
        (
            job(json!({"task": {"name": "copy", "seed": 1, "count": 0}})),
            Some(KEY),
            bad,
            "task.count",
            "a task of no prompts",
        ),
        (
            job(json!({"policy_version": 1})),
            Some(KEY),
            (503, "server_error", "no_capacity"),
            "holds policy version 1 (versions served: [])",
            "a policy version no node holds",
        ),
        (
            job(json!({"policy_version": "3"})),
            Some(KEY),
            (503, "server_error", "no_capacity"),
            "holds policy version 3",
            "a policy version no node holds, as a string",
        ),
        (
            job(json!({"policy_version": "latest"})),
            Some(KEY),
            bad,
            "non-negative integer",
            "a policy version that is no number",
        ),
        (
            job(json!({"max_tokens": 0})),
            Some(KEY),
            bad,
            "max_tokens must be between 1 and 1024",
            "max_tokens 0",
        ),
        (
            job(json!({"max_tokens": 1025})),
            Some(KEY),
            bad,
            "max_tokens must be between 1 and 1024",
            "max_tokens over the limit",
        ),
        (
            job(json!({"sampling": {"temperature": 2.5}})),
            Some(KEY),
            bad,
            "temperature",
            "temperature above 2",
        ),
        (
            job(json!({"sampling": {"top_p": 0}})),
            Some(KEY),
            bad,
            "top_p",
            "top_p 0",
        ),
        (
            job(json!({})),
            None,
            (401, "invalid_request_error", "invalid_api_key"),
            "API key",
            "no API key",
        ),
        (
            job(json!({})),
            Some("nobody"),
            (401, "invalid_request_error", "invalid_api_key"),
            "API key",
            "unknown API key",
        ),
        (
            job(json!({"model": "gpt-17"})),
            Some(KEY),
            (404, "invalid_request_error", "model_not_found"),
            "gpt-17",
            "unknown model",
        ),
    ];
    for (body, key, (status, kind, code), message, what) in cases {
        let got = post(&gw, ROLLOUTS, key, body).await;
        assert_error(&got, status, kind, code, what);
        let m = got.1["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(message), "{what}: {m:?} should say {message:?}");
    }

    // A prompt over the task protocol's limit, in a body under the HTTP one.
    let long = "x".repeat(MAX_PROMPT_BYTES + 1);
    let body = job(json!({"task": null, "prompts": [{"prompt": long}], "reward": "format"}));
    let got = post(&gw, ROLLOUTS, Some(KEY), body).await;
    assert_error(
        &got,
        400,
        "invalid_request_error",
        "invalid_request",
        "a prompt over the limit",
    );

    // A body over the HTTP limit is refused before it is read.
    let got = post(&gw, ROLLOUTS, Some(KEY), vec![b' '; 600 * 1024]).await;
    assert_error(
        &got,
        413,
        "invalid_request_error",
        "request_too_large",
        "oversized body",
    );

    // A good job the chain cannot be read for: every completion is refused
    // as the chat API refuses one, and no node ran anything.
    let got = post(&gw, ROLLOUTS, Some(KEY), job(json!({}))).await;
    assert_error(&got, 503, "server_error", "chain_unavailable", "chain down");
    assert_eq!(node.started(), 0);

    gw.shutdown().await;
    node.shutdown().await;
}
