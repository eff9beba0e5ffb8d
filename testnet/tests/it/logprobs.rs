//! Log-probabilities end to end: a gateway and one node over real p2p with
//! the real model. A greedy chat asking for `logprobs` and `top_logprobs`
//! returns, per generated token, exactly the numbers the engine computes for
//! the same prompt (log-softmax of the raw logits), with the token's piece
//! as text and bytes; a streamed completion carries them chunk by chunk in
//! the legacy shape, and together they cover every generated token.

use serde_json::{json, Value};
use strata_engine::{ChatMessage, Engine, GenerateRequest, TokenLogprobs};
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;

const PROMPT: &str = "Name three colours.";
const MAX_TOKENS: usize = 6;
const TOP: u8 = 4;

/// One expected position: the token's bytes, its logprob, the alternatives'.
type Expected = (Vec<u8>, f64, Vec<(Vec<u8>, f64)>);

/// What the engine computes alone for `prompt` (greedy, `top` alternatives).
fn engine_logprobs(engine: &Engine, prompt: Vec<u32>, top: u8) -> Vec<Expected> {
    let req = GenerateRequest {
        stop_tokens: engine.end_of_turn_tokens(),
        logprobs: Some(top),
        ..GenerateRequest::greedy(prompt, MAX_TOKENS)
    };
    let done = strata_engine::generate(&engine.model, req).unwrap();
    assert_eq!(done.logprobs.len(), done.tokens.len());
    let piece = |t: u32| engine.tokenizer.decode_bytes(&[t], false).unwrap();
    done.logprobs
        .iter()
        .map(|lp: &TokenLogprobs| {
            (
                piece(lp.token),
                lp.logprob,
                lp.top.iter().map(|&(t, l)| (piece(t), l)).collect(),
            )
        })
        .collect()
}

/// The node sends f32: equal to the engine's f64 up to that rounding.
fn close(got: &Value, want: f64) -> bool {
    got.as_f64()
        .is_some_and(|g| (g - f64::from(want as f32)).abs() <= 1e-6)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_logprobs_are_the_engines() {
    let _turn = crate::one_at_a_time().await;
    let (chat_expected, text_expected) = tokio::task::spawn_blocking(|| {
        let path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
        let engine = Engine::load(&path).unwrap();
        let chat = engine
            .chat_prompt(&[ChatMessage::new("user", PROMPT)])
            .unwrap();
        let text = engine.tokenizer.encode(PROMPT, false).unwrap();
        (
            engine_logprobs(&engine, chat, TOP),
            engine_logprobs(&engine, text, 2),
        )
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.nodes = 1;
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let http = reqwest::Client::new();
    let gw = t.net.gateway.url();

    // Chat, not streamed.
    let resp = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS, "temperature": 0,
            "logprobs": true, "top_logprobs": TOP,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no logprobs: {body}"));
    assert_eq!(content.len(), chat_expected.len(), "{body}");
    assert_eq!(
        body["usage"]["completion_tokens"],
        chat_expected.len(),
        "one entry per generated token"
    );
    for (k, (got, (bytes, logprob, top))) in content.iter().zip(&chat_expected).enumerate() {
        assert_eq!(bytes_of(&got["bytes"]), *bytes, "position {k}");
        assert_eq!(got["token"], String::from_utf8_lossy(bytes).as_ref());
        assert!(
            close(&got["logprob"], *logprob),
            "position {k}: {got} vs {logprob}"
        );
        let alts = got["top_logprobs"].as_array().unwrap();
        assert_eq!(alts.len(), top.len(), "position {k}");
        for (a, (b, l)) in alts.iter().zip(top) {
            assert_eq!(bytes_of(&a["bytes"]), *b, "position {k}");
            assert!(close(&a["logprob"], *l), "position {k}: {a} vs {l}");
        }
        // Greedy: the sampled token is the most likely one.
        assert_eq!(alts[0]["logprob"], got["logprob"]);
    }

    // Completions, streamed: the legacy shape, chunk by chunk.
    let resp = http
        .post(format!("{gw}/v1/completions"))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({
            "model": MODEL_NAME, "prompt": PROMPT,
            "max_tokens": MAX_TOKENS, "temperature": 0,
            "logprobs": 2, "stream": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sse = resp.text().await.unwrap();
    let (mut tokens, mut values, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for data in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        let lp = &chunk["choices"][0]["logprobs"];
        if lp.is_null() {
            continue;
        }
        let list = |k: &str| lp[k].as_array().unwrap().clone();
        tokens.extend(list("tokens"));
        values.extend(list("token_logprobs"));
        tops.extend(list("top_logprobs"));
        offsets.extend(list("text_offset"));
    }
    assert_eq!(tokens.len(), text_expected.len(), "{sse}");
    assert_eq!(values.len(), tokens.len());
    assert_eq!(tops.len(), tokens.len());
    let mut at = 0;
    for (k, (bytes, logprob, top)) in text_expected.iter().enumerate() {
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(tokens[k], text.as_ref(), "position {k}");
        assert!(close(&values[k], *logprob), "position {k}");
        let alts = tops[k].as_object().unwrap();
        assert!(alts.len() <= 2 && !alts.is_empty());
        let (b, l) = &top[0];
        assert!(close(&alts[String::from_utf8_lossy(b).as_ref()], *l));
        assert_eq!(offsets[k], at, "offsets count characters");
        at += text.chars().count();
    }
    t.shutdown().await;
}
