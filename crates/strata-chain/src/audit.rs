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
    plan_range(config, batch, leaf, serving, nodes, 0..n_layers, n_outputs)
}

/// [`plan`] for a pipeline hop's receipt (version 3), which ran blocks
/// `layers` (= `a..b`) of the model: the layers to re-run are drawn inside
/// `[a, b)` (the same shuffle as [`plan`]'s over `b − a` blocks, shifted by
/// `a`), and `n_outputs` is the tokens the hop sampled (0 for every hop but
/// the last: only the last hop's sampling can be re-checked). Everything
/// else (audited or not, the verifiers) is decided as for any receipt: each
/// hop's receipt is its own leaf, drawn on its own. An empty or reversed
/// range plans no layers.
pub fn plan_range(
    config: &Config,
    batch: &Batch,
    leaf: &[u8; 32],
    serving: &Pubkey,
    nodes: &[Node],
    layers: std::ops::Range<u32>,
    n_outputs: u32,
) -> Option<AuditPlan> {
    if batch.audit_seed == [0; 32] {
        return None;
    }
    let p = &config.params;
    let draw = audit::task_draw(&batch.audit_seed, leaf);
    let candidates = eligible_verifiers(nodes, p.min_stake, batch.posted_slot, serving);
    let span = layers.end.saturating_sub(layers.start);
    Some(AuditPlan {
        draw,
        audited: audit::is_audited(&draw, p.audit_rate_bps),
        verifiers: audit::pick_verifiers(&draw, &candidates)
            .into_iter()
            .map(Pubkey::from)
            .collect(),
        // The start is added after the draw, so a whole-model plan (start 0)
        // is exactly what it always was.
        layers: audit::layers(&draw, span, u32::from(p.audit_layers))
            .into_iter()
            .map(|l| layers.start + l)
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(audit_layers: u8, audit_positions: u8) -> Config {
        let mut params = crate::params::local();
        params.audit_layers = audit_layers;
        params.audit_positions = audit_positions;
        params.audit_rate_bps = 10_000;
        Config {
            version: 1,
            bump: 255,
            vault_bump: 255,
            admin: Pubkey::new_unique(),
            reward_authority: Pubkey::new_unique(),
            mint: Pubkey::new_unique(),
            vault: Pubkey::new_unique(),
            params,
            genesis_ts: 0,
            next_batch_id: 1,
            last_reward_epoch: -1,
            total_stake: 0,
            total_verifier_stake: 0,
            total_escrow: 0,
            reward_pool: 0,
            bonds_held: 0,
            total_tasks: 0,
            total_work_units: 0,
            epoch_origin_ts: 0,
            epoch_origin: 0,
            reserved: [0; 48],
        }
    }

    fn batch(seed: u8) -> Batch {
        Batch {
            version: 1,
            bump: 255,
            id: 0,
            relayer: Pubkey::new_unique(),
            epoch: 0,
            root: [1; 32],
            task_count: 1,
            work_units: 0,
            posted_at: 0,
            posted_slot: 10,
            seed_slot: 14,
            audit_seed: [seed; 32],
            open_challenges: 0,
            reserved: [0; 12],
        }
    }

    fn leaf(i: u32) -> [u8; 32] {
        let mut l = [7u8; 32];
        l[..4].copy_from_slice(&i.to_le_bytes());
        l
    }

    #[test]
    fn whole_model_plans_are_what_they_always_were() {
        let (c, b, node) = (config(3, 4), batch(9), Pubkey::new_unique());
        for i in 0..200 {
            let p = plan(&c, &b, &leaf(i), &node, &[], 30, 8).unwrap();
            // The formula before hop receipts existed, spelled out.
            let draw = audit::task_draw(&b.audit_seed, &leaf(i));
            assert_eq!(p.draw, draw);
            assert_eq!(p.layers, audit::layers(&draw, 30, 3));
            assert_eq!(p.steps, audit::positions(&draw, 8, 4));
            assert_eq!(plan_range(&c, &b, &leaf(i), &node, &[], 0..30, 8), Some(p));
        }
        assert_eq!(plan(&c, &batch(0), &leaf(0), &node, &[], 30, 8), None);
    }

    #[test]
    fn hop_plans_draw_inside_their_blocks() {
        let (c, b, node) = (config(3, 4), batch(9), Pubkey::new_unique());
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..300 {
            let p = plan_range(&c, &b, &leaf(i), &node, &[], 10..20, 0).unwrap();
            assert_eq!(p.layers.len(), 3);
            assert!(p.layers.iter().all(|l| (10..20).contains(l)), "{p:?}");
            assert!(p.layers.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            // A hop that did not sample has no steps to re-check.
            assert!(p.steps.is_empty());
            seen.extend(p.layers);
        }
        // Every block of the range gets drawn, and nothing outside it.
        assert_eq!(seen, (10..20).collect());
        // A short last hop: every block, and steps among its sampled tokens.
        let p = plan_range(&c, &b, &leaf(1), &node, &[], 28..30, 5).unwrap();
        assert_eq!(p.layers, vec![28, 29]);
        assert_eq!(p.steps.len(), 4);
        assert!(p.steps.iter().all(|&s| s < 5));
        // A degenerate range plans nothing rather than panicking.
        let (start, end) = (20, 10);
        let p = plan_range(&c, &b, &leaf(1), &node, &[], start..end, 0).unwrap();
        assert!(p.layers.is_empty());
    }
}
