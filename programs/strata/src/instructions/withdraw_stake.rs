use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, StakeWithdrawn};
use crate::state::{Config, Node};
use crate::vault::pay_out;

/// Pays out unbonded stake once the unbonding period has ended and no
/// challenge against the node is open.
#[derive(Accounts)]
pub struct WithdrawStake<'info> {
    /// The operator.
    pub operator: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The node record.
    #[account(mut, seeds = [Node::SEED, operator.key().as_ref()], bump = node.bump, has_one = operator)]
    pub node: Account<'info, Node>,
    /// Destination token account.
    #[account(mut, token::mint = config.mint)]
    pub operator_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler(ctx: Context<WithdrawStake>) -> Result<()> {
    let a = ctx.accounts;
    let amount = a.node.unbonding;
    require!(amount > 0, StrataError::NothingToWithdraw);
    require!(a.node.open_challenges == 0, StrataError::ChallengePending);
    require!(
        Clock::get()?.unix_timestamp >= a.node.unbonding_ends,
        StrataError::UnbondingNotElapsed
    );
    a.node.unbonding = 0;
    a.config.total_stake = a
        .config
        .total_stake
        .checked_sub(amount)
        .ok_or(StrataError::MathOverflow)?;
    pay_out(
        &a.token_program,
        &a.config,
        &a.vault,
        a.operator_token.to_account_info(),
        amount,
    )?;
    emit_event(&StakeWithdrawn {
        operator: a.node.operator,
        amount,
    });
    Ok(())
}
