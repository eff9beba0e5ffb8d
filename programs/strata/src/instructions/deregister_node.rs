use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, NodeDeregistered};
use crate::state::Node;

/// Closes a node record that holds no stake; rent returns to the operator.
#[derive(Accounts)]
pub struct DeregisterNode<'info> {
    /// The operator.
    #[account(mut)]
    pub operator: Signer<'info>,
    /// The node record.
    #[account(
        mut,
        close = operator,
        seeds = [Node::SEED, operator.key().as_ref()],
        bump = node.bump,
        has_one = operator,
    )]
    pub node: Account<'info, Node>,
}

/// Handler.
pub fn handler(ctx: Context<DeregisterNode>) -> Result<()> {
    let node = &ctx.accounts.node;
    require!(
        node.stake == 0 && node.unbonding == 0,
        StrataError::NodeHasStake
    );
    require!(node.open_challenges == 0, StrataError::ChallengePending);
    emit_event(&NodeDeregistered {
        operator: node.operator,
    });
    Ok(())
}
