//! The event loop: one task owns the `Swarm`, executes [`Command`]s from
//! handles and hands each libp2p event to the state machine it concerns:
//! [`Peers`], [`Requests`], [`Topics`], [`Distribution`] and [`Nat`]. After
//! each step it applies the penalties they decided.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, gossipsub, identify, kad, mdns, ping, PeerId, Swarm};
use strata_primitives::protocol::TopicSpec;
use tokio::sync::mpsc;

use crate::behaviour::{is_strata_peer, Behaviour, BehaviourEvent, INTERNAL_PROTOCOLS};
use crate::config::P2pConfig;
use crate::distribution::{Distribution, Progress, ANNOUNCEMENTS};
use crate::error::P2pError;
use crate::event::P2pEvent;
use crate::gossip::{Envelope, Topics};
use crate::handle::{Command, NodeStats, P2pEvents, P2pHandle};
use crate::identity::{node_of, NodeId, NodeIdentity};
use crate::nat::Nat;
use crate::peers::Peers;
use crate::requests::{Protocols, Requests};
use crate::transport;

/// Have-map polls and download driving run at this pace: the end of a swarm
/// download is a few rounds of "who has the last chunks", each up to one tick.
const TICK: Duration = Duration::from_millis(100);
const KAD_REFRESH: Duration = Duration::from_secs(30);
const EVENT_BUFFER: usize = 4096;

/// Start a node: check the application's registrations, build the swarm,
/// listen, dial bootstrap and static peers, and spawn the event loop on the
/// current tokio runtime.
pub async fn start(
    identity: NodeIdentity,
    config: P2pConfig,
) -> Result<(P2pHandle, P2pEvents), P2pError> {
    let protocols = Protocols::new(&config.protocols, INTERNAL_PROTOCOLS)?;
    let topics = Topics::new(&config.topics, &[ANNOUNCEMENTS])?;
    let mut swarm = transport::build(
        &identity,
        &config,
        protocols.all(),
        topics.largest_payload(),
    )?;
    for t in topics.all() {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(t.name))
            .map_err(|e| P2pError::Transport(format!("subscribe: {e}")))?;
    }
    let static_peers = transport::listen_and_dial(&mut swarm, &config)?;

    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
    let node_id = identity.node_id();
    let event_loop = EventLoop {
        swarm,
        identity,
        commands: cmd_rx,
        events: ev_tx,
        peers: Peers::new(config.score_config(), static_peers),
        requests: Requests::new(protocols),
        topics,
        distribution: Distribution::new(&config),
        nat: Nat::new(),
        last_kad_bootstrap: Instant::now(),
        rtts: HashMap::new(),
    };
    tokio::spawn(event_loop.run());
    Ok((
        P2pHandle {
            node_id,
            tx: cmd_tx,
        },
        P2pEvents { rx: ev_rx },
    ))
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    identity: NodeIdentity,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<P2pEvent>,
    peers: Peers,
    requests: Requests,
    topics: Topics,
    distribution: Distribution,
    nat: Nat,
    last_kad_bootstrap: Instant,
    /// The latest ping round trip per peer.
    rtts: HashMap<PeerId, Duration>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some((id, payload)) = self.requests.next_answer() => {
                    self.requests.answer(&mut self.swarm.behaviour_mut().app, id, payload);
                }
                Some((channel, resp)) = self.distribution.next_upload() => {
                    let _ = self.swarm.behaviour_mut().chunks.send_response(channel, resp);
                }
                _ = tick.tick() => self.on_tick(),
            }
            self.apply_penalties();
        }
        self.distribution.shutdown();
    }

    fn emit(&self, ev: P2pEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            tracing::warn!("p2p event dropped, consumer too slow: {ev:?}");
        }
    }

    /// Does the swarm's part of every penalty decided since the last step:
    /// a banned peer is disconnected, blacklisted in gossipsub and dropped
    /// from Kademlia and from every download.
    fn apply_penalties(&mut self) {
        while let Some(p) = self.peers.next_penalty() {
            tracing::warn!(peer = %p.peer, reason = %p.reason, banned = p.banned, "peer penalised");
            if p.banned {
                let b = self.swarm.behaviour_mut();
                b.gossipsub.blacklist_peer(&p.peer);
                b.kad.remove_peer(&p.peer);
                let _ = self.swarm.disconnect_peer_id(p.peer);
                self.distribution.remove_peer(&p.peer);
            }
            self.emit(P2pEvent::PeerPenalised {
                node: node_of(&p.peer),
                reason: p.reason,
                banned: p.banned,
            });
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, reply) => {
                let ma = match transport::parse_addr(&addr) {
                    Ok(ma) => ma,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let peer = transport::peer_of(&ma);
                match self.swarm.dial(ma) {
                    Err(e) => {
                        let _ = reply.send(Err(P2pError::Dial(e.to_string())));
                    }
                    Ok(()) => match peer {
                        Some(p) if !self.swarm.is_connected(&p) => self.peers.await_dial(p, reply),
                        _ => {
                            let _ = reply.send(Ok(()));
                        }
                    },
                }
            }
            Command::AddAddress(node, addr) => {
                if let Ok(ma) = transport::parse_addr(&addr) {
                    let peer = node.peer_id();
                    self.swarm.behaviour_mut().kad.add_address(&peer, ma);
                }
            }
            Command::Publish(name, payload, reply) => {
                let res = match self.topics.by_name(name) {
                    Some(topic) => self.publish(&topic, payload),
                    None => Err(P2pError::UnknownTopic(name.to_string())),
                };
                let _ = reply.send(res);
            }
            Command::Request(to, protocol, payload, reply) => {
                let peer = to.peer_id();
                let connected = self.swarm.is_connected(&peer);
                let b = self.swarm.behaviour_mut();
                if let Some(peer) = self
                    .requests
                    .send(&mut b.app, peer, connected, protocol, payload, reply)
                {
                    let query = b.kad.get_closest_peers(peer);
                    self.requests.lookup_started(query, peer);
                }
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(transport::listen_addrs(&self.swarm));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().map(node_of).collect());
            }
            Command::Reachability(reply) => {
                let _ = reply.send(self.nat.reachability());
            }
            Command::ListenViaRelay(addr, reply) => {
                let res = transport::parse_addr(&addr).and_then(|ma| {
                    self.swarm
                        .listen_on(ma.with(Protocol::P2pCircuit))
                        .map(|_| ())
                        .map_err(|e| P2pError::Transport(e.to_string()))
                });
                let _ = reply.send(res);
            }
            Command::Seed(store) => {
                self.distribution.seed(store);
                self.announce_files();
            }
            Command::StopSeeding(root) => self.distribution.forget(root),
            Command::Download(root, dest, options, reply) => {
                if self.distribution.start_download(root, dest, options, reply) {
                    self.announce_files();
                    let chunks = &mut self.swarm.behaviour_mut().chunks;
                    self.distribution.drive(chunks, root);
                }
            }
            Command::Stats(reply) => {
                let (uploaded, served) = self.distribution.upload_stats();
                let _ = reply.send(NodeStats {
                    chunk_bytes_uploaded: uploaded,
                    chunks_served: served,
                    connected_peers: self.swarm.connected_peers().count(),
                    banned_peers: self.peers.banned_count(Instant::now()),
                    rtts: self
                        .rtts
                        .iter()
                        .filter(|(p, _)| self.swarm.is_connected(p))
                        .filter_map(|(p, rtt)| NodeId::from_peer_id(p).map(|n| (n, *rtt)))
                        .collect(),
                });
            }
            Command::Report(node, misbehaviour) => {
                self.peers
                    .penalise(node.peer_id(), misbehaviour, Instant::now());
            }
            Command::Shutdown => {}
        }
    }

    /// Signs `payload` into an envelope for `topic` and publishes it.
    fn publish(&mut self, topic: &TopicSpec, payload: Vec<u8>) -> Result<(), P2pError> {
        if payload.len() > topic.max_payload {
            return Err(P2pError::TooLarge {
                len: payload.len(),
                limit: topic.max_payload,
            });
        }
        let env = Envelope::sign(&self.identity, topic, payload);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic.name), env.encode())
            .map(|_| ())
            .map_err(|e| P2pError::Gossip(e.to_string()))
    }

    fn announce_files(&mut self) {
        let addrs = transport::announced_addrs(&self.swarm);
        for (root, payload) in self.distribution.announcements(&addrs) {
            if let Err(e) = self.publish(&ANNOUNCEMENTS, payload) {
                tracing::debug!("announce {root}: {e}");
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.distribution
            .on_tick(&mut self.swarm.behaviour_mut().chunks);
        if self.distribution.announce_due(now) {
            self.announce_files();
        }
        if now.saturating_duration_since(self.last_kad_bootstrap) >= KAD_REFRESH {
            self.last_kad_bootstrap = now;
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        if let Some(round) = self.peers.redial_round(now) {
            for peer in round.released {
                tracing::info!(%peer, "ban expired");
                let b = self.swarm.behaviour_mut();
                b.gossipsub.remove_blacklisted_peer(&peer);
            }
            for (peer, addr) in round.redial {
                if !self.swarm.is_connected(&peer) {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.nat.on_listen_addr(&address) {
                    self.emit(P2pEvent::Reachability(self.nat.reachability()));
                }
                self.emit(P2pEvent::Listening {
                    addr: address.to_string(),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.nat.on_expired_addr(&address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if self.peers.is_banned(&peer_id, Instant::now()) || !is_strata_peer(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.peers.dial_succeeded(&peer_id);
                let relayed = endpoint.is_relayed();
                if num_established.get() == 1 || !relayed {
                    self.emit(P2pEvent::PeerConnected {
                        node: node_of(&peer_id),
                        addr: endpoint.get_remote_address().to_string(),
                        relayed,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.rtts.remove(&peer_id);
                self.distribution.on_disconnected(&peer_id);
                self.emit(P2pEvent::PeerDisconnected {
                    node: node_of(&peer_id),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                self.peers.dial_failed(&peer, &error.to_string());
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        let now = Instant::now();
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if self.peers.is_banned(&peer_id, now) {
                    return;
                }
                for a in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, a.clone());
                }
                self.emit(P2pEvent::PeerIdentified {
                    node: node_of(&peer_id),
                    agent: info.agent_version,
                    addrs: info.listen_addrs.iter().map(|a| a.to_string()).collect(),
                });
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    if self.peers.is_banned(&peer, now) {
                        continue;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                tracing::info!(?new, "autonat status");
                self.nat.on_status(new);
                self.emit(P2pEvent::Reachability(self.nat.reachability()));
            }
            BehaviourEvent::RelayClient(libp2p::relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) => {
                self.emit(P2pEvent::RelayReservation {
                    relay: node_of(&relay_peer_id),
                });
            }
            BehaviourEvent::Dcutr(ev) => {
                self.emit(P2pEvent::HolePunch {
                    node: node_of(&ev.remote_peer_id),
                    result: ev.result.map(|_| ()).map_err(|e| e.to_string()),
                });
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(res),
                step,
                ..
            }) => {
                let app = &mut self.swarm.behaviour_mut().app;
                self.requests.on_lookup(app, id, &res, step.last);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message, now),
            BehaviourEvent::App(ev) => {
                if let Some(req) = self.requests.on_event(&mut self.peers, ev, now) {
                    self.emit(P2pEvent::Request(req));
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.rtts.insert(peer, rtt);
            }
            BehaviourEvent::Chunks(ev) => {
                let chunks = &mut self.swarm.behaviour_mut().chunks;
                if let Some(p) = self.distribution.on_event(chunks, &mut self.peers, ev, now) {
                    self.emit(progress_event(p));
                }
            }
            _ => {}
        }
    }

    /// Validates a gossip message, tells gossipsub whether to pass it on, and
    /// hands it to its consumer: the application, or the distribution for
    /// file announcements.
    fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        msg: gossipsub::Message,
        now: Instant,
    ) {
        let author = msg.source.as_ref().and_then(NodeId::from_peer_id);
        let verdict = if self.peers.is_banned(&source, now) {
            Err(None)
        } else {
            self.topics.check(&msg.data, &msg.topic, author)
        };
        let acceptance = match &verdict {
            Ok(_) => gossipsub::MessageAcceptance::Accept,
            Err(Some(_)) => gossipsub::MessageAcceptance::Reject,
            Err(None) => gossipsub::MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
        match verdict {
            Ok((topic, env)) if topic == ANNOUNCEMENTS => {
                let from = NodeId(env.sender).peer_id();
                if from == *self.swarm.local_peer_id() || self.peers.is_banned(&from, now) {
                    return;
                }
                for addr in self.distribution.on_announcement(from, &env.payload) {
                    self.swarm.behaviour_mut().kad.add_address(&from, addr);
                }
            }
            Ok((topic, env)) => self.emit(P2pEvent::Gossip {
                topic,
                from: NodeId(env.sender),
                payload: env.payload,
            }),
            Err(Some(m)) => {
                self.peers.penalise(source, m, now);
            }
            Err(None) => {}
        }
    }
}

fn progress_event(p: Progress) -> P2pEvent {
    P2pEvent::DownloadProgress {
        root: p.root,
        have: p.have,
        total: p.total,
        bytes: p.bytes,
        size: p.size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_primitives::protocol::ProtocolSpec;

    #[tokio::test]
    async fn start_refuses_colliding_registrations() {
        let task = ProtocolSpec {
            name: "/strata/task/1",
            max_request: 1 << 20,
            max_response: 1 << 20,
            timeout_secs: 60,
        };
        let chunks = ProtocolSpec {
            name: "/strata/chunks/1",
            ..task
        };
        let own_tag = TopicSpec {
            tag: ANNOUNCEMENTS.tag,
            name: "/strata/capacity/1",
            max_payload: 1024,
        };
        let cases = [
            P2pConfig::local().with_protocols(&[task, task]),
            P2pConfig::local().with_protocols(&[chunks]),
            P2pConfig::local().with_topics(&[own_tag]),
        ];
        for config in cases {
            let err = start(NodeIdentity::generate(), config).await.unwrap_err();
            assert!(matches!(err, P2pError::Registration(_)), "{err}");
        }
    }
}
