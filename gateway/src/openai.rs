//! The OpenAI wire format the gateway speaks: request bodies it accepts and
//! the response, stream-chunk and error objects it returns. Unknown request
//! fields are ignored, as OpenAI-compatible servers do.
//!
//! Log-probabilities come back in OpenAI's two shapes ([`chat_logprobs`],
//! [`completion_logprobs`]): the node's numbers under the sampling policy,
//! tokens as their byte-level BPE pieces decoded to text.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strata_wire::task::{PositionLogprobs, TokenLogprob};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// `max_tokens` when the request gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 256;
/// Most `top_logprobs` a chat request may ask for (OpenAI's limit).
pub const MAX_CHAT_TOP_LOGPROBS: i64 = 20;
/// Most `logprobs` a completion request may ask for (the legacy API's limit).
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;

/// A chat message in a request.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text (the string form; content parts are not supported).
    pub content: String,
}

/// Stop sequences: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// Streaming options.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length fields shared by both endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    /// Model name.
    pub model: String,
    /// Most tokens to generate (`max_completion_tokens` is accepted too).
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// Temperature (default 1; 0 is greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Top-k (an extension many servers accept).
    pub top_k: Option<u32>,
    /// Seed (default random).
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Option<Stop>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Choices per request; only 1 is supported.
    pub n: Option<u32>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Return each generated token's log-probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`, also list this many most likely tokens per position
    /// (0 to [`MAX_CHAT_TOP_LOGPROBS`]). Signed, so that a negative value is
    /// refused by range rather than as malformed JSON.
    pub top_logprobs: Option<i64>,
    /// Everything else.
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt (a string).
    pub prompt: String,
    /// Return each generated token's log-probability and this many most
    /// likely tokens per position (0 to [`MAX_COMPLETION_LOGPROBS`], the
    /// legacy API's range).
    pub logprobs: Option<i64>,
    /// Everything else.
    #[serde(flatten)]
    pub common: Common,
}

/// An OpenAI-style error body.
pub fn error_body(message: &str, kind: &str, code: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// Token counts in OpenAI's shape.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

/// A log-probability as JSON: `-inf` (a token with no chance) has no JSON
/// number, so it is written as -9999, the floor OpenAI uses.
fn logprob_value(l: f32) -> f64 {
    if l.is_finite() {
        f64::from(l).min(0.0)
    } else {
        -9999.0
    }
}

/// A token's text: its piece's bytes as UTF-8 (a piece that splits a
/// character shows U+FFFD; `bytes` keeps it exact).
fn token_text(t: &TokenLogprob) -> String {
    String::from_utf8_lossy(&t.bytes).into_owned()
}

/// Chat's `choices[0].logprobs` for these positions:
/// `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`.
pub fn chat_logprobs(positions: &[PositionLogprobs]) -> Value {
    let one = |t: &TokenLogprob| json!({ "token": token_text(t), "logprob": logprob_value(t.logprob), "bytes": t.bytes });
    let content: Vec<Value> = positions
        .iter()
        .map(|p| {
            let mut v = one(&p.sampled);
            v["top_logprobs"] = p.top.iter().map(one).collect();
            v
        })
        .collect();
    json!({ "content": content })
}

/// The completions API's `choices[0].logprobs` for these positions:
/// `{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
/// "text_offset"}`, offsets in characters of the completion, starting at
/// `*offset` (advanced past these tokens, for the next streamed chunk).
pub fn completion_logprobs(positions: &[PositionLogprobs], offset: &mut usize) -> Value {
    let mut tokens = Vec::with_capacity(positions.len());
    let mut token_logprobs = Vec::with_capacity(positions.len());
    let mut top = Vec::with_capacity(positions.len());
    let mut text_offset = Vec::with_capacity(positions.len());
    for p in positions {
        let text = token_text(&p.sampled);
        text_offset.push(*offset);
        *offset += text.chars().count();
        tokens.push(text);
        token_logprobs.push(logprob_value(p.sampled.logprob));
        let mut alternatives = serde_json::Map::new();
        for t in &p.top {
            // Two pieces can read the same as text: keep the likelier (first).
            alternatives
                .entry(token_text(t))
                .or_insert_with(|| json!(logprob_value(t.logprob)));
        }
        top.push(Value::Object(alternatives));
    }
    json!({
        "tokens": tokens, "token_logprobs": token_logprobs,
        "top_logprobs": top, "text_offset": text_offset,
    })
}
