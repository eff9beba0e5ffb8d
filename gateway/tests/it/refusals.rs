//! The HTTP layer's refusals, without a chain: every malformed, unpaid or
//! out-of-range request gets an OpenAI error object with a fitting status,
//! before any node or the chain is asked.

use serde_json::json;
use strata_chain::Keypair;
use strata_test_utils::get_json;

use crate::common::*;

const KEY: &str = "test-key";
/// Nothing listens here: the chain is out of reach.
const NO_CHAIN: &str = "http://127.0.0.1:9";

/// One refusal: path, API key, body, then the status, OpenAI error type and
/// code expected, and what the case is.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    (&'static str, &'static str),
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_openai_errors_with_the_right_status() {
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

    let health = reqwest::get(format!("{}/health", gw.url())).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let models: serde_json::Value = get_json(&format!("{}/v1/models", gw.url())).await;
    assert_eq!(models["data"][0]["id"], MODEL);

    const CHAT: &str = "/v1/chat/completions";
    const TEXT: &str = "/v1/completions";
    let with = |extra: serde_json::Value| {
        let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    let bad_request = ("invalid_request_error", "invalid_request");
    let cases: Vec<Case> = vec![
        (
            CHAT,
            Some(KEY),
            b"{\"model\": ".to_vec(),
            400,
            bad_request,
            "malformed JSON",
        ),
        (
            CHAT,
            Some(KEY),
            b"[1, 2]".to_vec(),
            400,
            bad_request,
            "not an object",
        ),
        (
            CHAT,
            Some(KEY),
            json!({"model": MODEL}).to_string().into_bytes(),
            400,
            bad_request,
            "no messages",
        ),
        (
            CHAT,
            Some(KEY),
            json!({"model": MODEL, "messages": []})
                .to_string()
                .into_bytes(),
            400,
            bad_request,
            "empty messages",
        ),
        (
            TEXT,
            Some(KEY),
            json!({"model": MODEL, "prompt": ""})
                .to_string()
                .into_bytes(),
            400,
            bad_request,
            "empty prompt",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"max_tokens": 0})),
            400,
            bad_request,
            "max_tokens 0",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"max_tokens": -1})),
            400,
            bad_request,
            "negative max_tokens",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"temperature": 2.5})),
            400,
            bad_request,
            "temperature above 2",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"temperature": -0.1})),
            400,
            bad_request,
            "negative temperature",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"top_p": 0})),
            400,
            bad_request,
            "top_p 0",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"top_p": 1.5})),
            400,
            bad_request,
            "top_p above 1",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"n": 2})),
            400,
            bad_request,
            "n = 2",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            bad_request,
            "five stop strings",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"stop": ""})),
            400,
            bad_request,
            "an empty stop string",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"stop": "x".repeat(65)})),
            400,
            bad_request,
            "a 65-byte stop string",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"stream": true, "top_p": 0})),
            400,
            bad_request,
            "out of range, streaming",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"logprobs": true, "top_logprobs": 21})),
            400,
            bad_request,
            "top_logprobs above OpenAI's 20",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"logprobs": true, "top_logprobs": -1})),
            400,
            bad_request,
            "negative top_logprobs",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"top_logprobs": 3})),
            400,
            bad_request,
            "top_logprobs without logprobs",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"logprobs": "yes"})),
            400,
            bad_request,
            "logprobs not a boolean",
        ),
        (
            TEXT,
            Some(KEY),
            json!({"model": MODEL, "prompt": "x", "logprobs": 6})
                .to_string()
                .into_bytes(),
            400,
            bad_request,
            "completions logprobs above the legacy 5",
        ),
        (
            TEXT,
            Some(KEY),
            json!({"model": MODEL, "prompt": "x", "logprobs": -1, "stream": true})
                .to_string()
                .into_bytes(),
            400,
            bad_request,
            "negative completions logprobs, streaming",
        ),
        (
            CHAT,
            None,
            with(json!({})),
            401,
            ("invalid_request_error", "invalid_api_key"),
            "no API key",
        ),
        (
            CHAT,
            Some("not-a-key"),
            with(json!({})),
            401,
            ("invalid_request_error", "invalid_api_key"),
            "unknown API key",
        ),
        (
            CHAT,
            Some("not-a-key"),
            with(json!({"stream": true})),
            401,
            ("invalid_request_error", "invalid_api_key"),
            "unknown API key, streaming",
        ),
        (
            TEXT,
            None,
            b"{".to_vec(),
            401,
            ("invalid_request_error", "invalid_api_key"),
            "a missing key is refused before the body is read",
        ),
        (
            CHAT,
            Some(KEY),
            with(json!({"model": "gpt-17"})),
            404,
            ("invalid_request_error", "model_not_found"),
            "unknown model",
        ),
        (
            TEXT,
            Some(KEY),
            json!({"model": "gpt-17", "prompt": "x"})
                .to_string()
                .into_bytes(),
            404,
            ("invalid_request_error", "model_not_found"),
            "unknown model, completions",
        ),
    ];
    for (path, key, body, status, (kind, code), what) in cases {
        let got = post(&gw, path, key, body).await;
        assert_error(&got, status, kind, code, what);
    }

    // A body over the limit is refused before it is read or parsed.
    let got = post(&gw, CHAT, Some(KEY), vec![b' '; 600 * 1024]).await;
    assert_error(
        &got,
        413,
        "invalid_request_error",
        "request_too_large",
        "oversized body",
    );

    // A well-formed request the chain cannot be read for: unavailable, to
    // retry later (the load campaign's RPC outage), and the node was never
    // asked to run anything.
    let got = post(&gw, CHAT, Some(KEY), chat(MODEL, 8)).await;
    assert_error(&got, 503, "server_error", "chain_unavailable", "chain down");
    // With when to come back.
    let resp = reqwest::Client::new()
        .post(format!("{}{CHAT}", gw.url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat(MODEL, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(node.started(), 0);

    gw.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_node_serving_there_is_no_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        NO_CHAIN,
        vec![(KEY.into(), Keypair::new())],
        dir.path(),
        &[],
    )
    .await;
    let models: serde_json::Value = get_json(&format!("{}/v1/models", gw.url())).await;
    assert_eq!(models["data"], json!([]));
    for stream in [false, true] {
        let body = json!({"model": MODEL, "prompt": "x", "stream": stream})
            .to_string()
            .into_bytes();
        let got = post(&gw, "/v1/completions", Some(KEY), body).await;
        assert_error(&got, 503, "server_error", "no_capacity", "no node yet");
    }
    gw.shutdown().await;
}
