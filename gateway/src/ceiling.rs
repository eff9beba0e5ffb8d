//! The most a task may cost on a given node. Faking a task saves its price
//! `P`; it is audited with probability `a` and a detected fake loses the
//! share `s` of the node's stake `S` (`docs/economics.md`), so cheating loses
//! money in expectation only while `P < a·s·S`. The gateway sends a task to a
//! node only if the task's most possible cost stays below `a·s·S / k`, with
//! a safety factor `k`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_chain::rpc::ChainClient;
use strata_chain::{ChainError, Pubkey};

/// The safety factor `k`.
pub const SAFETY_FACTOR: u128 = 2;
/// How long a node's stake is trusted before it is read again.
const STAKE_TTL: Duration = Duration::from_secs(30);
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
            .filter(|(_, at)| at.elapsed() < STAKE_TTL)
            .map(|(s, _)| *s);
        let stake = match cached {
            Some(s) => s,
            None => {
                // Unbonding stake is still slashable, so it counts.
                let s = chain
                    .node(node)
                    .await?
                    .map_or(0, |n| n.stake.saturating_add(n.unbonding));
                self.stakes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*node, (s, Instant::now()));
                s
            }
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

#[cfg(test)]
mod tests {
    use super::ceiling;

    #[test]
    fn testnet_numbers() {
        // 100 tokens at stake, 5 % audits, 50 % slash: 2.5 tokens, halved.
        assert_eq!(ceiling(100_000_000, 500, 5_000), 1_250_000);
        assert_eq!(ceiling(0, 500, 5_000), 0);
        assert_eq!(ceiling(u64::MAX, 10_000, 10_000), u64::MAX / 2);
    }
}
