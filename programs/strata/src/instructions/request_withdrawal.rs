use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, WithdrawalRequested};
use crate::state::{Config, Escrow};

/// Starts the withdrawal delay for `amount` of a client's escrow. Vouchers
/// the client already signed can still be redeemed meanwhile.
#[derive(Accounts)]
pub struct RequestWithdrawal<'info> {
    /// The client.
    pub client: Signer<'info>,
    /// The config.
    #[account(seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The client's escrow.
    #[account(mut, seeds = [Escrow::SEED, client.key().as_ref()], bump = escrow.bump, has_one = client)]
    pub escrow: Account<'info, Escrow>,
}

/// Handler.
pub fn handler(ctx: Context<RequestWithdrawal>, amount: u64) -> Result<()> {
    require!(amount > 0, StrataError::ZeroAmount);
    let escrow = &mut ctx.accounts.escrow;
    require!(amount <= escrow.balance, StrataError::InsufficientEscrow);
    escrow.pending_withdrawal = amount;
    escrow.withdraw_after = Clock::get()?
        .unix_timestamp
        .checked_add(ctx.accounts.config.params.escrow_withdraw_delay)
        .ok_or(StrataError::MathOverflow)?;
    emit_event(&WithdrawalRequested {
        client: escrow.client,
        amount,
        withdraw_after: escrow.withdraw_after,
    });
    Ok(())
}
