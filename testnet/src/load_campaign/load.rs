//! The paying clients: each loops over OpenAI-style requests through the
//! gateway until the deadline, mixing chat and text completions, streaming
//! and not, short and long completions, and now and then walking away from
//! a stream half way. Every request's outcome is kept for the report and
//! the reconciliation.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What one request came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The gateway said it succeeded and named the task and its price.
    Served {
        /// Task id (hex).
        task_id: String,
        /// The price the client was told, base units.
        price: u64,
        /// Completion tokens.
        tokens: u64,
        /// Time to the first content (streams) or to the answer.
        first: Duration,
    },
    /// The client walked away from a stream after some content.
    Cancelled,
    /// Anything else, by class (`http 503`, `connect`, `stream cut`, ...).
    Failed(String),
}

/// One request and when it ran.
#[derive(Debug, Clone)]
pub struct Request {
    /// Index of the client that sent it.
    pub client: usize,
    /// Since the campaign's start.
    pub started: Duration,
    /// Wall time of the request.
    pub took: Duration,
    /// Whether it streamed.
    pub stream: bool,
    /// What came of it.
    pub outcome: Outcome,
}

/// How clients behave.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Gateway base URL.
    pub gateway: String,
    /// Model name.
    pub model: String,
    /// Completion lengths to draw from.
    pub lengths: Vec<u32>,
    /// Share of streams the client abandons after some content.
    pub cancel_share: f64,
    /// Longest a single request may take before it counts as a timeout.
    pub request_timeout: Duration,
}

const PROMPTS: &[&str] = &[
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "List three colours.",
    "Once upon a time",
    "Explain what a receipt is in one sentence.",
    "Count from one to five.",
];

/// Runs client `index` with API key `key` until `deadline` (at least one
/// request); returns its requests.
pub async fn client(
    index: usize,
    key: String,
    plan: ClientPlan,
    seed: u64,
    t0: Instant,
    deadline: Instant,
) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let http = reqwest::Client::builder()
        .timeout(plan.request_timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let mut done = Vec::new();
    // Spread the first requests over a second so 200 clients do not all
    // arrive in the same millisecond.
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
    loop {
        let stream = rng.random_bool(0.5);
        let chat = rng.random_bool(0.5);
        let max_tokens = plan.lengths[rng.random_range(0..plan.lengths.len())];
        let cancel_after =
            (stream && rng.random_bool(plan.cancel_share)).then(|| rng.random_range(1..=3usize));
        let prompt = PROMPTS[rng.random_range(0..PROMPTS.len())];
        let started = Instant::now();
        let outcome = one(
            &http,
            &plan,
            &key,
            chat,
            stream,
            max_tokens,
            prompt,
            cancel_after,
        )
        .await;
        let failed = matches!(outcome, Outcome::Failed(_));
        done.push(Request {
            client: index,
            started: started - t0,
            took: started.elapsed(),
            stream,
            outcome,
        });
        if Instant::now() >= deadline {
            return done;
        }
        if failed {
            // A dead gateway answers instantly: do not spin on it.
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn one(
    http: &reqwest::Client,
    plan: &ClientPlan,
    key: &str,
    chat: bool,
    stream: bool,
    max_tokens: u32,
    prompt: &str,
    cancel_after: Option<usize>,
) -> Outcome {
    let (path, mut body) = if chat {
        (
            "/v1/chat/completions",
            json!({"model": plan.model, "messages": [{"role": "user", "content": prompt}]}),
        )
    } else {
        (
            "/v1/completions",
            json!({"model": plan.model, "prompt": prompt}),
        )
    };
    body["max_tokens"] = json!(max_tokens);
    body["stream"] = json!(stream);
    let started = Instant::now();
    let resp = match http
        .post(format!("{}{path}", plan.gateway))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(transport_class(&e)),
    };
    let status = resp.status();
    if !status.is_success() {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return Outcome::Failed(format!(
            "http {}: {}",
            status.as_u16(),
            error_kind(body["error"]["message"].as_str().unwrap_or("?"))
        ));
    }
    if !stream {
        let v: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => return Outcome::Failed(transport_class(&e)),
        };
        return served(&v, started.elapsed())
            .unwrap_or_else(|| Outcome::Failed("answer without strata".into()));
    }
    read_stream(resp, started, cancel_after).await
}

/// Reads server-sent events until the final object (with `strata`), an
/// error object, the end, or `cancel_after` content chunks.
async fn read_stream(
    mut resp: reqwest::Response,
    started: Instant,
    cancel_after: Option<usize>,
) -> Outcome {
    let mut buf = String::new();
    let mut contents = 0usize;
    let mut first = None;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::Failed("stream cut".into()),
            Err(e) => return Outcome::Failed(transport_class(&e)),
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if data == "[DONE]" {
                return Outcome::Failed("stream ended without an outcome".into());
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                return Outcome::Failed("stream: bad json".into());
            };
            if v.get("error").is_some() {
                return Outcome::Failed("stream: task failed".into());
            }
            if let Some(o) = served(&v, first.unwrap_or_else(|| started.elapsed())) {
                return o;
            }
            let content = v["choices"][0]["delta"]["content"]
                .as_str()
                .or_else(|| v["choices"][0]["text"].as_str())
                .is_some_and(|s| !s.is_empty());
            if content {
                first.get_or_insert_with(|| started.elapsed());
                contents += 1;
                if cancel_after.is_some_and(|n| contents >= n) {
                    // Dropping the response closes the connection: the
                    // gateway cancels the task and bills what was generated.
                    return Outcome::Cancelled;
                }
            }
        }
    }
}

/// The outcome a final object names, if it is one.
fn served(v: &Value, first: Duration) -> Option<Outcome> {
    let s = v.get("strata")?;
    Some(Outcome::Served {
        task_id: s["task_id"].as_str()?.to_string(),
        price: s["price"].as_u64()?,
        tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        first,
    })
}

/// An error message without its particulars (numbers, keys), so that
/// errors group by kind.
fn error_kind(message: &str) -> String {
    let words: Vec<String> = message
        .split_whitespace()
        .take(12)
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "#".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ")
}

fn transport_class(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_decode() {
        "decode".into()
    } else {
        "transport".into()
    }
}
