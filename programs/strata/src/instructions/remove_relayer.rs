use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, RelayerRemoved};
use crate::state::{Config, Relayer};

/// Revokes a relayer; its record is closed and the rent returns to the admin.
#[derive(Accounts)]
pub struct RemoveRelayer<'info> {
    /// Must be the config's admin.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// The config.
    #[account(seeds = [Config::SEED], bump = config.bump, has_one = admin @ StrataError::Unauthorized)]
    pub config: Account<'info, Config>,
    /// The relayer's record.
    #[account(
        mut,
        close = admin,
        seeds = [Relayer::SEED, relayer_account.authority.as_ref()],
        bump = relayer_account.bump,
    )]
    pub relayer_account: Account<'info, Relayer>,
}

/// Handler.
pub fn handler(ctx: Context<RemoveRelayer>) -> Result<()> {
    emit_event(&RelayerRemoved {
        relayer: ctx.accounts.relayer_account.authority,
    });
    Ok(())
}
