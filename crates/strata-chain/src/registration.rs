//! On-chain presence: register the node if it is not, top its stake up to
//! what the operator asked for, and keep its advertised addresses and
//! capacity current. Every step reads the chain first, so a restart (or a
//! second run) changes nothing that is already right.

use strata_chain::limits::{MAX_MULTIADDRS, MAX_MULTIADDR_LEN};
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, Capacity, Keypair, Signer, ROLE_COMPUTE, ROLE_VERIFIER};

use crate::NodeError;

/// What the node ended up with on-chain.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// True when this run registered the node.
    pub registered_now: bool,
    /// Tokens staked by this run.
    pub staked_now: u64,
    /// Bonded stake after this run.
    pub stake: u64,
}

/// Registers, stakes up to `target_stake` and updates addresses/capacity.
pub async fn ensure_registered(
    chain: &ChainClient,
    key: &Keypair,
    addrs: &[String],
    capacity: Capacity,
    target_stake: u64,
) -> Result<Registration, NodeError> {
    let me = key.pubkey();
    let addrs: Vec<String> = addrs
        .iter()
        .filter(|a| a.len() <= MAX_MULTIADDR_LEN)
        .take(MAX_MULTIADDRS)
        .cloned()
        .collect();
    let roles = ROLE_COMPUTE | ROLE_VERIFIER;
    let existing = chain.node(&me).await?;
    let mut ixs = Vec::new();
    let registered_now = existing.is_none();
    let stake = existing.as_ref().map(|n| n.stake).unwrap_or(0);
    match &existing {
        None => ixs.push(ix::register_node(&me, addrs, capacity, roles)),
        Some(n) if n.multiaddrs != addrs || n.capacity != capacity || n.roles != roles => {
            ixs.push(ix::update_node(&me, addrs, capacity, roles))
        }
        Some(_) => {}
    }
    let staked_now = target_stake.saturating_sub(stake);
    if staked_now > 0 {
        let config = chain.config().await?;
        let ata = strata_chain::pda::associated_token(&me, &config.mint);
        let balance = chain.token_balance(&ata).await.unwrap_or(0);
        if balance < staked_now {
            return Err(NodeError::Stake(format!(
                "staking {staked_now} needs that many tokens in {ata}, which holds {balance}"
            )));
        }
        ixs.push(ix::stake(&me, &ata, &config.mint, staked_now));
    }
    if !ixs.is_empty() {
        chain.send(&ixs, key, &[]).await?;
    }
    Ok(Registration {
        registered_now,
        staked_now,
        stake: stake + staked_now,
    })
}
