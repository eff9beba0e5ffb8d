//! The token unit and the protocol parameters of a local chain, defined once
//! for the local testnet and every test that bootstraps a chain (tests
//! override single fields with struct-update syntax).

use crate::ConfigParams;

/// The program's floor on the escrow withdrawal delay, seconds: a client's
/// escrow cannot lose more than its pending withdrawal within this long.
pub use strata_program::state::MIN_ESCROW_WITHDRAW_DELAY;

/// One whole token in base units (the mint has 6 decimals).
pub const TOKEN: u64 = 1_000_000;

/// Parameters for a local testnet: short periods so a person watching sees
/// every phase (epochs, audits, challenges, verdicts) within minutes.
pub fn local() -> ConfigParams {
    ConfigParams {
        min_stake: 100 * TOKEN,
        // Stake stays slashable until its receipts can no longer be judged:
        // at least the challenge window plus the verdict timeout.
        unbonding_period: 960,
        epoch_length: 60,
        audit_rate_bps: 200,
        slash_bps: 5_000,
        challenger_share_bps: 2_000,
        challenge_window: 600,
        challenge_bond: 10 * TOKEN,
        verdict_timeout: 300,
        verifier_quorum: 2,
        committee_size: 3,
        protocol_fee_bps: 500,
        epoch_reward_cap: 1_000 * TOKEN,
        escrow_withdraw_delay: 60,
        audit_layers: 6,
        audit_positions: 4,
        seed_delay_slots: 4,
        audit_reward_bps: 2_000,
        committee_reward: TOKEN / 10,
    }
}

/// [`local`] with every delay at its smallest, for tests that unstake,
/// withdraw or change epochs within seconds (the escrow withdrawal delay
/// cannot go below the program's floor, 30 s).
pub fn fast() -> ConfigParams {
    ConfigParams {
        unbonding_period: 2,
        challenge_window: 1,
        verdict_timeout: 1,
        escrow_withdraw_delay: strata_program::state::MIN_ESCROW_WITHDRAW_DELAY,
        verifier_quorum: 1,
        ..local()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn presets_are_valid() {
        // The program's own bounds (the same check `initialize` runs).
        for p in [super::local(), super::fast()] {
            assert!(p.validate().is_ok(), "{p:?}");
        }
    }
}
