use anchor_lang::prelude::*;

use crate::errors::StrataError;

/// Seconds in a day, for the parameter bounds below.
const DAY: i64 = 86_400;
/// Basis points in one whole.
pub const BPS: u64 = 10_000;
/// Largest verifier committee the program will count signatures for; bounds
/// the verdict instruction's loop and its transaction size.
pub const MAX_COMMITTEE: u8 = 16;
/// Most layers one audit may re-run (bounds the verifier's work per audit).
pub const MAX_AUDIT_LAYERS: u8 = 64;
/// Most output positions whose sampling one audit re-checks.
pub const MAX_AUDIT_POSITIONS: u8 = 64;
/// Longest delay before a seed slot. SlotHashes keeps 512 slots, so a seed
/// must be drawable well inside that window.
pub const MAX_SEED_DELAY_SLOTS: u16 = 128;
/// Shortest escrow withdrawal delay, in seconds. A client's vouchers are
/// redeemed by a relayer in rounds (every 10 s by default); a withdrawal
/// must wait long enough for a relayer to see the request and land the
/// redemption of every voucher the client already signed, or a client could
/// take back what it owes a node that already served it (with a delay of 0
/// it could even request and withdraw in one transaction). 30 s is three
/// default rounds, each with time to land.
pub const MIN_ESCROW_WITHDRAW_DELAY: i64 = 30;

/// Tunable protocol parameters. Every update is checked against [`ConfigParams::validate`].
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct ConfigParams {
    /// Smallest stake (token base units) at which a node counts as active.
    pub min_stake: u64,
    /// Seconds between `request_unstake` and `withdraw_stake`; stake stays slashable meanwhile.
    pub unbonding_period: i64,
    /// Length of a reward epoch in seconds.
    pub epoch_length: i64,
    /// Share of tasks audited by verifiers, in basis points (read by verifiers off-chain).
    pub audit_rate_bps: u16,
    /// Share of a guilty node's stake that is slashed, in basis points.
    pub slash_bps: u16,
    /// Share of a slash paid to the challenger; the rest goes to the reward pool.
    pub challenger_share_bps: u16,
    /// Seconds after a batch is posted during which its receipts can be challenged.
    pub challenge_window: i64,
    /// Bond (token base units) a challenger locks; forfeited if the challenge is rejected.
    pub challenge_bond: u64,
    /// Seconds the verifiers have to deliver a verdict before a challenge expires.
    pub verdict_timeout: i64,
    /// Distinct selected verifiers whose signatures a verdict needs.
    pub verifier_quorum: u8,
    /// Expected number of verifiers selected per challenge (stake-weighted sortition).
    pub committee_size: u8,
    /// Protocol fee on every redeemed voucher, in basis points; it funds the reward pool.
    pub protocol_fee_bps: u16,
    /// Most that claims against one epoch's reward root can pay out (a circuit breaker).
    pub epoch_reward_cap: u64,
    /// Seconds between a client's withdrawal request and the withdrawal.
    pub escrow_withdraw_delay: i64,
    /// Layers an audit re-runs per audited receipt (read by verifiers off-chain).
    pub audit_layers: u8,
    /// Output positions whose sampling an audit re-checks (read off-chain).
    pub audit_positions: u8,
    /// Slots between posting a batch (or opening a challenge) and the slot
    /// whose hash seeds its audits (or its committee).
    pub seed_delay_slots: u16,
    /// A verifier's reward for one audit, in basis points of the audited
    /// task's own reward (paid through the reward epochs).
    pub audit_reward_bps: u16,
    /// Reward, in token base units, of each committee member whose signature
    /// is in a challenge's resolving verdict (paid through the reward epochs).
    pub committee_reward: u64,
}

impl ConfigParams {
    /// Refuses parameters outside the ranges the protocol's safety argument assumes.
    pub fn validate(&self) -> Result<()> {
        let ok = self.min_stake > 0
            && (0..=90 * DAY).contains(&self.unbonding_period)
            && (1..=90 * DAY).contains(&self.epoch_length)
            && (1..=BPS).contains(&u64::from(self.audit_rate_bps))
            && (1..=BPS).contains(&u64::from(self.slash_bps))
            && u64::from(self.challenger_share_bps) <= BPS
            && (1..=90 * DAY).contains(&self.challenge_window)
            && self.challenge_bond > 0
            && (1..=90 * DAY).contains(&self.verdict_timeout)
            && self.verifier_quorum >= 1
            && self.verifier_quorum <= self.committee_size
            && self.committee_size <= MAX_COMMITTEE
            && u64::from(self.protocol_fee_bps) <= BPS / 2
            && self.escrow_withdraw_delay <= 90 * DAY
            && (1..=MAX_AUDIT_LAYERS).contains(&self.audit_layers)
            && self.audit_positions <= MAX_AUDIT_POSITIONS
            && (1..=MAX_SEED_DELAY_SLOTS).contains(&self.seed_delay_slots)
            && u64::from(self.audit_reward_bps) <= BPS;
        require!(ok, StrataError::InvalidParameter);
        require!(
            self.escrow_withdraw_delay >= MIN_ESCROW_WITHDRAW_DELAY,
            StrataError::WithdrawDelayTooShort
        );
        // Stake must stay slashable for as long as any of its receipts can be
        // challenged and judged: unbonding covers the challenge window plus
        // the verdict timeout (both bounded above, so the sum cannot overflow).
        require!(
            self.unbonding_period >= self.challenge_window + self.verdict_timeout,
            StrataError::InvalidParameter
        );
        Ok(())
    }
}

/// The program's singleton: authorities, the mint, parameters and ledger totals.
///
/// The ledger totals let anyone check that the vault holds exactly
/// `total_stake + total_escrow + reward_pool + bonds_held`.
#[account]
#[derive(InitSpace, Debug)]
pub struct Config {
    /// Layout version.
    pub version: u8,
    /// Canonical bump of this PDA (it also signs for the vault).
    pub bump: u8,
    /// Canonical bump of the vault token account.
    pub vault_bump: u8,
    /// May update parameters and register relayers.
    pub admin: Pubkey,
    /// Publishes per-epoch reward roots.
    pub reward_authority: Pubkey,
    /// SPL mint used for stake, payment and rewards.
    pub mint: Pubkey,
    /// The program's token vault (a PDA token account owned by this config).
    pub vault: Pubkey,
    /// Current parameters.
    pub params: ConfigParams,
    /// Unix time at which the program was initialised (epoch 0 began).
    pub genesis_ts: i64,
    /// Id the next receipt batch will get.
    pub next_batch_id: u64,
    /// Latest epoch whose reward root was published, or -1 for none.
    pub last_reward_epoch: i64,
    /// Tokens held as node stake, bonded or unbonding.
    pub total_stake: u64,
    /// Bonded stake of nodes with the verifier role (the sortition denominator).
    pub total_verifier_stake: u64,
    /// Tokens held in client escrows.
    pub total_escrow: u64,
    /// Tokens available to pay rewards (fees, forfeited bonds, slashes, donations).
    pub reward_pool: u64,
    /// Tokens locked as challenge bonds.
    pub bonds_held: u64,
    /// Receipts posted in batches since genesis.
    pub total_tasks: u64,
    /// Work units posted in batches since genesis. A statistic: it saturates
    /// rather than fail, so no batch can make later ones unpostable.
    pub total_work_units: u64,
    /// Unix time at which epoch [`Config::epoch_origin`] began; epochs are
    /// counted from here with the current `epoch_length`. Moved by
    /// `update_config` when the length changes, so that epochs already
    /// numbered (batches, published reward roots) keep their numbers.
    pub epoch_origin_ts: i64,
    /// The epoch that began at [`Config::epoch_origin_ts`] (0 at genesis).
    pub epoch_origin: i64,
    /// Room for later fields.
    pub reserved: [u8; 48],
}

impl Config {
    /// PDA seed.
    pub const SEED: &'static [u8] = b"config";
    /// Seed of the vault token account PDA.
    pub const VAULT_SEED: &'static [u8] = b"vault";

    /// Swaps one node's contribution to the verifier-stake total (the
    /// sortition denominator) from `before` to `after`.
    pub fn replace_verifier_stake(&mut self, before: u64, after: u64) -> Result<()> {
        self.total_verifier_stake = self
            .total_verifier_stake
            .checked_sub(before)
            .and_then(|t| t.checked_add(after))
            .ok_or(StrataError::MathOverflow)?;
        Ok(())
    }

    /// The epoch that contains `now`: the origin's epoch plus the whole
    /// epoch lengths since the origin. Never earlier than the origin's epoch.
    pub fn epoch_at(&self, now: i64) -> i64 {
        let since = now.saturating_sub(self.epoch_origin_ts).max(0);
        self.epoch_origin
            .saturating_add(since.checked_div(self.params.epoch_length).unwrap_or(0))
    }

    /// Unix time at which `epoch` began (or will begin) under the current
    /// origin and length; for epochs at or after the origin.
    pub fn epoch_start(&self, epoch: i64) -> i64 {
        epoch
            .saturating_sub(self.epoch_origin)
            .saturating_mul(self.params.epoch_length)
            .saturating_add(self.epoch_origin_ts)
    }

    /// Switches to `epoch_length` at `now` without renumbering any epoch.
    ///
    /// Counting from genesis with the new length would move `now` into
    /// another epoch: a longer length puts it back in an epoch that may
    /// already be published (and batches posted since would carry its
    /// number), a shorter one jumps ahead over epochs nobody saw. Instead
    /// the epoch in progress keeps its number and its start and lasts the
    /// new length from that start; if that much time has already passed, it
    /// ends now and the next epoch starts now. So right after the change the
    /// current epoch is the same or the next one, never an earlier or a
    /// farther one.
    pub fn set_epoch_length(&mut self, epoch_length: i64, now: i64) {
        if epoch_length == self.params.epoch_length {
            return;
        }
        let current = self.epoch_at(now);
        let start = self.epoch_start(current);
        if now.saturating_sub(start) < epoch_length {
            self.epoch_origin = current;
            self.epoch_origin_ts = start;
        } else {
            self.epoch_origin = current.saturating_add(1);
            self.epoch_origin_ts = now;
        }
        self.params.epoch_length = epoch_length;
    }
}
