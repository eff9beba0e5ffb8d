use anchor_lang::prelude::*;

use crate::events::{emit_event, NodeUpdated};
use crate::state::{validate_endpoints, Capacity, Config, Node};

/// Changes a node's endpoints, capacity and roles. Operator only.
#[derive(Accounts)]
pub struct UpdateNode<'info> {
    /// The operator.
    pub operator: Signer<'info>,
    /// The config (its verifier-stake total follows role changes).
    #[account(mut, seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The node record.
    #[account(mut, seeds = [Node::SEED, operator.key().as_ref()], bump = node.bump, has_one = operator)]
    pub node: Account<'info, Node>,
}

/// Handler.
pub fn handler(
    ctx: Context<UpdateNode>,
    multiaddrs: Vec<String>,
    capacity: Capacity,
    roles: u8,
) -> Result<()> {
    validate_endpoints(&multiaddrs, roles)?;
    let node = &mut ctx.accounts.node;
    let config = &mut ctx.accounts.config;
    let before = node.verifier_stake();
    node.roles = roles;
    node.capacity = capacity;
    node.multiaddrs = multiaddrs.clone();
    node.verifier_weight_changed(before, Clock::get()?.slot);
    config.replace_verifier_stake(before, node.verifier_stake())?;
    emit_event(&NodeUpdated {
        operator: node.operator,
        roles,
        capacity,
        multiaddrs,
    });
    Ok(())
}
