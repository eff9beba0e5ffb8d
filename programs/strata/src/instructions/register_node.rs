use anchor_lang::prelude::*;

use crate::events::{emit_event, NodeUpdated};
use crate::state::{validate_endpoints, Capacity, Node, STATE_VERSION};

/// Registers a node under its operator's key (which is also its libp2p identity).
#[derive(Accounts)]
pub struct RegisterNode<'info> {
    /// The operator; pays rent.
    #[account(mut)]
    pub operator: Signer<'info>,
    /// The node record.
    #[account(
        init,
        payer = operator,
        space = 8 + Node::INIT_SPACE,
        seeds = [Node::SEED, operator.key().as_ref()],
        bump,
    )]
    pub node: Account<'info, Node>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(
    ctx: Context<RegisterNode>,
    multiaddrs: Vec<String>,
    capacity: Capacity,
    roles: u8,
) -> Result<()> {
    validate_endpoints(&multiaddrs, roles)?;
    let operator = ctx.accounts.operator.key();
    ctx.accounts.node.set_inner(Node {
        version: STATE_VERSION,
        bump: ctx.bumps.node,
        operator,
        roles,
        capacity,
        multiaddrs: multiaddrs.clone(),
        stake: 0,
        unbonding: 0,
        unbonding_ends: 0,
        open_challenges: 0,
        slashed_total: 0,
        // No stake yet: the verifier weight starts when stake arrives.
        verifier_since_slot: 0,
        registered_at: Clock::get()?.unix_timestamp,
        reserved: [0; 32],
    });
    emit_event(&NodeUpdated {
        operator,
        roles,
        capacity,
        multiaddrs,
    });
    Ok(())
}
