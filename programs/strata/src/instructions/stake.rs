use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, Staked};
use crate::state::{Config, Node};
use crate::vault::pay_in;

/// Adds stake: tokens move from the operator's token account into the vault.
#[derive(Accounts)]
pub struct Stake<'info> {
    /// The operator (owns the source token account).
    pub operator: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault, has_one = mint)]
    pub config: Account<'info, Config>,
    /// The node record.
    #[account(mut, seeds = [Node::SEED, operator.key().as_ref()], bump = node.bump, has_one = operator)]
    pub node: Account<'info, Node>,
    /// Source of the stake.
    #[account(
        mut,
        token::mint = mint,
        token::authority = operator,
    )]
    pub operator_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// The mint.
    /// CHECK: compared with the config's mint by `has_one`.
    pub mint: UncheckedAccount<'info>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler(ctx: Context<Stake>, amount: u64) -> Result<()> {
    require!(amount > 0, StrataError::ZeroAmount);
    let a = ctx.accounts;
    let stake = a
        .node
        .stake
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    require!(
        stake >= a.config.params.min_stake,
        StrataError::BelowMinimumStake
    );
    pay_in(
        &a.token_program,
        &a.operator_token,
        &a.vault,
        &a.operator,
        amount,
    )?;
    let verifier_before = a.node.verifier_stake();
    a.node.stake = stake;
    a.node
        .verifier_weight_changed(verifier_before, Clock::get()?.slot);
    let config = &mut a.config;
    config.total_stake = config
        .total_stake
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    config.replace_verifier_stake(verifier_before, a.node.verifier_stake())?;
    emit_event(&Staked {
        operator: a.node.operator,
        amount,
        stake,
    });
    Ok(())
}
