//! Configuration of the p2p layer.

use std::time::Duration;

use strata_primitives::protocol::{ProtocolSpec, TopicSpec};

use crate::peers::ScoreConfig;

/// Limits a public node applies when serving as a circuit relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Relayed connections at once.
    pub max_circuits: usize,
    /// Relayed connections per peer.
    pub max_circuits_per_peer: usize,
    /// Bytes per relayed connection before it is cut (hole punching should
    /// take over long before).
    pub max_circuit_bytes: u64,
    /// Lifetime of a relayed connection.
    pub max_circuit_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_circuits: 64,
            max_circuits_per_peer: 4,
            max_circuit_bytes: 16 << 20,
            max_circuit_duration: Duration::from_secs(120),
        }
    }
}

/// Everything the swarm needs besides the identity.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` and
    /// `/ip4/0.0.0.0/udp/4001/quic-v1`.
    pub listen: Vec<String>,
    /// Bootstrap peers (`.../p2p/<peer id>`), from the config file and from the
    /// chain's node registry. Added to Kademlia and dialled at start.
    pub bootstrap: Vec<String>,
    /// Static peers: dialled at start and re-dialled when the connection drops.
    pub static_peers: Vec<String>,
    /// Addresses known to be reachable from outside (e.g. a public IP).
    pub external_addresses: Vec<String>,
    /// LAN mode: discover peers with mDNS.
    pub mdns: bool,
    /// Serve Kademlia queries (set on public nodes); `None` lets libp2p decide
    /// from confirmed external addresses.
    pub kad_server: Option<bool>,
    /// Act as a circuit relay v2 for NATed peers, with these limits.
    pub relay_server: Option<RelayLimits>,
    /// The application's request-response protocols, each with its limits.
    /// Names must be unique and must not be one of the layer's own
    /// protocols; [`start`](crate::start) refuses the config otherwise.
    pub protocols: Vec<ProtocolSpec>,
    /// The application's gossip topics, each with its payload limit. Tags and
    /// names must be unique and must not be those of the layer's own file
    /// announcements; [`start`](crate::start) refuses the config otherwise.
    pub topics: Vec<TopicSpec>,
    /// Time-out of one chunk request.
    pub chunk_timeout: Duration,
    /// Cap on the bytes per second this node uploads for file distribution
    /// (`None` = unlimited).
    pub upload_rate_limit: Option<u64>,
    /// Super-seed the files this node publishes: each chunk goes to one
    /// downloader at a time and the others get it from that peer.
    pub super_seed: bool,
    /// Chunk requests in flight per peer.
    pub max_requests_per_peer: usize,
    /// Chunk requests in flight per download.
    pub max_requests_per_download: usize,
    /// Penalty points at which a peer is disconnected and banned.
    pub ban_threshold: u32,
    /// Time for a peer's penalty points to halve.
    pub penalty_half_life: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Sustained inbound requests per second accepted from one peer (all
    /// protocols together). A gateway streaming many tasks from one node polls
    /// about once per generated token, and a chunk transfer at 100 MB/s is
    /// ~400 requests/s: both stay well below the default.
    pub request_rate: u32,
    /// Inbound requests one peer may send in a burst.
    pub request_burst: u32,
    /// How long a quiet connection is kept open.
    pub idle_connection_timeout: Duration,
    /// AutoNAT: only consider global IPs (false for test networks).
    pub autonat_only_global_ips: bool,
    /// Agent string sent with identify.
    pub agent: String,
    /// Test only: flip a byte of every chunk this node uploads, to play a
    /// malicious seeder against real peers.
    #[doc(hidden)]
    pub test_corrupt_uploads: bool,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: vec![],
            static_peers: vec![],
            external_addresses: vec![],
            mdns: false,
            kad_server: None,
            relay_server: None,
            protocols: vec![],
            topics: vec![],
            chunk_timeout: Duration::from_secs(60),
            upload_rate_limit: None,
            super_seed: true,
            max_requests_per_peer: 4,
            max_requests_per_download: 16,
            ban_threshold: 100,
            penalty_half_life: Duration::from_secs(600),
            ban_duration: Duration::from_secs(3600),
            request_rate: 2000,
            request_burst: 4000,
            idle_connection_timeout: Duration::from_secs(60),
            autonat_only_global_ips: true,
            agent: format!("strata/{}", env!("CARGO_PKG_VERSION")),
            test_corrupt_uploads: false,
        }
    }
}

impl P2pConfig {
    /// A config for tests and benchmarks on one machine: TCP on 127.0.0.1
    /// only, Kademlia in server mode, private addresses accepted by AutoNAT.
    pub fn local() -> Self {
        P2pConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            kad_server: Some(true),
            autonat_only_global_ips: false,
            ..P2pConfig::default()
        }
    }

    /// This config with exactly these application protocols registered
    /// (replacing any registered before).
    pub fn with_protocols(mut self, protocols: &[ProtocolSpec]) -> Self {
        self.protocols = protocols.to_vec();
        self
    }

    /// This config with exactly these application gossip topics registered
    /// (replacing any registered before).
    pub fn with_topics(mut self, topics: &[TopicSpec]) -> Self {
        self.topics = topics.to_vec();
        self
    }

    /// The penalty and request-budget rules derived from this config.
    pub(crate) fn score_config(&self) -> ScoreConfig {
        ScoreConfig {
            ban_threshold: self.ban_threshold,
            penalty_half_life: self.penalty_half_life,
            ban_duration: self.ban_duration,
            request_rate: self.request_rate,
            request_burst: self.request_burst,
        }
    }
}
