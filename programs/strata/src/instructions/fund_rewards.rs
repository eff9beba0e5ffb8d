use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, RewardsFunded};
use crate::state::Config;
use crate::vault::pay_in;

/// Adds tokens to the reward pool (testnet emissions, donations).
#[derive(Accounts)]
pub struct FundRewards<'info> {
    /// The funder.
    pub funder: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// Source token account.
    #[account(
        mut,
        token::mint = config.mint,
        token::authority = funder,
    )]
    pub funder_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler(ctx: Context<FundRewards>, amount: u64) -> Result<()> {
    require!(amount > 0, StrataError::ZeroAmount);
    let a = ctx.accounts;
    pay_in(
        &a.token_program,
        &a.funder_token,
        &a.vault,
        &a.funder,
        amount,
    )?;
    a.config.reward_pool = a
        .config
        .reward_pool
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    emit_event(&RewardsFunded {
        funder: a.funder.key(),
        amount,
    });
    Ok(())
}
