use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, ConfigUpdated};
use crate::state::{Config, ConfigParams};

/// Changes parameters and the reward authority. Admin only; bounds checked.
/// A new epoch length takes effect without renumbering epochs
/// ([`Config::set_epoch_length`]).
#[derive(Accounts)]
pub struct UpdateConfig<'info> {
    /// Must be the config's admin.
    pub admin: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = admin @ StrataError::Unauthorized)]
    pub config: Account<'info, Config>,
}

/// Handler.
pub fn handler(
    ctx: Context<UpdateConfig>,
    params: ConfigParams,
    reward_authority: Pubkey,
) -> Result<()> {
    params.validate()?;
    let now = Clock::get()?.unix_timestamp;
    let config = &mut ctx.accounts.config;
    // Before the other parameters: the epoch in progress is found with the old length.
    config.set_epoch_length(params.epoch_length, now);
    config.params = params;
    config.reward_authority = reward_authority;
    emit_event(&ConfigUpdated {
        params,
        reward_authority,
    });
    Ok(())
}
