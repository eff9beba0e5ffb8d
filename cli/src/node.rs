//! Node operator commands: register, update, stake, unstake, withdraw stake,
//! deregister. Each checks what it can locally (is the node registered, is
//! there enough to stake) so that the common mistakes get a plain answer
//! before a transaction is sent.

use anyhow::anyhow;
use strata_chain::limits::{MAX_MULTIADDRS, MAX_MULTIADDR_LEN};
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, Capacity, Keypair, Signer, ROLE_COMPUTE, ROLE_VERIFIER};

use crate::chain;
use crate::output::Output;
use strata_chain::amount::format_tokens;

/// Clap value parser for one multiaddr: non-empty, starts with '/', bounded.
pub fn parse_multiaddr(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "{text:?} is not a multiaddr (expected e.g. /ip4/1.2.3.4/tcp/4001)"
        ));
    }
    if text.len() > MAX_MULTIADDR_LEN {
        return Err(format!(
            "multiaddr is {} bytes, over the {MAX_MULTIADDR_LEN}-byte limit",
            text.len()
        ));
    }
    Ok(text.to_string())
}

/// Role bits from the `--compute` / `--verifier` flags; `None` when neither is set.
pub fn roles(compute: bool, verifier: bool) -> Option<u8> {
    let bits = if compute { ROLE_COMPUTE } else { 0 } | if verifier { ROLE_VERIFIER } else { 0 };
    (bits != 0).then_some(bits)
}

/// Role bits as words.
pub fn role_names(roles: u8) -> Vec<&'static str> {
    let mut names = Vec::new();
    if roles & ROLE_COMPUTE != 0 {
        names.push("compute");
    }
    if roles & ROLE_VERIFIER != 0 {
        names.push("verifier");
    }
    names
}

fn check_count(multiaddrs: &[String]) -> anyhow::Result<()> {
    if multiaddrs.len() > MAX_MULTIADDRS {
        return Err(anyhow!(
            "{} multiaddrs given; a node may register at most {MAX_MULTIADDRS}",
            multiaddrs.len()
        ));
    }
    Ok(())
}

/// What `node update` changes; `None` keeps the on-chain value.
#[derive(Debug, Clone, Default)]
pub struct NodeChanges {
    /// New multiaddrs (replaces all), if any given.
    pub multiaddrs: Vec<String>,
    /// New memory.
    pub memory_mb: Option<u32>,
    /// New compute score.
    pub compute_score: Option<u32>,
    /// New bandwidth.
    pub bandwidth_mbps: Option<u32>,
    /// New role bits.
    pub roles: Option<u8>,
}

/// `strata node register`.
pub async fn register(
    client: &ChainClient,
    operator: &Keypair,
    multiaddrs: Vec<String>,
    capacity: Capacity,
    roles: u8,
    out: Output,
) -> anyhow::Result<()> {
    check_count(&multiaddrs)?;
    let pk = operator.pubkey();
    if client.node(&pk).await.map_err(chain::explain)?.is_some() {
        return Err(anyhow!(
            "node {pk} is already registered; change it with `strata node update`"
        ));
    }
    let sig = chain::send(
        client,
        &[ix::register_node(&pk, multiaddrs, capacity, roles)],
        operator,
    )
    .await?;
    out.signature(sig);
    Ok(())
}

/// `strata node update`.
pub async fn update(
    client: &ChainClient,
    operator: &Keypair,
    changes: NodeChanges,
    out: Output,
) -> anyhow::Result<()> {
    check_count(&changes.multiaddrs)?;
    let pk = operator.pubkey();
    let node = chain::registered_node(client, &pk).await?;
    let multiaddrs = if changes.multiaddrs.is_empty() {
        node.multiaddrs
    } else {
        changes.multiaddrs
    };
    let capacity = Capacity {
        memory_mb: changes.memory_mb.unwrap_or(node.capacity.memory_mb),
        compute_score: changes.compute_score.unwrap_or(node.capacity.compute_score),
        bandwidth_mbps: changes
            .bandwidth_mbps
            .unwrap_or(node.capacity.bandwidth_mbps),
    };
    let roles = changes.roles.unwrap_or(node.roles);
    let sig = chain::send(
        client,
        &[ix::update_node(&pk, multiaddrs, capacity, roles)],
        operator,
    )
    .await?;
    out.signature(sig);
    Ok(())
}

/// `strata stake AMOUNT`.
pub async fn stake(
    client: &ChainClient,
    operator: &Keypair,
    amount: u64,
    out: Output,
) -> anyhow::Result<()> {
    let pk = operator.pubkey();
    let node = chain::registered_node(client, &pk).await?;
    let config = chain::config(client).await?;
    let after = node.stake.saturating_add(amount);
    if after < config.params.min_stake {
        return Err(anyhow!(
            "stake would be {}, below the minimum stake of {}",
            format_tokens(after),
            format_tokens(config.params.min_stake)
        ));
    }
    let (ata, create) = chain::token_account(operator, &config);
    chain::ensure_tokens(client, &ata, amount, "staking").await?;
    let sig = chain::send(
        client,
        &[create, ix::stake(&pk, &ata, &config.mint, amount)],
        operator,
    )
    .await?;
    out.signature(sig);
    Ok(())
}

/// `strata unstake AMOUNT` (`request_unstake`).
pub async fn unstake(
    client: &ChainClient,
    operator: &Keypair,
    amount: u64,
    out: Output,
) -> anyhow::Result<()> {
    let pk = operator.pubkey();
    let node = chain::registered_node(client, &pk).await?;
    if amount > node.stake {
        return Err(anyhow!(
            "insufficient stake: asked to unstake {} but node {pk} has {} bonded",
            format_tokens(amount),
            format_tokens(node.stake)
        ));
    }
    let sig = chain::send(client, &[ix::request_unstake(&pk, amount)], operator).await?;
    out.signature(sig);
    Ok(())
}

/// `strata withdraw-stake`.
pub async fn withdraw_stake(
    client: &ChainClient,
    operator: &Keypair,
    out: Output,
) -> anyhow::Result<()> {
    let pk = operator.pubkey();
    let node = chain::registered_node(client, &pk).await?;
    if node.unbonding == 0 {
        return Err(anyhow!(
            "node {pk} has nothing unbonding; request it first with `strata unstake AMOUNT`"
        ));
    }
    let config = chain::config(client).await?;
    let (ata, create) = chain::token_account(operator, &config);
    let sig = chain::send(client, &[create, ix::withdraw_stake(&pk, &ata)], operator).await?;
    out.signature(sig);
    Ok(())
}

/// `strata node deregister`.
pub async fn deregister(
    client: &ChainClient,
    operator: &Keypair,
    out: Output,
) -> anyhow::Result<()> {
    let pk = operator.pubkey();
    let node = chain::registered_node(client, &pk).await?;
    if node.stake != 0 || node.unbonding != 0 {
        return Err(anyhow!(
            "node {pk} still holds stake ({} bonded, {} unbonding); unstake and withdraw it first",
            format_tokens(node.stake),
            format_tokens(node.unbonding)
        ));
    }
    let sig = chain::send(client, &[ix::deregister_node(&pk)], operator).await?;
    out.signature(sig);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_multiaddrs() {
        assert_eq!(roles(false, false), None);
        assert_eq!(roles(true, false), Some(ROLE_COMPUTE));
        assert_eq!(roles(true, true), Some(ROLE_COMPUTE | ROLE_VERIFIER));
        assert_eq!(
            role_names(ROLE_COMPUTE | ROLE_VERIFIER),
            ["compute", "verifier"]
        );
        assert!(parse_multiaddr("/ip4/127.0.0.1/tcp/4001").is_ok());
        assert!(parse_multiaddr("127.0.0.1:4001").is_err());
        assert!(parse_multiaddr(&format!("/{}", "a".repeat(96))).is_err());
        assert!(check_count(&vec!["/a".to_string(); 5]).is_err());
    }
}
