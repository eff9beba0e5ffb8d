//! Events: one per state change, so an indexer can rebuild the ledger from logs.

use anchor_lang::prelude::*;

use crate::state::{Capacity, ConfigParams};

/// Writes an event as Anchor's `emit!` does (`Program data: <base64>` in the
/// logs). In a native build `emit!` is a no-op, so off-chain it goes through
/// the runtime's v3 syscall stubs, which the native harness routes to the log.
pub fn emit_event<E: anchor_lang::Event>(event: &E) {
    let data = event.data();
    #[cfg(target_os = "solana")]
    anchor_lang::solana_program::log::sol_log_data(&[&data]);
    #[cfg(not(target_os = "solana"))]
    solana_sysvar::program_stubs::sol_log_data(&[&data]);
}

/// The program was initialised.
#[event]
#[derive(Debug, Clone)]
pub struct Initialized {
    /// Admin key.
    pub admin: Pubkey,
    /// Stake/payment mint.
    pub mint: Pubkey,
    /// Reward authority.
    pub reward_authority: Pubkey,
    /// Parameters.
    pub params: ConfigParams,
}

/// Parameters or the reward authority changed.
#[event]
#[derive(Debug, Clone)]
pub struct ConfigUpdated {
    /// New parameters.
    pub params: ConfigParams,
    /// New reward authority.
    pub reward_authority: Pubkey,
}

/// A relayer was allowed.
#[event]
#[derive(Debug, Clone)]
pub struct RelayerAdded {
    /// Relayer key.
    pub relayer: Pubkey,
}

/// A relayer was removed.
#[event]
#[derive(Debug, Clone)]
pub struct RelayerRemoved {
    /// Relayer key.
    pub relayer: Pubkey,
}

/// A node registered or changed its endpoints, capacity or roles.
#[event]
#[derive(Debug, Clone)]
pub struct NodeUpdated {
    /// Operator key.
    pub operator: Pubkey,
    /// Roles.
    pub roles: u8,
    /// Capacity.
    pub capacity: Capacity,
    /// Multiaddrs.
    pub multiaddrs: Vec<String>,
}

/// A node deregistered.
#[event]
#[derive(Debug, Clone)]
pub struct NodeDeregistered {
    /// Operator key.
    pub operator: Pubkey,
}

/// Stake was added.
#[event]
#[derive(Debug, Clone)]
pub struct Staked {
    /// Operator key.
    pub operator: Pubkey,
    /// Amount added.
    pub amount: u64,
    /// Bonded stake afterwards.
    pub stake: u64,
}

/// Stake began unbonding.
#[event]
#[derive(Debug, Clone)]
pub struct UnstakeRequested {
    /// Operator key.
    pub operator: Pubkey,
    /// Amount moved to unbonding.
    pub amount: u64,
    /// When it can be withdrawn.
    pub unbonding_ends: i64,
}

/// Unbonded stake left the vault.
#[event]
#[derive(Debug, Clone)]
pub struct StakeWithdrawn {
    /// Operator key.
    pub operator: Pubkey,
    /// Amount withdrawn.
    pub amount: u64,
}

/// A client deposited into escrow.
#[event]
#[derive(Debug, Clone)]
pub struct Deposited {
    /// Client key.
    pub client: Pubkey,
    /// Amount.
    pub amount: u64,
    /// Balance afterwards.
    pub balance: u64,
}

/// A client asked to withdraw.
#[event]
#[derive(Debug, Clone)]
pub struct WithdrawalRequested {
    /// Client key.
    pub client: Pubkey,
    /// Amount.
    pub amount: u64,
    /// Earliest withdrawal time.
    pub withdraw_after: i64,
}

/// A client withdrew from escrow.
#[event]
#[derive(Debug, Clone)]
pub struct Withdrawn {
    /// Client key.
    pub client: Pubkey,
    /// Amount.
    pub amount: u64,
}

/// A receipt batch was posted.
#[event]
#[derive(Debug, Clone)]
pub struct BatchPosted {
    /// Batch id.
    pub id: u64,
    /// Relayer key.
    pub relayer: Pubkey,
    /// Epoch.
    pub epoch: i64,
    /// Merkle root.
    pub root: [u8; 32],
    /// Receipts in the batch.
    pub task_count: u32,
    /// Work units.
    pub work_units: u64,
}

/// A voucher was redeemed.
#[event]
#[derive(Debug, Clone)]
pub struct VoucherRedeemed {
    /// Client key.
    pub client: Pubkey,
    /// Node operator key.
    pub node: Pubkey,
    /// Cumulative amount the voucher carried.
    pub cumulative: u64,
    /// Paid to the node now.
    pub paid: u64,
    /// Protocol fee to the reward pool.
    pub fee: u64,
}

/// A challenge was opened.
#[event]
#[derive(Debug, Clone)]
pub struct ChallengeOpened {
    /// Challenge account.
    pub challenge: Pubkey,
    /// Accused node.
    pub node: Pubkey,
    /// Batch account.
    pub batch: Pubkey,
    /// Leaf index.
    pub leaf_index: u32,
    /// Challenger.
    pub challenger: Pubkey,
    /// Task id of the challenged receipt.
    pub task_id: [u8; 32],
    /// Slot whose hash will seed the committee.
    pub seed_slot: u64,
}

/// A challenge's committee seed was drawn: its members are now known.
#[event]
#[derive(Debug, Clone)]
pub struct CommitteeDrawn {
    /// Challenge account.
    pub challenge: Pubkey,
    /// Sortition seed.
    pub seed: [u8; 32],
}

/// A batch's audit seed was drawn: its audits are now assigned.
#[event]
#[derive(Debug, Clone)]
pub struct BatchSealed {
    /// Batch id.
    pub id: u64,
    /// The slot whose hash was used.
    pub slot: u64,
    /// The audit seed.
    pub audit_seed: [u8; 32],
}

/// A seed slot fell out of SlotHashes before anyone drew it; a later slot
/// takes its place (still unknown to everyone).
#[event]
#[derive(Debug, Clone)]
pub struct SeedRearmed {
    /// The batch or challenge account.
    pub account: Pubkey,
    /// The new seed slot.
    pub seed_slot: u64,
}

/// A challenge ended.
#[event]
#[derive(Debug, Clone)]
pub struct ChallengeResolved {
    /// Challenge account.
    pub challenge: Pubkey,
    /// Accused node.
    pub node: Pubkey,
    /// Whether the node was found guilty.
    pub upheld: bool,
    /// Amount slashed (0 unless upheld).
    pub slashed: u64,
    /// Paid to the challenger (bond and share of the slash).
    pub to_challenger: u64,
    /// The committee members whose signatures made the verdict.
    pub voters: Vec<Pubkey>,
}

/// A challenge expired without a verdict and was closed.
#[event]
#[derive(Debug, Clone)]
pub struct ChallengeExpired {
    /// Challenge account.
    pub challenge: Pubkey,
    /// Accused node.
    pub node: Pubkey,
}

/// Tokens were added to the reward pool.
#[event]
#[derive(Debug, Clone)]
pub struct RewardsFunded {
    /// Who funded it.
    pub funder: Pubkey,
    /// Amount.
    pub amount: u64,
}

/// An epoch's reward root was published.
#[event]
#[derive(Debug, Clone)]
pub struct RewardsPublished {
    /// Epoch.
    pub epoch: i64,
    /// Root.
    pub root: [u8; 32],
    /// Declared new rewards (the epoch's payout limit).
    pub declared: u64,
}

/// A node claimed rewards.
#[event]
#[derive(Debug, Clone)]
pub struct RewardsClaimed {
    /// Operator key.
    pub operator: Pubkey,
    /// Epoch whose root proved the claim.
    pub epoch: i64,
    /// Cumulative amount in the leaf.
    pub cumulative: u64,
    /// Paid now.
    pub paid: u64,
}

/// A batch record was closed after its challenge window; its rent went
/// back to the relayer that posted it.
#[event]
#[derive(Debug, Clone)]
pub struct BatchClosed {
    /// Batch id.
    pub id: u64,
    /// Relayer key (received the rent).
    pub relayer: Pubkey,
    /// Lamports returned.
    pub lamports: u64,
}
