use anchor_lang::prelude::*;

/// A Merkle root over a batch of task receipts, posted by a relayer.
/// The receipts themselves are served off-chain with their proofs.
#[account]
#[derive(InitSpace, Debug)]
pub struct Batch {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// Sequential id (PDA seed).
    pub id: u64,
    /// Relayer that posted it.
    pub relayer: Pubkey,
    /// Epoch the receipts belong to.
    pub epoch: i64,
    /// Merkle root over receipt leaves (`strata_primitives::merkle::domains::Ledger::receipt_leaf`).
    pub root: [u8; 32],
    /// Number of receipts (leaves).
    pub task_count: u32,
    /// Work units (tokens processed) the receipts add up to.
    pub work_units: u64,
    /// Unix time it was posted; the challenge window starts here.
    pub posted_at: i64,
    /// Slot it was posted in.
    pub posted_slot: u64,
    /// The slot whose hash seeds this batch's audits (`posted_slot` plus the
    /// seed delay, moved later if nobody drew it in time).
    pub seed_slot: u64,
    /// The audit seed (`strata_primitives::audit::batch_seed`), all zeros
    /// until `seal_batch` draws it.
    pub audit_seed: [u8; 32],
    /// Challenges against its receipts that await a verdict or expiry; the
    /// batch cannot be closed while any is open.
    pub open_challenges: u32,
    /// Room for later fields.
    pub reserved: [u8; 12],
}

impl Batch {
    /// PDA seed prefix; the id (u64 little endian) follows.
    pub const SEED: &'static [u8] = b"batch";
}
