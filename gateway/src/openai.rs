//! The OpenAI wire format the gateway speaks: request bodies it accepts and
//! the response, stream-chunk and error objects it returns. Unknown request
//! fields are ignored, as OpenAI-compatible servers do.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// `max_tokens` when the request gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

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
    /// Everything else.
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt (a string).
    pub prompt: String,
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
