//! What the layer tells the application, in the application's terms.

use strata_primitives::protocol::TopicSpec;

use crate::distribution::FileRoot;
use crate::identity::NodeId;
use crate::peers::Misbehaviour;
use crate::requests::IncomingRequest;

/// How this node can be reached from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet (AutoNAT has not concluded).
    Unknown,
    /// Directly reachable at these addresses.
    Public(Vec<String>),
    /// Behind NAT/firewall, with no relay reservation yet.
    Private,
    /// Behind NAT, reachable through these relayed (`/p2p-circuit`) addresses.
    Relayed(Vec<String>),
}

/// Events from the network.
#[derive(Debug)]
pub enum P2pEvent {
    /// Now listening on an address.
    Listening {
        /// The address.
        addr: String,
    },
    /// A connection to a peer was opened.
    PeerConnected {
        /// The peer.
        node: NodeId,
        /// Remote address of this connection.
        addr: String,
        /// Whether it goes through a relay.
        relayed: bool,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        node: NodeId,
    },
    /// identify told us about a peer.
    PeerIdentified {
        /// The peer.
        node: NodeId,
        /// Its agent string.
        agent: String,
        /// The addresses it listens on.
        addrs: Vec<String>,
    },
    /// A validated gossip message (signature checked, sender == author) on
    /// one of the application's topics.
    Gossip {
        /// The topic, as the application registered it.
        topic: TopicSpec,
        /// The signer, i.e. the original publisher.
        from: NodeId,
        /// Application bytes.
        payload: Vec<u8>,
    },
    /// A request to answer.
    Request(IncomingRequest),
    /// Our reachability changed.
    Reachability(Reachability),
    /// A relay accepted our reservation.
    RelayReservation {
        /// The relay.
        relay: NodeId,
    },
    /// A hole-punch (DCUtR) attempt finished.
    HolePunch {
        /// The remote peer.
        node: NodeId,
        /// `Ok` if a direct connection replaced the relayed one.
        result: Result<(), String>,
    },
    /// A peer misbehaved and was penalised (and banned when `banned`).
    PeerPenalised {
        /// The peer.
        node: NodeId,
        /// What it did (its `Display` is the log line).
        reason: Misbehaviour,
        /// Whether it is now disconnected and refused.
        banned: bool,
    },
    /// A download made progress.
    DownloadProgress {
        /// The file.
        root: FileRoot,
        /// Chunks held.
        have: u32,
        /// Chunks in the file.
        total: u32,
        /// Bytes held.
        bytes: u64,
        /// Size of the file in bytes.
        size: u64,
    },
}
