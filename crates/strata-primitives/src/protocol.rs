//! Plain descriptions of the application's p2p protocols and gossip topics.
//!
//! The p2p layer carries opaque bytes; which request-response protocols and
//! gossip topics exist, and how large their messages may be, is the
//! application's catalogue (`strata-wire`), handed to the p2p layer through its
//! configuration. These types are the common language of the two, free of any
//! libp2p type.

/// A request-response protocol: its libp2p protocol name and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolSpec {
    /// libp2p protocol name, e.g. `/strata/task/1`.
    pub name: &'static str,
    /// Largest request accepted or sent, in bytes.
    pub max_request: usize,
    /// Largest response accepted or sent, in bytes.
    pub max_response: usize,
    /// Seconds allowed for the whole exchange.
    pub timeout_secs: u64,
}

/// A gossip topic: its wire tag (inside the signed envelope), its gossipsub
/// topic name and the largest payload it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicSpec {
    /// Tag written into the signed envelope (unique per topic).
    pub tag: u8,
    /// Gossipsub topic name, e.g. `/strata/capacity/1`.
    pub name: &'static str,
    /// Largest payload inside the envelope, in bytes.
    pub max_payload: usize,
}
