//! How this node is reachable: AutoNAT's verdict and the relayed addresses
//! we listen on.

use libp2p::multiaddr::Protocol;
use libp2p::{autonat, Multiaddr};

use crate::event::Reachability;

/// AutoNAT status and relay listen addresses.
pub(crate) struct Nat {
    status: autonat::NatStatus,
    relayed: Vec<Multiaddr>,
}

impl Nat {
    /// Nothing known yet.
    pub(crate) fn new() -> Self {
        Nat {
            status: autonat::NatStatus::Unknown,
            relayed: Vec::new(),
        }
    }

    /// A new listen address; returns whether it is a relayed one (which
    /// changes our reachability).
    pub(crate) fn on_listen_addr(&mut self, addr: &Multiaddr) -> bool {
        let relayed = addr.iter().any(|p| p == Protocol::P2pCircuit);
        if relayed {
            self.relayed.push(addr.clone());
        }
        relayed
    }

    /// A listen address went away.
    pub(crate) fn on_expired_addr(&mut self, addr: &Multiaddr) {
        self.relayed.retain(|a| a != addr);
    }

    /// AutoNAT changed its mind.
    pub(crate) fn on_status(&mut self, status: autonat::NatStatus) {
        self.status = status;
    }

    /// Relayed addresses win: a NATed node with a reservation is reachable.
    pub(crate) fn reachability(&self) -> Reachability {
        if !self.relayed.is_empty() {
            return Reachability::Relayed(self.relayed.iter().map(|a| a.to_string()).collect());
        }
        match &self.status {
            autonat::NatStatus::Public(a) => Reachability::Public(vec![a.to_string()]),
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_reservation_makes_a_private_node_reachable() {
        let mut n = Nat::new();
        assert_eq!(n.reachability(), Reachability::Unknown);
        n.on_status(autonat::NatStatus::Private);
        assert_eq!(n.reachability(), Reachability::Private);
        let direct: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        assert!(!n.on_listen_addr(&direct));
        let circuit: Multiaddr = "/ip4/1.2.3.4/tcp/4001/p2p-circuit".parse().unwrap();
        assert!(n.on_listen_addr(&circuit));
        assert_eq!(
            n.reachability(),
            Reachability::Relayed(vec![circuit.to_string()])
        );
        n.on_expired_addr(&circuit);
        assert_eq!(n.reachability(), Reachability::Private);
    }
}
