use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, UnstakeRequested};
use crate::state::{Config, Node};

/// Moves bonded stake to unbonding. It stays in the vault, and slashable,
/// until the unbonding period ends; a new request restarts the clock.
#[derive(Accounts)]
pub struct RequestUnstake<'info> {
    /// The operator.
    pub operator: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The node record.
    #[account(mut, seeds = [Node::SEED, operator.key().as_ref()], bump = node.bump, has_one = operator)]
    pub node: Account<'info, Node>,
}

/// Handler.
pub fn handler(ctx: Context<RequestUnstake>, amount: u64) -> Result<()> {
    require!(amount > 0, StrataError::ZeroAmount);
    let node = &mut ctx.accounts.node;
    let config = &mut ctx.accounts.config;
    require!(amount <= node.stake, StrataError::InsufficientStake);
    let verifier_before = node.verifier_stake();
    node.stake -= amount;
    node.unbonding = node
        .unbonding
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    node.unbonding_ends = Clock::get()?
        .unix_timestamp
        .checked_add(config.params.unbonding_period)
        .ok_or(StrataError::MathOverflow)?;
    config.replace_verifier_stake(verifier_before, node.verifier_stake())?;
    emit_event(&UnstakeRequested {
        operator: node.operator,
        amount,
        unbonding_ends: node.unbonding_ends,
    });
    Ok(())
}
