use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, Deposited};
use crate::state::{Config, Escrow, STATE_VERSION};
use crate::vault::pay_in;

/// Adds to a client's escrow, creating it on first use.
#[derive(Accounts)]
pub struct Deposit<'info> {
    /// The client; pays rent on first use.
    #[account(mut)]
    pub client: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The client's escrow.
    #[account(
        init_if_needed,
        payer = client,
        space = 8 + Escrow::INIT_SPACE,
        seeds = [Escrow::SEED, client.key().as_ref()],
        bump,
    )]
    pub escrow: Account<'info, Escrow>,
    /// Source token account.
    #[account(
        mut,
        token::mint = config.mint,
        token::authority = client,
    )]
    pub client_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(ctx: Context<Deposit>, amount: u64) -> Result<()> {
    require!(amount > 0, StrataError::ZeroAmount);
    let a = ctx.accounts;
    if a.escrow.version == 0 {
        // First use: init_if_needed zeroed it; fill in the identity once.
        a.escrow.version = STATE_VERSION;
        a.escrow.bump = ctx.bumps.escrow;
        a.escrow.client = a.client.key();
    }
    pay_in(
        &a.token_program,
        &a.client_token,
        &a.vault,
        &a.client,
        amount,
    )?;
    a.escrow.balance = a
        .escrow
        .balance
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    a.config.total_escrow = a
        .config
        .total_escrow
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    emit_event(&Deposited {
        client: a.escrow.client,
        amount,
        balance: a.escrow.balance,
    });
    Ok(())
}
