use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, Withdrawn};
use crate::state::{Config, Escrow};
use crate::vault::pay_out;

/// Pays out a requested withdrawal after its delay, capped by what is left
/// in the escrow after vouchers were redeemed.
#[derive(Accounts)]
pub struct Withdraw<'info> {
    /// The client.
    pub client: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The client's escrow.
    #[account(mut, seeds = [Escrow::SEED, client.key().as_ref()], bump = escrow.bump, has_one = client)]
    pub escrow: Account<'info, Escrow>,
    /// Destination token account.
    #[account(mut, token::mint = config.mint)]
    pub client_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler(ctx: Context<Withdraw>) -> Result<()> {
    let a = ctx.accounts;
    require!(
        a.escrow.pending_withdrawal > 0,
        StrataError::NothingToWithdraw
    );
    require!(
        Clock::get()?.unix_timestamp >= a.escrow.withdraw_after,
        StrataError::WithdrawalDelayNotElapsed
    );
    let amount = a.escrow.pending_withdrawal.min(a.escrow.balance);
    require!(amount > 0, StrataError::NothingToWithdraw);
    a.escrow.pending_withdrawal = 0;
    a.escrow.balance -= amount;
    a.config.total_escrow = a
        .config
        .total_escrow
        .checked_sub(amount)
        .ok_or(StrataError::MathOverflow)?;
    pay_out(
        &a.token_program,
        &a.config,
        &a.vault,
        a.client_token.to_account_info(),
        amount,
    )?;
    emit_event(&Withdrawn {
        client: a.escrow.client,
        amount,
    });
    Ok(())
}
