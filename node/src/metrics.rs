//! The node's Prometheus metrics in the text exposition format (served at
//! `/metrics` by `strata-node --metrics <addr>`): sequences running, serving
//! CPU time, vouchers accepted and what they paid, receipts waiting for the
//! relayer, a hop's bytes sent, the p2p peers connected and banned, and the
//! policy versions fetched and refused. Read at each scrape from the running
//! node, so nothing is counted twice.

use strata_service::metrics::Snapshot;

use strata_p2p::NodeStats;

use crate::policy::{PolicyStore, Refusal};
use crate::{Hops, Service};

/// The exposition of the metrics of a node's task `service`, for a
/// pipeline hop its `hops` runtime, its p2p layer's `peers`, and when it
/// follows trainers its `policies`, now.
pub fn render(
    service: &Service,
    hops: Option<&Hops>,
    peers: &NodeStats,
    policies: Option<&PolicyStore>,
) -> String {
    let mut m = Snapshot::new("strata_node");
    let active = hops.map_or(service.active(), |h| h.active());
    let (accepted, charged) = service.payments();
    m.gauge("sequences_active", "Sequences running now", active as u64)
        .gauge(
            "receipts_pending",
            "Signed receipts not yet taken by the relayer (the outbox)",
            service.receipts_pending() as u64,
        )
        .counter_f64(
            "serving_cpu_seconds",
            "CPU time the engine spent in forward passes (whole-model tasks)",
            service.serving_cpu_micros() as f64 / 1e6,
        )
        .counter(
            "vouchers_accepted",
            "Vouchers accepted: tasks and hops paid",
            accepted,
        )
        .counter(
            "charged_base_units",
            "Token base units those vouchers paid for",
            charged,
        );
    if let Some(h) = hops {
        m.counter(
            "hop_bytes_sent",
            "Hidden-state and token bytes sent to other hops",
            h.bytes_sent(),
        );
    }
    m.gauge(
        "peers",
        "p2p peers connected now",
        peers.connected_peers as u64,
    )
    .gauge(
        "peers_banned",
        "p2p peers banned for misbehaviour now",
        peers.banned_peers as u64,
    );
    if let Some(p) = policies {
        let c = p.counters();
        m.gauge(
            "policy_latest_version",
            "Newest policy version held (0: none)",
            p.latest().map_or(0, |(v, _)| v),
        )
        .counter(
            "policy_versions_accepted",
            "Policy versions fetched, checked and held",
            c.accepted,
        )
        .counter(
            "policy_versions_evicted",
            "Policy versions evicted to keep the last few",
            c.evicted,
        );
        // One counter per reason: each says something different went wrong
        // (a replay is routine gossip, a digest mismatch is a broken trainer).
        for (kind, n) in Refusal::KINDS.iter().zip(c.refused) {
            m.counter(
                &format!("policy_refused_{kind}"),
                "Policy announcements or files refused for this reason",
                n,
            );
        }
    }
    m.render()
}
