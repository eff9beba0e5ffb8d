//! Building the swarm: transports (TCP and QUIC with noise and yamux, DNS,
//! the relay client), the composed behaviour, listeners, external addresses,
//! and the first dials to bootstrap and static peers.

use std::collections::HashSet;

use libp2p::multiaddr::Protocol;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use strata_primitives::protocol::ProtocolSpec;

use crate::behaviour::Behaviour;
use crate::config::P2pConfig;
use crate::error::P2pError;
use crate::identity::NodeIdentity;

/// A swarm speaking every protocol of `config`, with the application's
/// request `protocols` (already checked) and gossip frames sized for
/// `max_gossip_payload`. Not listening yet.
pub(crate) fn build(
    identity: &NodeIdentity,
    config: &P2pConfig,
    protocols: &[ProtocolSpec],
    max_gossip_payload: usize,
) -> Result<Swarm<Behaviour>, P2pError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_quic()
        // `/dns4/…` and `/dns/…` addresses (bootstrap lists, registered
        // multiaddrs) resolve through the system resolver.
        .with_dns()
        .map_err(|e| P2pError::Transport(format!("dns resolver (/etc/resolv.conf): {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config, protocols, max_gossip_payload)
                .map_err(|e| Box::new(e) as _)
        })
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}

/// Listens on `config.listen`, declares the external addresses, adds
/// bootstrap and static peers to Kademlia and dials them. Returns the static
/// peers, which are kept connected.
pub(crate) fn listen_and_dial(
    swarm: &mut Swarm<Behaviour>,
    config: &P2pConfig,
) -> Result<Vec<(PeerId, Multiaddr)>, P2pError> {
    for a in &config.listen {
        swarm
            .listen_on(parse_addr(a)?)
            .map_err(|e| P2pError::Transport(format!("listen on {a}: {e}")))?;
    }
    for a in &config.external_addresses {
        swarm.add_external_address(parse_addr(a)?);
    }
    let mut static_peers = Vec::new();
    for a in config.bootstrap.iter().chain(&config.static_peers) {
        let addr = parse_addr(a)?;
        let peer = peer_of(&addr).ok_or_else(|| {
            P2pError::InvalidAddress(format!("{a}: bootstrap/static peers need /p2p/<id>"))
        })?;
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        if config.static_peers.contains(a) {
            static_peers.push((peer, addr.clone()));
        }
        if let Err(e) = swarm.dial(addr) {
            tracing::warn!("dial {a}: {e}");
        }
    }
    if !config.bootstrap.is_empty() {
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }
    Ok(static_peers)
}

/// Our listen and external addresses, each ending in `/p2p/<our peer id>`
/// so they can be handed to other nodes or registered on-chain as they are.
pub(crate) fn listen_addrs(swarm: &Swarm<Behaviour>) -> Vec<String> {
    let mut seen = HashSet::new();
    own_addrs(swarm)
        .map(|a| a.to_string())
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// The addresses put in file announcements: ours, without unspecified
/// (`0.0.0.0`) listeners, which no peer could dial.
pub(crate) fn announced_addrs(swarm: &Swarm<Behaviour>) -> Vec<String> {
    own_addrs(swarm)
        .filter(|a| {
            !a.iter()
                .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
        })
        .map(|a| a.to_string())
        .collect()
}

fn own_addrs(swarm: &Swarm<Behaviour>) -> impl Iterator<Item = Multiaddr> + '_ {
    let me = *swarm.local_peer_id();
    swarm
        .listeners()
        .chain(swarm.external_addresses())
        .map(move |a| a.clone().with_p2p(me).unwrap_or_else(|a| a))
}

/// A multiaddr from a string, or a clear error naming it.
pub(crate) fn parse_addr(s: &str) -> Result<Multiaddr, P2pError> {
    s.parse()
        .map_err(|e| P2pError::InvalidAddress(format!("{s}: {e}")))
}

/// The peer id an address ends with (`…/p2p/<id>`).
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_name_their_peer() {
        let id = NodeIdentity::generate();
        let a = parse_addr(&format!("/ip4/1.2.3.4/tcp/1/p2p/{}", id.peer_id())).unwrap();
        assert_eq!(peer_of(&a), Some(id.peer_id()));
        assert_eq!(peer_of(&parse_addr("/ip4/1.2.3.4/tcp/1").unwrap()), None);
        assert!(matches!(
            parse_addr("not an address"),
            Err(P2pError::InvalidAddress(_))
        ));
    }
}
