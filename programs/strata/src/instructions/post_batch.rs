use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, BatchPosted};
use crate::state::{Batch, Config, Relayer, STATE_VERSION};
use strata_primitives::limits::MAX_WORK_UNITS_PER_TASK;

/// Posts the Merkle root of a batch of receipts. Registered relayers only.
///
/// The work units a batch declares are bounded by its receipt count
/// (`limits::MAX_WORK_UNITS_PER_TASK` each), and the config's running
/// totals saturate: a statistic that overflowed used to refuse every later
/// batch, so one relayer could stop all posting with one batch of
/// `u64::MAX` work units.
#[derive(Accounts)]
pub struct PostBatch<'info> {
    /// The relayer; pays rent for the batch record.
    #[account(mut)]
    pub authority: Signer<'info>,
    /// Proves the signer is an allowed relayer.
    #[account(mut, seeds = [Relayer::SEED, authority.key().as_ref()], bump = relayer.bump, has_one = authority)]
    pub relayer: Account<'info, Relayer>,
    /// The config (assigns the batch id).
    #[account(mut, seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The new batch record.
    #[account(
        init,
        payer = authority,
        space = 8 + Batch::INIT_SPACE,
        seeds = [Batch::SEED, &config.next_batch_id.to_le_bytes()],
        bump,
    )]
    pub batch: Account<'info, Batch>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(
    ctx: Context<PostBatch>,
    epoch: i64,
    root: [u8; 32],
    task_count: u32,
    work_units: u64,
) -> Result<()> {
    require!(task_count > 0 && root != [0; 32], StrataError::EmptyBatch);
    // At most 2^32 × 2^24 = 2^56: the product cannot overflow.
    require!(
        work_units <= u64::from(task_count) * MAX_WORK_UNITS_PER_TASK,
        StrataError::WorkUnitsOutOfBounds
    );
    let clock = Clock::get()?;
    let config = &mut ctx.accounts.config;
    require!(
        epoch >= 0 && epoch <= config.epoch_at(clock.unix_timestamp),
        StrataError::InvalidEpoch
    );
    let id = config.next_batch_id;
    config.next_batch_id = id.checked_add(1).ok_or(StrataError::MathOverflow)?;
    // Statistics only: nothing is paid from them, so they saturate rather
    // than refuse the batch.
    config.total_tasks = config.total_tasks.saturating_add(u64::from(task_count));
    config.total_work_units = config.total_work_units.saturating_add(work_units);
    let relayer = &mut ctx.accounts.relayer;
    relayer.batches_posted = relayer.batches_posted.saturating_add(1);
    ctx.accounts.batch.set_inner(Batch {
        version: STATE_VERSION,
        bump: ctx.bumps.batch,
        id,
        relayer: relayer.authority,
        epoch,
        root,
        task_count,
        work_units,
        posted_at: clock.unix_timestamp,
        posted_slot: clock.slot,
        seed_slot: clock
            .slot
            .checked_add(u64::from(config.params.seed_delay_slots))
            .ok_or(StrataError::MathOverflow)?,
        audit_seed: [0; 32],
        open_challenges: 0,
        reserved: [0; 12],
    });
    emit_event(&BatchPosted {
        id,
        relayer: relayer.authority,
        epoch,
        root,
        task_count,
        work_units,
    });
    Ok(())
}
