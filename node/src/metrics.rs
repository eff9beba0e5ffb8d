//! The node's Prometheus metrics in the text exposition format (served at
//! `/metrics` by `strata-node --metrics <addr>`): sequences running, serving
//! CPU time, vouchers accepted and what they paid, receipts waiting for the
//! relayer, a hop's bytes sent, and the p2p peers connected and banned. Read at each scrape from the running
//! node, so nothing is counted twice.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use strata_p2p::NodeStats;

use crate::{Hops, Service};

/// The exposition of the metrics of a node's task `service`, for a
/// pipeline hop its `hops` runtime, and its p2p layer's `peers`, now.
pub fn render(service: &Service, hops: Option<&Hops>, peers: &NodeStats) -> String {
    let mut registry = Registry::with_prefix("strata_node");
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: usize| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, g);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let active = hops.map_or(service.active(), |h| h.active());
    gauge(
        &mut registry,
        "sequences_active",
        "Sequences running now",
        active,
    );
    gauge(
        &mut registry,
        "receipts_pending",
        "Signed receipts not yet taken by the relayer (the outbox)",
        service.receipts_pending(),
    );
    let cpu = Counter::<f64>::default();
    cpu.inc_by(service.serving_cpu_micros() as f64 / 1e6);
    registry.register(
        "serving_cpu_seconds",
        "CPU time the engine spent in forward passes (whole-model tasks)",
        cpu,
    );
    let (accepted, charged) = service.payments();
    counter(
        &mut registry,
        "vouchers_accepted",
        "Vouchers accepted: tasks and hops paid",
        accepted,
    );
    counter(
        &mut registry,
        "charged_base_units",
        "Token base units those vouchers paid for",
        charged,
    );
    if let Some(h) = hops {
        counter(
            &mut registry,
            "hop_bytes_sent",
            "Hidden-state and token bytes sent to other hops",
            h.bytes_sent(),
        );
    }
    gauge(
        &mut registry,
        "peers",
        "p2p peers connected now",
        peers.connected_peers,
    );
    gauge(
        &mut registry,
        "peers_banned",
        "p2p peers banned for misbehaviour now",
        peers.banned_peers,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
