use anchor_lang::prelude::*;
use strata_primitives::audit::batch_seed;

use crate::errors::StrataError;
use crate::events::{emit_event, BatchSealed, SeedRearmed};
use crate::seed::{draw, Drawn};
use crate::state::{Batch, Config};

/// Draws a batch's audit seed from the hash of its seed slot, a slot after
/// the batch was posted: which of its receipts are audited, on which layers
/// and by whom follows from this seed (`strata_primitives::audit`). Anyone
/// may call it once the seed slot has passed; nobody can choose the outcome.
#[derive(Accounts)]
pub struct SealBatch<'info> {
    /// The config (for the seed delay when a draw must be re-armed).
    #[account(seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The batch.
    #[account(mut, seeds = [Batch::SEED, &batch.id.to_le_bytes()], bump = batch.bump)]
    pub batch: Account<'info, Batch>,
    /// The SlotHashes sysvar.
    /// CHECK: address constrained; parsed by `seed::draw`.
    #[account(address = solana_sdk_ids::sysvar::slot_hashes::ID)]
    pub slot_hashes: UncheckedAccount<'info>,
}

/// Handler.
pub fn handler(ctx: Context<SealBatch>) -> Result<()> {
    let batch = &mut ctx.accounts.batch;
    require!(batch.audit_seed == [0; 32], StrataError::SeedAlreadyDrawn);
    match draw(
        &ctx.accounts.slot_hashes,
        batch.seed_slot,
        ctx.accounts.config.params.seed_delay_slots,
    )? {
        Drawn::Ready { slot, hash } => {
            batch.audit_seed = batch_seed(&hash, &batch.root);
            emit_event(&BatchSealed {
                id: batch.id,
                slot,
                audit_seed: batch.audit_seed,
            });
        }
        Drawn::Rearmed { seed_slot } => {
            batch.seed_slot = seed_slot;
            emit_event(&SeedRearmed {
                account: batch.key(),
                seed_slot,
            });
        }
    }
    Ok(())
}
