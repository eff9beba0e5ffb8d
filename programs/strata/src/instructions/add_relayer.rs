use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, RelayerAdded};
use crate::state::{Config, Relayer, STATE_VERSION};

/// Allows a key to post receipt batches. Admin only.
#[derive(Accounts)]
#[instruction(relayer: Pubkey)]
pub struct AddRelayer<'info> {
    /// Must be the config's admin; pays rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// The config.
    #[account(seeds = [Config::SEED], bump = config.bump, has_one = admin @ StrataError::Unauthorized)]
    pub config: Account<'info, Config>,
    /// The relayer's record.
    #[account(
        init,
        payer = admin,
        space = 8 + Relayer::INIT_SPACE,
        seeds = [Relayer::SEED, relayer.as_ref()],
        bump,
    )]
    pub relayer_account: Account<'info, Relayer>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(ctx: Context<AddRelayer>, relayer: Pubkey) -> Result<()> {
    ctx.accounts.relayer_account.set_inner(Relayer {
        version: STATE_VERSION,
        bump: ctx.bumps.relayer_account,
        authority: relayer,
        batches_posted: 0,
        reserved: [0; 16],
    });
    emit_event(&RelayerAdded { relayer });
    Ok(())
}
