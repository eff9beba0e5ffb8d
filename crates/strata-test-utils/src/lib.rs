//! What Strata's integration tests share, so that each crate's `tests/it/`
//! holds only its own scenarios: waiting for a condition ([`wait_for`]) or
//! for an event on a stream ([`next_matching`]); with the `http` feature,
//! reading a service's JSON ([`get_json`]); with the `chain` feature, a local
//! chain bootstrapped the way tests need one ([`chain`]); another package's
//! binary, built if missing, to run as a process of its own
//! ([`workspace_binary`]).
//!
//! It is a dev-dependency only. Its helpers panic on failure, which is what a
//! test wants and what nothing else should do.
#![warn(missing_docs)]

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

mod binary;
#[cfg(feature = "chain")]
pub mod chain;

pub use binary::workspace_binary;

/// How often [`wait_for`] looks again: often enough that a test does not
/// idle, rarely enough that polling an RPC endpoint or a child process does
/// not load the machine.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Awaits `check` every [`POLL_INTERVAL`] until it returns true; panics with
/// "timed out waiting for {what}" once `timeout` has passed.
///
/// `check` is called afresh each time, so it may capture state it updates
/// (the last output seen, to print after the wait).
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Takes items from `stream` until one satisfies `pred` and returns it;
/// `None` if the stream ends or `timeout` passes first. Items read before
/// the match are dropped.
pub async fn next_matching<S, T>(
    stream: &mut S,
    timeout: Duration,
    mut pred: impl FnMut(&T) -> bool,
) -> Option<T>
where
    S: Stream<Item = T> + Unpin,
{
    tokio::time::timeout(timeout, async {
        while let Some(item) = stream.next().await {
            if pred(&item) {
                return Some(item);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// GETs `url` and decodes its JSON body; panics, naming the URL, if the
/// service does not answer or the body is not a `T`.
#[cfg(feature = "http")]
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not the JSON expected: {e}"))
}

/// A Prometheus scrape, read by a text-format parser.
#[cfg(feature = "http")]
pub struct Scrape {
    text: String,
    parsed: prometheus_parse::Scrape,
}

/// GETs a `/metrics` endpoint and parses it as the Prometheus text format;
/// panics, naming the URL, if it does not answer or does not parse.
#[cfg(feature = "http")]
pub async fn scrape(url: &str) -> Scrape {
    let text = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{url} is not the Prometheus text format: {e}\n{text}"));
    Scrape { text, parsed }
}

#[cfg(feature = "http")]
impl Scrape {
    /// The value of metric `name` (a counter's `_total` sample included;
    /// a histogram's count) among samples whose labels include `labels`;
    /// panics, showing the scrape, if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value;
        let total = format!("{name}_total");
        self.parsed
            .samples
            .iter()
            .find(|s| {
                (s.metric == name || s.metric == total)
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .and_then(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
                Value::Histogram(buckets) => buckets.last().map(|b| b.count),
                Value::Summary(_) => None,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in the scrape:\n{}", self.text))
    }

    /// Whether the scrape has metric family `name` (any of its samples).
    pub fn has(&self, name: &str) -> bool {
        self.parsed.samples.iter().any(|s| {
            s.metric == name
                || s.metric
                    .strip_prefix(name)
                    .is_some_and(|rest| ["_total", "_bucket", "_sum", "_count"].contains(&rest))
        })
    }
}

/// The metric families that the queries of the repository's Grafana
/// dashboard (`docs/grafana/strata.json`) name with `prefix`, without the
/// `_total`, `_bucket`, `_sum` and `_count` suffixes: what a service's
/// scrape must have for every panel to show something.
pub fn dashboard_metrics(prefix: &str) -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/strata.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(prefix))
        .map(|w| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_once_the_condition_holds() {
        let mut calls = 0;
        wait_for(Duration::from_secs(5), "the third call", || {
            calls += 1;
            let done = calls >= 3;
            async move { done }
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for nothing")]
    async fn wait_for_panics_naming_what_it_waited_for() {
        wait_for(Duration::from_millis(300), "nothing", || async { false }).await;
    }

    #[tokio::test]
    async fn next_matching_skips_to_the_match_or_gives_none() {
        let mut s = futures::stream::iter([1, 2, 3, 4]);
        assert_eq!(
            next_matching(&mut s, Duration::from_secs(1), |x| *x % 2 == 0).await,
            Some(2)
        );
        assert_eq!(
            next_matching(&mut s, Duration::from_secs(1), |x| *x > 10).await,
            None
        );
        let mut never = futures::stream::pending::<u8>();
        assert_eq!(
            next_matching(&mut never, Duration::from_millis(50), |_| true).await,
            None
        );
    }
}
