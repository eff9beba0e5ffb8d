//! Audit assignments and committees from on-chain accounts: the glue between
//! the program's records (Config, Batch, Node, Challenge) and the pure rules
//! of `strata_primitives::audit` and `sortition`, shared by the node (which
//! answers openings only to those the rules name), the verifier and the
//! explorer.

use strata_primitives::audit::{self, Candidate};
use strata_primitives::sortition;

use crate::accounts::{Batch, Challenge, Config, Node};
use crate::Pubkey;

/// What the audit rules say about one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPlan {
    /// The receipt's draw (everything below follows from it).
    pub draw: [u8; 32],
    /// Whether the receipt is audited at the configured rate.
    pub audited: bool,
    /// The assigned verifiers: one, or two for a cross-checked audit (empty
    /// when no verifier is eligible).
    pub verifiers: Vec<Pubkey>,
    /// Layers to re-run.
    pub layers: Vec<u32>,
    /// Generated steps whose sampling is re-checked.
    pub steps: Vec<u32>,
}

/// Verifiers that may audit receipts of a batch posted at `posted_slot`:
/// verifier role, at least the minimum stake, weight in place before the
/// batch was posted, never the serving node; sorted by key.
pub fn eligible_verifiers(
    nodes: &[Node],
    min_stake: u64,
    posted_slot: u64,
    serving: &Pubkey,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = nodes
        .iter()
        .filter(|n| n.operator != *serving && n.is_eligible_verifier(min_stake, posted_slot))
        .map(|n| Candidate {
            key: n.operator.to_bytes(),
            stake: n.verifier_stake(),
        })
        .collect();
    out.sort_by_key(|c| c.key);
    out
}

/// The plan for the receipt with `leaf` in `batch`, served by `serving`,
/// for a model of `n_layers` blocks and a task of `n_outputs` generated
/// tokens; `None` until the batch's audit seed is drawn.
pub fn plan(
    config: &Config,
    batch: &Batch,
    leaf: &[u8; 32],
    serving: &Pubkey,
    nodes: &[Node],
    n_layers: u32,
    n_outputs: u32,
) -> Option<AuditPlan> {
    if batch.audit_seed == [0; 32] {
        return None;
    }
    let p = &config.params;
    let draw = audit::task_draw(&batch.audit_seed, leaf);
    let candidates = eligible_verifiers(nodes, p.min_stake, batch.posted_slot, serving);
    Some(AuditPlan {
        draw,
        audited: audit::is_audited(&draw, p.audit_rate_bps),
        verifiers: audit::pick_verifiers(&draw, &candidates)
            .into_iter()
            .map(Pubkey::from)
            .collect(),
        layers: audit::layers(&draw, n_layers, u32::from(p.audit_layers)),
        steps: audit::positions(&draw, n_outputs, u32::from(p.audit_positions)),
    })
}

/// The members of `challenge`'s committee among `nodes` whose votes the
/// program would count: drawn, selected, eligible, not the accused.
pub fn committee(challenge: &Challenge, nodes: &[Node], min_stake: u64) -> Vec<Pubkey> {
    if challenge.seed == [0; 32] {
        return Vec::new();
    }
    nodes
        .iter()
        .filter(|n| {
            n.operator != challenge.node
                && n.is_eligible_verifier(min_stake, challenge.opened_slot)
                && sortition::is_selected(
                    &challenge.seed,
                    n.operator.as_array(),
                    n.verifier_stake(),
                    challenge.total_verifier_stake,
                    challenge.terms.committee_size,
                )
        })
        .map(|n| n.operator)
        .collect()
}
