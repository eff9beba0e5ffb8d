//! Strata's peer-to-peer layer.
//!
//! What it is: a rust-libp2p swarm (TCP and QUIC, noise, yamux, identify,
//! ping, Kademlia, optional mDNS, gossipsub, request-response, AutoNAT,
//! circuit relay v2 and DCUtR) whose identity is the operator's Solana key,
//! plus verified chunked distribution of large files between peers. The node,
//! verifier and relayer use it through [`P2pHandle`] (commands) and
//! [`P2pEvents`] (what happened).
//!
//! What it is not: it knows nothing of tasks, receipts or models. The
//! application registers its request-response protocols ([`ProtocolSpec`])
//! and gossip topics ([`TopicSpec`]) in [`P2pConfig`]; their payloads are
//! opaque bytes here. The layer keeps only its own chunk exchange and file
//! announcements. No libp2p type appears in its API: peers are [`NodeId`]s
//! (Solana pubkeys), addresses are multiaddr strings.
//!
//! Every message from the network is size-limited before it is read and
//! validated before it reaches the application; a peer that sends malformed
//! data, forged signatures or corrupt chunks is penalised ([`Misbehaviour`])
//! and banned.
//!
//! Inside, one task owns the swarm ([`start`] spawns it) and polls small state
//! machines, each in its own module: `peers` (penalties, bans, request
//! budgets), `requests` (application request-response), `gossip` (signed
//! envelopes and topic registry), `distribution` (downloads, super-seeding,
//! announcements) and `transport` (building the swarm).

#![warn(missing_docs)]

mod behaviour;
mod codec;
mod config;
mod distribution;
mod error;
mod event;
mod event_loop;
mod gossip;
mod handle;
mod identity;
mod nat;
mod peers;
mod requests;
mod transport;

pub use codec::DecodeError;
pub use config::{P2pConfig, RelayLimits};
pub use distribution::{DownloadOptions, DownloadReport, FileRoot, Manifest, ManifestError};
pub use error::P2pError;
pub use event::{P2pEvent, Reachability};
pub use event_loop::start;
pub use gossip::{Envelope, GossipError};
pub use handle::{NodeStats, P2pEvents, P2pHandle};
pub use identity::{peer_id_of, solana_pubkey_of, IdentityError, NodeId, NodeIdentity};
/// libp2p's peer id, re-exported for the identity conversions only.
pub use libp2p::PeerId;
pub use peers::{Direction, Misbehaviour, Protocol, Severity};
pub use requests::IncomingRequest;
pub use strata_primitives::protocol::{ProtocolSpec, TopicSpec};
