//! The gateway's Prometheus metrics, served at `GET /metrics` in the text
//! exposition format: HTTP answers by endpoint and status, tasks by route
//! and outcome, tokens and base units charged, task latency, tasks in
//! flight, the nodes the router knows, and its p2p peers and bans.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use strata_p2p::NodeStats;

use crate::runner::Outcome;
use crate::GatewayError;

/// Labels of an HTTP answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    endpoint: &'static str,
    status: u16,
}

/// Labels of a task that ran (or was refused by the runner).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    /// `whole` (one node) or `pipeline` (a route of hops).
    route: &'static str,
    /// `ok`, or the error code the client saw.
    outcome: &'static str,
}

/// Labels of billed tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    kind: &'static str,
}

/// Every metric of the gateway, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    tasks: Family<TaskLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    charged: Counter,
    task_seconds: Histogram,
    in_flight: Gauge,
    nodes: Gauge,
    peers: Gauge,
    peers_banned: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("strata_gateway");
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP answers to completion requests, by endpoint and status",
            http.clone(),
        );
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Tasks ended, by route (whole, pipeline) and outcome (ok or the error code)",
            tasks.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens billed, by kind (prompt, completion)",
            tokens.clone(),
        );
        let charged = Counter::default();
        registry.register(
            "charged_base_units",
            "Token base units charged to clients (sum of task prices)",
            charged.clone(),
        );
        // 50 ms to about 100 s.
        let task_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "task_seconds",
            "Time from a task's start to its verified receipt",
            task_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("tasks_in_flight", "Tasks running now", in_flight.clone());
        let nodes = Gauge::default();
        registry.register(
            "nodes",
            "Fresh nodes the router knows (whole and hops)",
            nodes.clone(),
        );
        let peers = Gauge::default();
        registry.register("peers", "p2p peers connected now", peers.clone());
        let peers_banned = Gauge::default();
        registry.register(
            "peers_banned",
            "p2p peers banned for misbehaviour now",
            peers_banned.clone(),
        );
        Self {
            registry,
            http,
            tasks,
            tokens,
            charged,
            task_seconds,
            in_flight,
            nodes,
            peers,
            peers_banned,
        }
    }
}

impl Metrics {
    /// Counts an HTTP answer of `endpoint`.
    pub fn http(&self, endpoint: &'static str, status: u16) {
        self.http
            .get_or_create(&HttpLabels { endpoint, status })
            .inc();
    }

    /// A task starts; the guard counts it in flight until dropped.
    pub fn task_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Counts a task's end: its outcome, and for a paid one its tokens,
    /// price and time.
    pub fn task_ended(&self, result: &Result<Outcome, GatewayError>) {
        let (route, outcome) = match result {
            Ok(o) if o.hops.is_empty() => ("whole", "ok"),
            Ok(_) => ("pipeline", "ok"),
            Err(e) => ("none", e.code()),
        };
        self.tasks
            .get_or_create(&TaskLabels { route, outcome })
            .inc();
        if let Ok(o) = result {
            let count = |kind, n: u32| {
                self.tokens
                    .get_or_create(&TokenLabels { kind })
                    .inc_by(u64::from(n));
            };
            count("prompt", o.usage.prompt_tokens);
            count("completion", o.usage.completion_tokens);
            self.charged.inc_by(o.usage.price);
            self.task_seconds.observe(o.total.as_secs_f64());
        }
    }

    /// The text exposition of every metric, with `nodes` fresh nodes and
    /// the p2p layer's `peers` figures.
    pub fn render(&self, nodes: usize, peers: &NodeStats) -> String {
        let set = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        set(&self.nodes, nodes);
        set(&self.peers, peers.connected_peers);
        set(&self.peers_banned, peers.banned_peers);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts a task in flight while it lives.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
