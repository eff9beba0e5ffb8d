//! Strata's peer-to-peer layer.
//!
//! What it is: a rust-libp2p swarm (TCP and QUIC, noise, yamux, identify,
//! ping, Kademlia, optional mDNS, gossipsub, request-response, AutoNAT,
//! circuit relay v2 and DCUtR) whose identity is the operator's Solana key,
//! plus verified chunked distribution of large files between peers. The node,
//! verifier and relayer use it through [`P2pHandle`] (commands) and
//! [`P2pEvents`] (what happened); application payloads are opaque bytes here.
//!
//! What it is not: it knows nothing of tasks, receipts or models, and no libp2p
//! type appears in its API: peers are [`NodeId`]s (Solana pubkeys), addresses
//! are multiaddr strings.
//!
//! Every message from the network is size-limited before it is read and
//! validated before it reaches the application; a peer that sends malformed
//! data, forged signatures or corrupt chunks is penalised and banned.

#![warn(missing_docs)]

mod behaviour;
pub mod codec;
pub mod config;
pub mod distribution;
pub mod gossip;
mod handle;
pub mod identity;
mod peer_score;
mod swarm;

pub use config::{P2pConfig, RelayLimits, RequestKind, RequestLimits};
pub use distribution::manifest::{FileRoot, Manifest};
pub use gossip::GossipKind;
pub use handle::{
    DownloadOptions, DownloadReport, IncomingRequest, NodeStats, P2pEvent, P2pEvents, P2pHandle,
    Reachability,
};
pub use identity::{peer_id_of, solana_pubkey_of, NodeId, NodeIdentity};
/// libp2p's peer id, re-exported for the identity conversions only.
pub use libp2p::PeerId;
pub use swarm::start;

/// Errors of the p2p layer.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A multiaddr string did not parse or lacks a needed part.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// Building or using a transport failed.
    #[error("transport: {0}")]
    Transport(String),
    /// Dialling failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// A request failed (unreachable peer, unsupported protocol, closed connection).
    #[error("request failed: {0}")]
    Request(String),
    /// A request timed out.
    #[error("request timed out")]
    Timeout,
    /// A payload is over its limit.
    #[error("payload of {len} bytes exceeds limit {limit}")]
    TooLarge {
        /// Size given.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// Publishing gossip failed (e.g. no peers on the topic yet).
    #[error("gossip: {0}")]
    Gossip(String),
    /// Local storage failed.
    #[error("store: {0}")]
    Store(String),
    /// This file is already being downloaded or is complete.
    #[error("already downloading or complete: {0}")]
    Busy(String),
    /// The event loop has stopped.
    #[error("p2p node has shut down")]
    Shutdown,
}

impl From<distribution::store::StoreError> for P2pError {
    fn from(e: distribution::store::StoreError) -> Self {
        P2pError::Store(e.to_string())
    }
}
