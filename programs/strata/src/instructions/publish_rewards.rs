use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, RewardsPublished};
use crate::state::{Config, RewardEpoch, STATE_VERSION};

/// Publishes an epoch's root of cumulative per-node rewards. Reward authority
/// only; epochs strictly increase. `declared` is the most that claims against
/// this root may pay in total (the authority sets it to what is unclaimed);
/// it may not exceed the per-epoch cap, so a compromised authority key can
/// drain at most one cap per epoch of elapsed time.
///
/// Only the current epoch may be published. Publishing any past epoch after
/// the last published one used to be allowed, so an authority that had been
/// idle for n epochs could publish n roots one after another, each with a
/// full cap: the circuit breaker let n caps through at once. Rewards are
/// cumulative, so skipping epochs loses nobody anything.
#[derive(Accounts)]
#[instruction(epoch: i64)]
pub struct PublishRewards<'info> {
    /// Must be the config's reward authority; pays rent.
    #[account(mut)]
    pub reward_authority: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = reward_authority @ StrataError::Unauthorized)]
    pub config: Account<'info, Config>,
    /// The epoch's record.
    #[account(
        init,
        payer = reward_authority,
        space = 8 + RewardEpoch::INIT_SPACE,
        seeds = [RewardEpoch::SEED, &epoch.to_le_bytes()],
        bump,
    )]
    pub reward_epoch: Account<'info, RewardEpoch>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(
    ctx: Context<PublishRewards>,
    epoch: i64,
    root: [u8; 32],
    leaf_count: u32,
    declared: u64,
) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let config = &mut ctx.accounts.config;
    require!(
        epoch > config.last_reward_epoch,
        StrataError::EpochOutOfOrder
    );
    let current = config.epoch_at(now);
    require!(epoch <= current, StrataError::InvalidEpoch);
    require!(epoch == current, StrataError::RewardEpochNotCurrent);
    require!(leaf_count > 0 && root != [0; 32], StrataError::EmptyBatch);
    require!(
        declared <= config.params.epoch_reward_cap,
        StrataError::RewardCapExceeded
    );
    config.last_reward_epoch = epoch;
    ctx.accounts.reward_epoch.set_inner(RewardEpoch {
        version: STATE_VERSION,
        bump: ctx.bumps.reward_epoch,
        epoch,
        root,
        leaf_count,
        declared,
        remaining: declared,
        published_at: now,
        reserved: [0; 16],
    });
    emit_event(&RewardsPublished {
        epoch,
        root,
        declared,
    });
    Ok(())
}
