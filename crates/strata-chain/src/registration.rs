//! A node's on-chain presence, for the node and the verifier alike: register
//! if not registered, top the stake up to what the operator asked for, and
//! keep the advertised addresses, capacity and roles current. Every step
//! reads the chain first, so a restart (or a second run) changes nothing that
//! is already right.

use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::limits::{MAX_MULTIADDRS, MAX_MULTIADDR_LEN};
use crate::rpc::ChainClient;
use crate::{ix, Capacity, ChainError};

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

/// Registers with `roles` (compute, verifier: only the roles the process
/// really performs; added to any already registered), stakes up to
/// `target_stake` and updates addresses and capacity.
pub async fn ensure_registered(
    chain: &ChainClient,
    key: &Keypair,
    addrs: &[String],
    capacity: Capacity,
    roles: u8,
    target_stake: u64,
) -> Result<Registration, ChainError> {
    let me = key.pubkey();
    let addrs: Vec<String> = addrs
        .iter()
        .filter(|a| a.len() <= MAX_MULTIADDR_LEN)
        .take(MAX_MULTIADDRS)
        .cloned()
        .collect();
    let existing = chain.node(&me).await?;
    let mut ixs = Vec::new();
    let registered_now = existing.is_none();
    let stake = existing.as_ref().map(|n| n.stake).unwrap_or(0);
    // Adds the roles this process performs to the ones already registered:
    // one key may run a node and a verifier (each adds its own role, neither
    // removes the other's); an operator drops a role with `strata node update`.
    let roles = existing.as_ref().map_or(roles, |n| n.roles | roles);
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
        let ata = crate::pda::associated_token(&me, &config.mint);
        let balance = chain.token_balance(&ata).await.unwrap_or(0);
        if balance < staked_now {
            return Err(ChainError::Invalid(format!(
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
