//! The verifier's Prometheus metrics in the text exposition format (served
//! at `/metrics` by `strata-verifier --metrics <addr>`): audits by outcome
//! and the CPU they took, challenges opened, committee votes and verdicts,
//! and the p2p peers it is connected to and has banned. Read at each scrape
//! from the running verifier's own counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use strata_p2p::NodeStats;
use strata_service::metrics::Snapshot;

use crate::VerifierStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The exposition of `stats` and `p2p` now.
pub fn render(stats: &VerifierStats, p2p: &NodeStats) -> String {
    let mut m = Snapshot::new("strata_verifier");
    let audits = Family::<Outcome, Counter>::default();
    for (outcome, n) in [
        ("passed", stats.audits_passed),
        ("failed", stats.audits_failed),
        ("withheld", stats.audits_withheld),
        ("unknown_model", stats.audits_unknown_model),
    ] {
        audits.get_or_create(&Outcome { outcome }).inc_by(n);
    }
    m.registry().register(
        "audits",
        "Assigned audits finished, by outcome (failed and withheld are challenged)",
        audits,
    );
    m.counter_f64(
        "audit_cpu_seconds",
        "CPU time spent checking openings (audits and committee re-runs)",
        stats.audit_cpu_micros as f64 / 1e6,
    )
    .counter(
        "challenges_opened",
        "On-chain challenges this verifier opened",
        stats.challenges_opened,
    )
    .counter("votes_cast", "Committee votes signed", stats.votes_cast)
    .counter(
        "verdicts_submitted",
        "Verdicts submitted on-chain",
        stats.verdicts_submitted,
    )
    .gauge(
        "peers",
        "p2p peers connected now",
        p2p.connected_peers as u64,
    )
    .gauge(
        "peers_banned",
        "p2p peers banned for misbehaviour now",
        p2p.banned_peers as u64,
    );
    m.render()
}
