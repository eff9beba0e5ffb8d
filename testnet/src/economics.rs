//! Why cheating does not pay, simulated: an honest node and a cheating node
//! serve the same stream of tasks under the protocol's real parameters and
//! the real audit rules (`strata_primitives::audit`: which receipts are
//! audited, which layers are re-run, which steps are re-sampled), and the
//! cheater is slashed whenever an audit of one of its tasks re-runs a layer
//! it skipped or a step it faked. The program prints both balances.
//!
//! What is modelled: the node's income per task (the client's price and the
//! testnet reward per work unit), its compute cost, what each cheating mode
//! saves, the slash on detection (with the challenger's share, which a
//! cheater could recover by challenging itself under another key), and the
//! stake a slashed node must top up to keep serving. What is not: transaction
//! fees, bonds (returned to an honest challenger) and verifier pay (from the
//! reward pool, not from the node).

use strata_chain::ConfigParams;
use strata_primitives::audit;

/// What the simulation assumes beyond the protocol's parameters.
#[derive(Debug, Clone)]
pub struct Economy {
    /// Protocol parameters (audit rate, layers per audit, slash, ...).
    pub params: ConfigParams,
    /// Tasks each node serves.
    pub tasks: u64,
    /// Tokens (prompt + completion) per task.
    pub tokens_per_task: u64,
    /// Generated tokens per task (sampling steps an audit can re-check).
    pub outputs_per_task: u32,
    /// Layers of the model.
    pub n_layers: u32,
    /// Price the client pays per token, base units.
    pub price_per_token: u64,
    /// Reward per work unit from the reward pool, base units.
    pub reward_per_token: u64,
    /// The node's compute cost as a share of its price, basis points.
    pub cost_bps: u64,
    /// Stake each node holds (topped back up after a slash), base units.
    pub stake: u64,
}

/// A cheating strategy as the simulation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Strategy {
    /// Name, for the table.
    pub name: &'static str,
    /// Share of the compute cost it saves, basis points.
    pub saves_bps: u64,
    /// Which layers it fakes (an audit re-running one of them catches it).
    pub faked_layer: fn(u32, u32) -> bool,
    /// Whether every sampled step is faked (an audit re-checking any catches it).
    pub fakes_sampling: bool,
    /// Whether it is caught by any audit at all (wrong root, withheld openings).
    pub caught_by_any_audit: bool,
}

/// The strategies of the testnet's cheating modes, with what each saves.
pub fn strategies() -> Vec<Strategy> {
    vec![
        Strategy {
            name: "skip-layers",
            saves_bps: 5_000,
            faked_layer: |l, _| l % 2 == 1,
            fakes_sampling: false,
            caught_by_any_audit: false,
        },
        Strategy {
            name: "truncated-model",
            saves_bps: 5_000,
            faked_layer: |l, n| l >= n / 2,
            fakes_sampling: false,
            caught_by_any_audit: false,
        },
        Strategy {
            name: "noise",
            saves_bps: 2_000,
            faked_layer: |_, _| true,
            fakes_sampling: false,
            caught_by_any_audit: false,
        },
        Strategy {
            name: "junk-tokens",
            saves_bps: 9_000,
            faked_layer: |_, _| false,
            fakes_sampling: true,
            caught_by_any_audit: false,
        },
        Strategy {
            name: "wrong-root",
            saves_bps: 10_000,
            faked_layer: |_, _| false,
            fakes_sampling: false,
            caught_by_any_audit: true,
        },
        Strategy {
            name: "withhold",
            saves_bps: 9_000,
            faked_layer: |_, _| false,
            fakes_sampling: false,
            caught_by_any_audit: true,
        },
    ]
}

/// One node's outcome.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Income minus compute cost minus slashes, base units (may be negative).
    pub balance: i128,
    /// Tasks audited.
    pub audited: u64,
    /// Audits that caught it.
    pub caught: u64,
    /// Total slashed, base units.
    pub slashed: u128,
}

/// The break-even price per task: cheating that saves `saves` of the cost
/// pays only while `saves · cost < a · d · s · (1 − c) · S`.
pub fn break_even_price(e: &Economy, detection: f64, saves_bps: u64) -> f64 {
    let p = &e.params;
    let a = f64::from(p.audit_rate_bps) / 1e4;
    let s = f64::from(p.slash_bps) / 1e4;
    let keep = 1.0 - f64::from(p.challenger_share_bps) / 1e4;
    let saved_share = (saves_bps as f64 / 1e4) * (e.cost_bps as f64 / 1e4);
    a * detection * s * keep * e.stake as f64 / saved_share
}

/// Simulates `tasks` tasks of one node; `strategy` `None` is the honest node.
/// Task `i`'s audit draw is derived from `seed` and `i` exactly as the
/// network derives it from a batch seed and a receipt leaf.
pub fn simulate(e: &Economy, strategy: Option<&Strategy>, seed: [u8; 32]) -> Outcome {
    let p = &e.params;
    let price = e.price_per_token * e.tokens_per_task;
    let reward = e.reward_per_token * e.tokens_per_task;
    let cost = price * e.cost_bps / 10_000;
    let mut out = Outcome::default();
    for i in 0..e.tasks {
        let saved = strategy.map_or(0, |s| cost * s.saves_bps / 10_000);
        out.balance += i128::from(price + reward) - i128::from(cost - saved);
        let mut leaf = [0u8; 32];
        leaf[..8].copy_from_slice(&i.to_le_bytes());
        let draw = audit::task_draw(&seed, &leaf);
        if !audit::is_audited(&draw, p.audit_rate_bps) {
            continue;
        }
        out.audited += 1;
        let Some(s) = strategy else { continue };
        let layers = audit::layers(&draw, e.n_layers, u32::from(p.audit_layers));
        let steps = audit::positions(&draw, e.outputs_per_task, u32::from(p.audit_positions));
        let caught = s.caught_by_any_audit
            || layers.iter().any(|&l| (s.faked_layer)(l, e.n_layers))
            || (s.fakes_sampling && !steps.is_empty());
        if caught {
            out.caught += 1;
            // Slashed on its stake; it recovers the challenger's share by
            // challenging itself under another key (the worst case for us),
            // then tops the stake back up to keep serving.
            let slash = u128::from(e.stake) * u128::from(p.slash_bps) / 10_000;
            let kept = slash * u128::from(p.challenger_share_bps) / 10_000;
            out.slashed += slash;
            out.balance -= (slash - kept) as i128;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn economy(price_per_token: u64) -> Economy {
        Economy {
            params: strata_chain::params::local(),
            tasks: 20_000,
            tokens_per_task: 100,
            outputs_per_task: 40,
            n_layers: 30,
            price_per_token,
            reward_per_token: 2,
            cost_bps: 5_000,
            stake: 1_000 * strata_chain::params::TOKEN,
        }
    }

    #[test]
    fn at_testnet_prices_every_cheater_ends_below_the_honest_node() {
        let e = economy(10);
        let honest = simulate(&e, None, [1; 32]);
        assert!(honest.audited > 0);
        for s in strategies() {
            let c = simulate(&e, Some(&s), [1; 32]);
            assert!(c.caught > 0, "{} never caught", s.name);
            assert!(
                c.balance < honest.balance,
                "{}: {c:?} vs {honest:?}",
                s.name
            );
        }
    }

    #[test]
    fn far_above_the_break_even_price_cheating_would_pay() {
        // The inequality is tight, not decorative: at a price far above
        // a·d·s·S per task, skipping layers pays. That is why the gateway
        // caps a task's price from the serving node's stake.
        let e = economy(10);
        let s = strategies()[0];
        let per_task = break_even_price(&e, 0.99, s.saves_bps);
        let price_per_token = (per_task * 20.0 / e.tokens_per_task as f64) as u64;
        let e = economy(price_per_token);
        let honest = simulate(&e, None, [2; 32]);
        let cheater = simulate(&e, Some(&s), [2; 32]);
        assert!(
            cheater.balance > honest.balance,
            "{cheater:?} vs {honest:?}"
        );
    }
}
