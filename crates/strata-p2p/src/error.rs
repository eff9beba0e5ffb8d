//! The error type of the p2p layer.

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
    /// The application's protocols or topics cannot be registered as given
    /// (a name or tag used twice, or one the p2p layer keeps for itself).
    #[error("registration refused: {0}")]
    Registration(String),
    /// A request on a protocol the application did not register.
    #[error("protocol {0} is not registered")]
    UnknownProtocol(String),
    /// A publication on a topic the application did not register.
    #[error("gossip topic {0} is not registered")]
    UnknownTopic(String),
    /// Local storage failed.
    #[error("store: {0}")]
    Store(String),
    /// This file is already being downloaded or is complete.
    #[error("already downloading or complete: {0}")]
    Busy(String),
    /// The application stopped serving this file while it was fetched
    /// ([`P2pHandle::stop_seeding`](crate::P2pHandle::stop_seeding)).
    #[error("stopped: {0}")]
    Stopped(String),
    /// The event loop has stopped.
    #[error("p2p node has shut down")]
    Shutdown,
}
