//! A node's on-chain presence, for the node and the verifier alike: register
//! if not registered, top the stake up to what the operator asked for, and
//! keep the advertised addresses, capacity and roles current. Every step
//! reads the chain first, so a restart (or a second run) changes nothing that
//! is already right. What is advertised is what other machines can dial
//! ([`reachable_addrs`]).

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

/// Who can dial a multiaddr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Nobody: the unspecified address (`0.0.0.0`, `::`), which a listener
    /// binds to mean every interface.
    Nobody,
    /// Only this machine: loopback (`127.0.0.0/8`, `::1`, `localhost`).
    ThisMachine,
    /// Other machines too (a LAN or public address, or a DNS name).
    Others,
}

/// Who can dial `addr`, from its first component.
pub fn reach(addr: &str) -> Reach {
    let mut parts = addr.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => match ip.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => Reach::Nobody,
            Ok(ip) if ip.is_loopback() => Reach::ThisMachine,
            _ => Reach::Others,
        },
        (Some("dns" | "dns4" | "dns6"), Some("localhost")) => Reach::ThisMachine,
        _ => Reach::Others,
    }
}

/// The addresses worth advertising to other machines, in their order:
/// never an unspecified one, which nobody can dial, and no loopback one when
/// any other is left, since another machine dialling it reaches itself. A
/// process listening on `0.0.0.0` reports one address per interface,
/// loopback usually first: kept as they were, the few registry slots could
/// all go to addresses only this machine can use. Loopback-only lists (a
/// testnet on one machine) stay.
pub fn reachable_addrs(addrs: &[String]) -> Vec<String> {
    let others = addrs.iter().any(|a| reach(a) == Reach::Others);
    addrs
        .iter()
        .filter(|a| match reach(a) {
            Reach::Nobody => false,
            Reach::ThisMachine => !others,
            Reach::Others => true,
        })
        .cloned()
        .collect()
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
    let addrs: Vec<String> = reachable_addrs(addrs)
        .into_iter()
        .filter(|a| a.len() <= MAX_MULTIADDR_LEN)
        .take(MAX_MULTIADDRS)
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

#[cfg(test)]
mod tests {
    use super::reachable_addrs;

    fn v(addrs: &[&str]) -> Vec<String> {
        addrs.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn loopback_goes_when_a_lan_address_is_there() {
        let id = "/p2p/12D3KooWExample";
        let listening = v(&[
            &format!("/ip4/127.0.0.1/tcp/4001{id}"),
            &format!("/ip4/10.78.0.2/tcp/4001{id}"),
            &format!("/ip6/::1/tcp/4001{id}"),
            &format!("/ip4/0.0.0.0/tcp/4001{id}"),
            &format!("/dns4/localhost/tcp/4001{id}"),
            &format!("/dns4/node.lan/tcp/4001{id}"),
        ]);
        assert_eq!(
            reachable_addrs(&listening),
            v(&[
                &format!("/ip4/10.78.0.2/tcp/4001{id}"),
                &format!("/dns4/node.lan/tcp/4001{id}"),
            ])
        );
    }

    #[test]
    fn a_machine_alone_keeps_loopback_but_never_unspecified() {
        let local = v(&[
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/1",
        ]);
        assert_eq!(reachable_addrs(&local), v(&["/ip4/127.0.0.1/tcp/4001"]));
        assert!(reachable_addrs(&[]).is_empty());
    }
}
