use anchor_lang::prelude::*;
use anchor_spl::token::{Mint, Token, TokenAccount};

use crate::events::{emit_event, Initialized};
use crate::state::{Config, ConfigParams, STATE_VERSION};

/// Creates the config and the vault. Runs once: `init` refuses a second call.
#[derive(Accounts)]
pub struct Initialize<'info> {
    /// Pays rent and becomes the admin.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// The singleton config.
    #[account(init, payer = admin, space = 8 + Config::INIT_SPACE, seeds = [Config::SEED], bump)]
    pub config: Account<'info, Config>,
    /// Stake, payment and reward mint.
    pub mint: Account<'info, Mint>,
    /// The program's token vault, owned by the config PDA.
    #[account(
        init,
        payer = admin,
        seeds = [Config::VAULT_SEED],
        bump,
        token::mint = mint,
        token::authority = config,
    )]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(
    ctx: Context<Initialize>,
    params: ConfigParams,
    reward_authority: Pubkey,
) -> Result<()> {
    params.validate()?;
    let now = Clock::get()?.unix_timestamp;
    let config = &mut ctx.accounts.config;
    config.set_inner(Config {
        version: STATE_VERSION,
        bump: ctx.bumps.config,
        vault_bump: ctx.bumps.vault,
        admin: ctx.accounts.admin.key(),
        reward_authority,
        mint: ctx.accounts.mint.key(),
        vault: ctx.accounts.vault.key(),
        params,
        genesis_ts: now,
        next_batch_id: 0,
        last_reward_epoch: -1,
        total_stake: 0,
        total_verifier_stake: 0,
        total_escrow: 0,
        reward_pool: 0,
        bonds_held: 0,
        total_tasks: 0,
        total_work_units: 0,
        reserved: [0; 64],
    });
    emit_event(&Initialized {
        admin: config.admin,
        mint: config.mint,
        reward_authority,
        params,
    });
    Ok(())
}
