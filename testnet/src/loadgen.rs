//! A load generator of paying clients: each client loops over chat
//! completions through the gateway's HTTP API, exactly as an application
//! would, and the report counts what came back paid.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Gateway base URL.
    pub gateway: String,
    /// One API key per concurrent client.
    pub api_keys: Vec<String>,
    /// Model name.
    pub model: String,
    /// Tokens per completion.
    pub max_tokens: u32,
    /// Tasks each client sends (`None`: run until `duration`).
    pub tasks_per_client: Option<usize>,
    /// Stop after this long.
    pub duration: Duration,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Completed, paid tasks.
    pub tasks: usize,
    /// Refused or failed requests.
    pub errors: usize,
    /// First error seen, if any.
    pub first_error: Option<String>,
    /// Completion tokens received.
    pub completion_tokens: u64,
    /// What the completed tasks cost, base units.
    pub price_total: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Per-task latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    /// Completed tasks per second.
    pub fn tasks_per_sec(&self) -> f64 {
        self.tasks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile (0..=100).
    pub fn percentile(&self, p: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[(self.latencies.len() - 1) * p.min(100) / 100]
    }
}

/// The prompt client `i` sends as its `n`-th request (from 1).
pub fn prompt(i: usize, n: usize) -> String {
    format!("Client {i}, request {n}: name a colour.")
}

/// Runs the clients and reports.
pub async fn run(options: &LoadOptions) -> LoadReport {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut handles = Vec::new();
    for (i, key) in options.api_keys.iter().enumerate() {
        let (http, key, o) = (http.clone(), key.clone(), options.clone());
        handles.push(tokio::spawn(async move {
            let mut r = LoadReport::default();
            let mut n = 0usize;
            while start.elapsed() < o.duration && o.tasks_per_client.is_none_or(|t| n < t) {
                n += 1;
                let body = json!({
                    "model": o.model,
                    "messages": [{"role": "user", "content": prompt(i, n)}],
                    "max_tokens": o.max_tokens,
                    "temperature": 0,
                });
                let t = Instant::now();
                let resp = http
                    .post(format!("{}/v1/chat/completions", o.gateway))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                let ok = match resp {
                    Ok(resp) if resp.status().is_success() => resp.json::<Value>().await.ok(),
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        r.first_error.get_or_insert(format!("{status}: {text}"));
                        None
                    }
                    Err(e) => {
                        r.first_error.get_or_insert(e.to_string());
                        None
                    }
                };
                match ok {
                    Some(v) => {
                        r.tasks += 1;
                        r.completion_tokens +=
                            v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                        r.price_total += v["strata"]["price"].as_u64().unwrap_or(0);
                        r.latencies.push(t.elapsed());
                    }
                    None => r.errors += 1,
                }
            }
            r
        }));
    }
    let mut total = LoadReport::default();
    for h in handles {
        if let Ok(r) = h.await {
            total.tasks += r.tasks;
            total.errors += r.errors;
            total.completion_tokens += r.completion_tokens;
            total.price_total += r.price_total;
            total.latencies.extend(r.latencies);
            if total.first_error.is_none() {
                total.first_error = r.first_error;
            }
        }
    }
    total.elapsed = start.elapsed();
    total.latencies.sort();
    total
}
