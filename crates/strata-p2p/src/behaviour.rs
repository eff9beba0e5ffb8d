//! The composed `NetworkBehaviour`: every protocol a Strata peer speaks.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, dcutr, gossipsub, identify, kad, mdns, ping, relay, PeerId, StreamProtocol};
use strata_primitives::protocol::ProtocolSpec;

use crate::config::P2pConfig;
use crate::distribution::{chunk_behaviour, ChunkRr, CHUNK_PROTOCOL};
use crate::error::P2pError;
use crate::gossip::ENVELOPE_OVERHEAD;
use crate::requests::AppProtocols;

/// Kademlia protocol name: a private DHT, not the public IPFS one.
const KAD_PROTOCOL: &str = "/strata/kad/1";
/// identify protocol version string.
const IDENTIFY_PROTOCOL: &str = "/strata/id/1";

/// The layer's own request-response protocol names, which no application
/// protocol may take.
pub(crate) const INTERNAL_PROTOCOLS: &[&str] = &[CHUNK_PROTOCOL, KAD_PROTOCOL];

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) app: AppProtocols,
    pub(crate) chunks: ChunkRr,
}

impl Behaviour {
    /// Every protocol, configured from `cfg`; the application's request
    /// protocols are `protocols` (already checked), and gossip frames are
    /// sized for topics carrying up to `max_gossip_payload`.
    pub(crate) fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        cfg: &P2pConfig,
        protocols: &[ProtocolSpec],
        max_gossip_payload: usize,
    ) -> Result<Self, P2pError> {
        let peer_id = key.public().to_peer_id();

        let relay_server = cfg.relay_server.map(|l| {
            relay::Behaviour::new(
                peer_id,
                relay::Config {
                    max_reservations: l.max_reservations,
                    max_circuits: l.max_circuits,
                    max_circuits_per_peer: l.max_circuits_per_peer,
                    max_circuit_bytes: l.max_circuit_bytes,
                    max_circuit_duration: l.max_circuit_duration,
                    ..Default::default()
                },
            )
        });

        let autonat = autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                only_global_ips: cfg.autonat_only_global_ips,
                boot_delay: Duration::from_secs(2),
                retry_interval: Duration::from_secs(10),
                refresh_interval: Duration::from_secs(60),
                throttle_server_period: Duration::from_secs(1),
                ..Default::default()
            },
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(cfg.agent.clone()),
        );

        let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        kad.set_mode(cfg.kad_server.map(|s| {
            if s {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }
        }));

        let mdns = if cfg.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| P2pError::Transport(format!("mdns: {e}")))?,
            )
        } else {
            None
        };

        // Gossipsub's own size limit is the first line of defence: it drops
        // oversized frames before decoding them. The envelope limit is checked
        // again by our validator.
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(max_gossip_payload + ENVELOPE_OVERHEAD + 1024)
            .heartbeat_interval(Duration::from_millis(500))
            .build()
            .map_err(|e| P2pError::Transport(format!("gossipsub config: {e}")))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_cfg,
        )
        .map_err(|e| P2pError::Transport(format!("gossipsub: {e}")))?;

        Ok(Behaviour {
            relay_client,
            relay_server: Toggle::from(relay_server),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            mdns: Toggle::from(mdns),
            gossipsub,
            app: AppProtocols::new(protocols),
            chunks: chunk_behaviour(cfg.chunk_timeout),
        })
    }
}

/// Whether `peer` speaks with an ed25519 key (all Strata peers do).
pub(crate) fn is_strata_peer(peer: &PeerId) -> bool {
    crate::identity::solana_pubkey_of(peer).is_some()
}
