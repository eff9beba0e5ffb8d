//! The most a task may cost on a given node. Faking a task saves its price
//! `P`; it is audited with probability `a` and a detected fake loses the
//! share `s` of the node's stake `S` (`docs/economics.md`), so cheating loses
//! money in expectation only while `P < a·s·S`. The gateway sends a task to a
//! node only if the task's most possible cost stays below `a·s·S / k`, with
//! a safety factor `k`.
//!
//! A pipelined task pays each hop for its blocks only, so each hop answers
//! for its share: `max_cost × (b − a) / L` ([`hop_share`]), and a hop whose
//! share is over its ceiling is left out of the task's routes
//! ([`hops_over`]): a small stake can serve a small range.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_chain::rpc::ChainClient;
use strata_chain::{ChainError, Pubkey};

/// The safety factor `k`.
pub const SAFETY_FACTOR: u128 = 2;
/// How long a node's stake is trusted before it is read again.
const STAKE_TTL: Duration = Duration::from_secs(30);
/// How old a reading may be when the chain cannot be read: a stake only
/// falls by a slash or an unbonding that ends, both slower than this, and
/// refusing every task for the length of an RPC outage helps nobody (the
/// load campaign's outage turned thousands of requests into errors).
const STAKE_STALE_LIMIT: Duration = Duration::from_secs(600);
const BPS: u128 = 10_000;

/// Cached stakes and parameters.
#[derive(Default)]
pub struct Ceilings {
    stakes: Mutex<HashMap<Pubkey, (u64, Instant)>>,
    /// `(audit_rate_bps, slash_bps)`, read once.
    params: Mutex<Option<(u16, u16)>>,
}

impl Ceilings {
    /// `a·s·S / k` for `node`, in base units (0 for an unregistered node).
    pub async fn of(&self, chain: &ChainClient, node: &Pubkey) -> Result<u64, ChainError> {
        let params = *self.params.lock().unwrap_or_else(|p| p.into_inner());
        let (audit, slash) = match params {
            Some(p) => p,
            None => {
                let c = chain.config().await?;
                let p = (c.params.audit_rate_bps, c.params.slash_bps);
                *self.params.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
                p
            }
        };
        let cached = self
            .stakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied();
        let stake = match cached {
            Some((s, at)) if at.elapsed() < STAKE_TTL => s,
            _ => match chain.node(node).await {
                Ok(n) => {
                    // Unbonding stake is still slashable, so it counts.
                    let s = n.map_or(0, |n| n.stake.saturating_add(n.unbonding));
                    self.stakes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*node, (s, Instant::now()));
                    s
                }
                Err(e) => match cached {
                    Some((s, at)) if at.elapsed() < STAKE_STALE_LIMIT => {
                        tracing::warn!(%node, age_s = at.elapsed().as_secs(), "chain unreadable ({e}); using the last stake read");
                        s
                    }
                    _ => return Err(e),
                },
            },
        };
        Ok(ceiling(stake, audit, slash))
    }
}

/// `a·s·S / k` with `a` and `s` in basis points.
pub fn ceiling(stake: u64, audit_rate_bps: u16, slash_bps: u16) -> u64 {
    let c = u128::from(stake) * u128::from(audit_rate_bps) * u128::from(slash_bps)
        / (BPS * BPS * SAFETY_FACTOR);
    u64::try_from(c).unwrap_or(u64::MAX)
}

/// The most a pipelined task can pay a hop holding `blocks` of the
/// model's `n_layers`: `max_cost × blocks / n_layers`, `max_cost` being the
/// task's most possible cost at that hop's price (it is credited at most
/// every token for each of its blocks, across failovers too).
pub fn hop_share(max_cost: u64, blocks: u16, n_layers: u16) -> u64 {
    let share = u128::from(max_cost) * u128::from(blocks) / u128::from(n_layers.max(1));
    u64::try_from(share).unwrap_or(u64::MAX)
}

/// The hops among `holdings` whose share of a task billing at most `units`
/// tokens is over their ceiling (`ceiling_of`).
pub fn hops_over(
    holdings: &[crate::routing::HopHolding],
    units: u64,
    ceiling_of: impl Fn(&[u8; 32]) -> u64,
) -> Vec<[u8; 32]> {
    holdings
        .iter()
        .filter(|h| {
            let max_cost = units.saturating_mul(h.price_per_token);
            let blocks = h.blocks.end.saturating_sub(h.blocks.start);
            hop_share(max_cost, blocks, h.n_layers) > ceiling_of(&h.node)
        })
        .map(|h| h.node)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{ceiling, hop_share, hops_over};
    use crate::routing::HopHolding;

    #[test]
    fn testnet_numbers() {
        // 100 tokens at stake, 5 % audits, 50 % slash: 2.5 tokens, halved.
        assert_eq!(ceiling(100_000_000, 500, 5_000), 1_250_000);
        assert_eq!(ceiling(0, 500, 5_000), 0);
        assert_eq!(ceiling(u64::MAX, 10_000, 10_000), u64::MAX / 2);
    }

    #[test]
    fn a_hop_answers_for_its_blocks_only() {
        assert_eq!(
            hop_share(3_000, 30, 30),
            3_000,
            "a whole model: the whole cost"
        );
        assert_eq!(hop_share(3_000, 10, 30), 1_000);
        assert_eq!(hop_share(100, 1, 30), 3, "rounded down");
        assert_eq!(hop_share(u64::MAX, 30, 30), u64::MAX);
        assert_eq!(hop_share(5, 1, 0), 5, "no division by zero");

        let hop = |n: u8, blocks: std::ops::Range<u16>, price| HopHolding {
            node: [n; 32],
            blocks,
            n_layers: 30,
            price_per_token: price,
        };
        let holdings = [
            hop(1, 0..10, 10),
            hop(2, 10..20, 10),
            hop(3, 10..29, 10),
            hop(4, 29..30, 100),
            hop(5, 20..30, 10),
        ];
        // 300 tokens at 10: 3 000 for the whole model, 1 000 for ten blocks,
        // 1 900 for nineteen; the one-block hop at 100: 1 000.
        let ceilings = |n: &[u8; 32]| match n[0] {
            1 => 1_000,
            2 => 999,
            3 => 1_900,
            4 => 1_000,
            _ => 0,
        };
        assert_eq!(hops_over(&holdings, 300, ceilings), vec![[2; 32], [5; 32]]);
        assert_eq!(hops_over(&holdings, 0, |_| 0), Vec::<[u8; 32]>::new());
    }
}

#[cfg(test)]
mod outage_tests {
    use super::*;

    /// A chain nobody answers at (a port just closed).
    fn dead_chain() -> ChainClient {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ChainClient::new(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    fn ceilings_with(stake: u64, age: Duration, node: Pubkey) -> Ceilings {
        let c = Ceilings::default();
        *c.params.lock().unwrap() = Some((1_000, 5_000));
        let at = Instant::now().checked_sub(age).unwrap();
        c.stakes.lock().unwrap().insert(node, (stake, at));
        c
    }

    #[tokio::test]
    async fn an_unreadable_chain_falls_back_to_a_recent_stake_only() {
        let node = Pubkey::new_unique();
        let chain = dead_chain();
        // Past the refresh time but within the stale limit: the last reading.
        let c = ceilings_with(1_000_000, Duration::from_secs(60), node);
        assert_eq!(
            c.of(&chain, &node).await.unwrap(),
            ceiling(1_000_000, 1_000, 5_000)
        );
        // Past the stale limit: the chain's error, not a guess.
        let c = ceilings_with(1_000_000, STAKE_STALE_LIMIT + Duration::from_secs(1), node);
        assert!(c.of(&chain, &node).await.is_err());
        // Never read: the error too.
        assert!(Ceilings::default()
            .of(&chain, &Pubkey::new_unique())
            .await
            .is_err());
    }
}
