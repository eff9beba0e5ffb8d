//! The verifier's Prometheus metrics in the text exposition format (served
//! at `/metrics` by `strata-verifier --metrics <addr>`): audits by outcome
//! and the CPU they took, challenges opened, committee votes and verdicts,
//! and the p2p peers it is connected to and has banned. Read at each scrape
//! from the running verifier's own counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_p2p::NodeStats;

use crate::VerifierStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The exposition of `stats` and `p2p` now.
pub fn render(stats: &VerifierStats, p2p: &NodeStats) -> String {
    let mut registry = Registry::with_prefix("strata_verifier");
    let audits = Family::<Outcome, Counter>::default();
    for (outcome, n) in [
        ("passed", stats.audits_passed),
        ("failed", stats.audits_failed),
        ("withheld", stats.audits_withheld),
        ("unknown_model", stats.audits_unknown_model),
    ] {
        audits.get_or_create(&Outcome { outcome }).inc_by(n);
    }
    registry.register(
        "audits",
        "Assigned audits finished, by outcome (failed and withheld are challenged)",
        audits,
    );
    let cpu = Counter::<f64>::default();
    cpu.inc_by(stats.audit_cpu_micros as f64 / 1e6);
    registry.register(
        "audit_cpu_seconds",
        "CPU time spent checking openings (audits and committee re-runs)",
        cpu,
    );
    for (name, help, n) in [
        (
            "challenges_opened",
            "On-chain challenges this verifier opened",
            stats.challenges_opened,
        ),
        ("votes_cast", "Committee votes signed", stats.votes_cast),
        (
            "verdicts_submitted",
            "Verdicts submitted on-chain",
            stats.verdicts_submitted,
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        registry.register(name, help, c);
    }
    for (name, help, n) in [
        ("peers", "p2p peers connected now", p2p.connected_peers),
        (
            "peers_banned",
            "p2p peers banned for misbehaviour now",
            p2p.banned_peers,
        ),
    ] {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        registry.register(name, help, g);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
