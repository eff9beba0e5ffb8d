//! The event loop: one task owns the `Swarm`, executes [`Command`]s from
//! handles, turns libp2p events into [`P2pEvent`]s, enforces penalties and
//! drives downloads.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{
    autonat, gossipsub, identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{is_strata_peer, Behaviour, BehaviourEvent};
use crate::codec::{DecodeError, Incoming, Reader};
use crate::config::{P2pConfig, RequestKind};
use crate::distribution::manifest::{FileRoot, Manifest};
use crate::distribution::protocol::{ChunkRequest, ChunkResponse};
use crate::distribution::scheduler::Scheduler;
use crate::distribution::store::ChunkStore;
use crate::distribution::super_seed::{SuperSeed, SUPER_SEED_WINDOW};
use crate::gossip::{Envelope, GossipKind};
use crate::handle::{
    Command, DownloadOptions, DownloadReport, IncomingRequest, NodeStats, P2pEvent, P2pEvents,
    P2pHandle, Reachability,
};
use crate::identity::{NodeId, NodeIdentity};
use crate::peer_score::{PeerScores, Verdict};
use crate::P2pError;

/// Points for a malformed or oversized message, a forged signature or a
/// corrupt chunk: each is proof of a broken or hostile peer, so one strike
/// reaches the default ban threshold.
const MISBEHAVIOUR: u32 = 100;
/// Points for each request over a peer's budget: a burst now and then is
/// forgiven as the points decay; a sustained flood ends in a ban.
const OVER_BUDGET: u32 = 1;
/// Have-map polls and download driving run at this pace: the end of a swarm
/// download is a few rounds of "who has the last chunks", each up to one tick.
const TICK: Duration = Duration::from_millis(100);
const ANNOUNCE_EVERY: Duration = Duration::from_secs(3);
const KAD_REFRESH: Duration = Duration::from_secs(30);
const REDIAL_EVERY: Duration = Duration::from_secs(5);
const EVENT_BUFFER: usize = 4096;

/// Start a node: build the swarm, listen, dial bootstrap and static peers, and
/// spawn the event loop on the current tokio runtime.
pub async fn start(
    identity: NodeIdentity,
    config: P2pConfig,
) -> Result<(P2pHandle, P2pEvents), P2pError> {
    let key = identity.libp2p_keypair();
    let cfg = config.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
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
            Behaviour::new(key, relay_client, &cfg).map_err(|e| Box::new(e) as _)
        })
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();

    for kind in GossipKind::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(kind.topic()))
            .map_err(|e| P2pError::Transport(format!("subscribe: {e}")))?;
    }
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

    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
    let (resp_tx, resp_rx) = mpsc::unbounded_channel();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let node_id = identity.node_id();
    let limiter = config
        .upload_rate_limit
        .map(|r| Arc::new(RateLimiter::new(r)));
    let scores = PeerScores::new(config.score_config());
    let event_loop = EventLoop {
        swarm,
        identity,
        config,
        cmd_rx,
        events: ev_tx,
        resp_tx,
        resp_rx,
        internal_tx,
        internal_rx,
        pending_app: HashMap::new(),
        inbound_app: HashMap::new(),
        next_inbound: 0,
        pending_dials: HashMap::new(),
        awaiting_route: HashMap::new(),
        route_queries: HashMap::new(),
        last_kad_bootstrap: Instant::now(),
        scores,
        static_peers,
        last_redial: Instant::now(),
        nat: autonat::NatStatus::Unknown,
        relay_addrs: Vec::new(),
        files: HashMap::new(),
        chunk_requests: HashMap::new(),
        uploaded: Arc::new(AtomicU64::new(0)),
        served: Arc::new(AtomicU64::new(0)),
        limiter,
        last_announce: Instant::now() - ANNOUNCE_EVERY,
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

fn parse_addr(s: &str) -> Result<Multiaddr, P2pError> {
    s.parse()
        .map_err(|e| P2pError::InvalidAddress(format!("{s}: {e}")))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Token-bucket-like pacing of uploads: each chunk reserves its transmission
/// slot at `rate` bytes/s, so the node's upload averages at most `rate`.
pub(crate) struct RateLimiter {
    rate: f64,
    next_free: std::sync::Mutex<Instant>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        RateLimiter {
            rate: rate.max(1) as f64,
            next_free: std::sync::Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self, bytes: usize) {
        let done = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(Instant::now());
            let done = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            *next = done;
            done
        };
        tokio::time::sleep_until(done.into()).await;
    }
}

type ReplyTx = oneshot::Sender<Result<Vec<u8>, P2pError>>;
type AwaitingRequest = (
    RequestKind,
    Vec<u8>,
    oneshot::Sender<Result<Vec<u8>, P2pError>>,
);

enum Internal {
    ChunkResponse(ResponseChannel<ChunkResponse>, ChunkResponse),
}

enum PendingChunk {
    Manifest(FileRoot, PeerId),
    Have(FileRoot, PeerId),
    Chunk(FileRoot, PeerId, u32),
}

struct Download {
    dest: PathBuf,
    options: DownloadOptions,
    candidates: HashSet<PeerId>,
    have_pending: HashSet<PeerId>,
    manifest_tried: HashSet<PeerId>,
    manifest_pending: bool,
    scheduler: Option<Scheduler<PeerId>>,
    reply: Option<oneshot::Sender<Result<DownloadReport, P2pError>>>,
    started: Instant,
    fetched: u32,
    resumed: u32,
    rejected: u32,
    bytes_from: HashMap<PeerId, u64>,
}

#[derive(Default)]
struct FileEntry {
    store: Option<Arc<ChunkStore>>,
    download: Option<Download>,
    /// Set when we published this file and super-seed it.
    super_seed: Option<SuperSeed<PeerId>>,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    identity: NodeIdentity,
    config: P2pConfig,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<P2pEvent>,
    resp_tx: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    resp_rx: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    pending_app: HashMap<(RequestKind, OutboundRequestId), ReplyTx>,
    inbound_app: HashMap<u64, (RequestKind, ResponseChannel<Vec<u8>>)>,
    next_inbound: u64,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), P2pError>>>>,
    awaiting_route: HashMap<PeerId, Vec<AwaitingRequest>>,
    route_queries: HashMap<kad::QueryId, PeerId>,
    last_kad_bootstrap: Instant,
    scores: PeerScores<PeerId>,
    static_peers: Vec<(PeerId, Multiaddr)>,
    last_redial: Instant,
    nat: autonat::NatStatus,
    relay_addrs: Vec<Multiaddr>,
    files: HashMap<FileRoot, FileEntry>,
    chunk_requests: HashMap<OutboundRequestId, PendingChunk>,
    uploaded: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    limiter: Option<Arc<RateLimiter>>,
    last_announce: Instant,
}

fn node(peer: &PeerId) -> NodeId {
    // Non-ed25519 peers are disconnected on arrival; zero id only labels
    // events that may still race in from them.
    NodeId::from_peer_id(peer).unwrap_or(NodeId([0; 32]))
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some((id, payload)) = self.resp_rx.recv() => self.on_app_response(id, payload),
                Some(msg) = self.internal_rx.recv() => match msg {
                    Internal::ChunkResponse(ch, resp) => {
                        let _ = self.swarm.behaviour_mut().chunks.send_response(ch, resp);
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        for (_, entry) in self.files.iter_mut() {
            if let Some(reply) = entry.download.as_mut().and_then(|d| d.reply.take()) {
                let _ = reply.send(Err(P2pError::Shutdown));
            }
        }
    }

    fn emit(&self, ev: P2pEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            tracing::warn!("p2p event dropped, consumer too slow: {ev:?}");
        }
    }

    // ---------------------------------------------------------------- commands

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, reply) => match parse_addr(&addr) {
                Ok(ma) => {
                    let peer = peer_of(&ma);
                    match self.swarm.dial(ma) {
                        Ok(()) => match peer {
                            Some(p) if self.swarm.is_connected(&p) => {
                                let _ = reply.send(Ok(()));
                            }
                            Some(p) => self.pending_dials.entry(p).or_default().push(reply),
                            None => {
                                let _ = reply.send(Ok(()));
                            }
                        },
                        Err(e) => {
                            let _ = reply.send(Err(P2pError::Dial(e.to_string())));
                        }
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::AddAddress(node, addr) => {
                if let Ok(ma) = parse_addr(&addr) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&node.peer_id(), ma);
                }
            }
            Command::Publish(kind, payload, reply) => {
                let _ = reply.send(self.publish(kind, payload));
            }
            Command::Request(to, kind, payload, reply) => {
                let limit = self.config.limits(kind).max_request;
                if payload.len() > limit {
                    let _ = reply.send(Err(P2pError::TooLarge {
                        len: payload.len(),
                        limit,
                    }));
                    return;
                }
                let peer = to.peer_id();
                if self.swarm.is_connected(&peer) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .app(kind)
                        .send_request(&peer, Incoming::Valid(payload));
                    self.pending_app.insert((kind, id), reply);
                } else {
                    // Not connected: find the peer through Kademlia first, so a
                    // node id alone (e.g. from the chain) is enough to reach it.
                    let waiting = self.awaiting_route.entry(peer).or_default();
                    waiting.push((kind, payload, reply));
                    if waiting.len() == 1 {
                        let qid = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                        self.route_queries.insert(qid, peer);
                    }
                }
            }
            Command::ListenAddrs(reply) => {
                let me = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .chain(self.swarm.external_addresses())
                    .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a).to_string())
                    .collect::<Vec<_>>();
                let _ = reply.send(dedup(addrs));
            }
            Command::ConnectedPeers(reply) => {
                let peers = self.swarm.connected_peers().map(node).collect();
                let _ = reply.send(peers);
            }
            Command::Reachability(reply) => {
                let _ = reply.send(self.reachability());
            }
            Command::ListenViaRelay(addr, reply) => {
                let res = parse_addr(&addr).and_then(|ma| {
                    self.swarm
                        .listen_on(ma.with(Protocol::P2pCircuit))
                        .map(|_| ())
                        .map_err(|e| P2pError::Transport(e.to_string()))
                });
                let _ = reply.send(res);
            }
            Command::Seed(store) => {
                let root = store.root();
                let entry = self.files.entry(root).or_default();
                entry.store = Some(store);
                if self.config.super_seed {
                    entry.super_seed = Some(SuperSeed::new(SUPER_SEED_WINDOW));
                }
                self.announce_files();
            }
            Command::Download(root, dest, options, reply) => {
                self.start_download(root, dest, options, reply)
            }
            Command::Stats(reply) => {
                let _ = reply.send(NodeStats {
                    chunk_bytes_uploaded: self.uploaded.load(Ordering::Relaxed),
                    chunks_served: self.served.load(Ordering::Relaxed),
                    connected_peers: self.swarm.connected_peers().count(),
                    banned_peers: self.scores.banned_count(Instant::now()),
                });
            }
            Command::Shutdown => {}
        }
    }

    fn publish(&mut self, kind: GossipKind, payload: Vec<u8>) -> Result<(), P2pError> {
        if payload.len() > self.config.max_gossip_payload {
            return Err(P2pError::TooLarge {
                len: payload.len(),
                limit: self.config.max_gossip_payload,
            });
        }
        let env = Envelope::sign(&self.identity, kind, payload);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(kind.topic()), env.encode())
        {
            Ok(_) => Ok(()),
            Err(e) => Err(P2pError::Gossip(e.to_string())),
        }
    }

    fn reachability(&self) -> Reachability {
        if !self.relay_addrs.is_empty() {
            return Reachability::Relayed(self.relay_addrs.iter().map(|a| a.to_string()).collect());
        }
        match &self.nat {
            autonat::NatStatus::Public(a) => Reachability::Public(vec![a.to_string()]),
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        }
    }

    fn on_app_response(&mut self, id: u64, payload: Vec<u8>) {
        if let Some((kind, ch)) = self.inbound_app.remove(&id) {
            let limit = self.config.limits(kind).max_response;
            if payload.len() > limit {
                tracing::warn!(
                    "application response of {} bytes over {limit}: dropped",
                    payload.len()
                );
                return;
            }
            let _ = self
                .swarm
                .behaviour_mut()
                .app(kind)
                .send_response(ch, payload);
        }
    }

    // ---------------------------------------------------------------- penalties

    fn penalise(&mut self, peer: PeerId, points: u32, reason: String) {
        let banned = match self.scores.penalise(peer, points, Instant::now()) {
            Verdict::AlreadyBanned => return,
            Verdict::Penalised { .. } => false,
            Verdict::Banned { .. } => true,
        };
        tracing::warn!(%peer, %reason, banned, "peer penalised");
        if banned {
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            for entry in self.files.values_mut() {
                if let Some(d) = entry.download.as_mut() {
                    d.candidates.remove(&peer);
                    if let Some(s) = d.scheduler.as_mut() {
                        s.remove_peer(&peer);
                    }
                }
            }
        }
        self.emit(P2pEvent::PeerPenalised {
            node: node(&peer),
            reason,
            banned,
        });
    }

    fn is_banned(&self, peer: &PeerId) -> bool {
        self.scores.is_banned(peer, Instant::now())
    }

    /// Spends one unit of `peer`'s inbound request budget; a request over
    /// budget is refused (its stream dropped) and costs a point.
    fn admit_request(&mut self, peer: PeerId, what: &str) -> bool {
        if self.scores.allow_request(&peer, Instant::now()) {
            return true;
        }
        self.penalise(peer, OVER_BUDGET, format!("{what} over the request budget"));
        false
    }

    /// Lets peers whose ban ran out back in.
    fn expire_bans(&mut self) {
        for peer in self.scores.expire(Instant::now()) {
            tracing::info!(%peer, "ban expired");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
    }

    // ---------------------------------------------------------------- swarm events

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                if address.iter().any(|p| p == Protocol::P2pCircuit) {
                    self.relay_addrs.push(address.clone());
                    self.emit(P2pEvent::Reachability(self.reachability()));
                }
                self.emit(P2pEvent::Listening {
                    addr: address.to_string(),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.relay_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if self.is_banned(&peer_id) || !is_strata_peer(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(waiters) = self.pending_dials.remove(&peer_id) {
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                }
                let addr = endpoint.get_remote_address().clone();
                let relayed = endpoint.is_relayed();
                if num_established.get() == 1 || !relayed {
                    self.emit(P2pEvent::PeerConnected {
                        node: node(&peer_id),
                        addr: addr.to_string(),
                        relayed,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                for entry in self.files.values_mut() {
                    if let Some(d) = entry.download.as_mut() {
                        d.have_pending.remove(&peer_id);
                    }
                    if let Some(ss) = entry.super_seed.as_mut() {
                        ss.forget_peer(&peer_id);
                    }
                }
                self.emit(P2pEvent::PeerDisconnected {
                    node: node(&peer_id),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                if let Some(waiters) = self.pending_dials.remove(&peer) {
                    for w in waiters {
                        let _ = w.send(Err(P2pError::Dial(error.to_string())));
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if self.is_banned(&peer_id) {
                    return;
                }
                for a in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, a.clone());
                }
                self.emit(P2pEvent::PeerIdentified {
                    node: node(&peer_id),
                    agent: info.agent_version,
                    addrs: info.listen_addrs.iter().map(|a| a.to_string()).collect(),
                });
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    if self.is_banned(&peer) {
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
                self.nat = new;
                self.emit(P2pEvent::Reachability(self.reachability()));
            }
            BehaviourEvent::RelayClient(libp2p::relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) => {
                self.emit(P2pEvent::RelayReservation {
                    relay: node(&relay_peer_id),
                });
            }
            BehaviourEvent::Dcutr(ev) => {
                self.emit(P2pEvent::HolePunch {
                    node: node(&ev.remote_peer_id),
                    result: ev.result.map(|_| ()).map_err(|e| e.to_string()),
                });
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(res),
                step,
                ..
            }) => {
                let Some(peer) = self.route_queries.get(&id).copied() else {
                    return;
                };
                let found: Vec<Multiaddr> = match &res {
                    Ok(ok) => ok
                        .peers
                        .iter()
                        .filter(|p| p.peer_id == peer)
                        .flat_map(|p| p.addrs.clone())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                if found.is_empty() && !step.last {
                    return;
                }
                self.route_queries.remove(&id);
                for (kind, payload, reply) in self.awaiting_route.remove(&peer).unwrap_or_default()
                {
                    let rid = self
                        .swarm
                        .behaviour_mut()
                        .app(kind)
                        .send_request_with_addresses(
                            &peer,
                            Incoming::Valid(payload),
                            found.clone(),
                        );
                    self.pending_app.insert((kind, rid), reply);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Task(ev) => self.on_app_event(RequestKind::Task, ev),
            BehaviourEvent::HiddenState(ev) => self.on_app_event(RequestKind::HiddenState, ev),
            BehaviourEvent::Opening(ev) => self.on_app_event(RequestKind::Opening, ev),
            BehaviourEvent::Receipt(ev) => self.on_app_event(RequestKind::Receipt, ev),
            BehaviourEvent::Chunks(ev) => self.on_chunk_event(ev),
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        let topic_kind = GossipKind::ALL
            .into_iter()
            .find(|k| gossipsub::IdentTopic::new(k.topic()).hash() == msg.topic);
        let author = msg.source.as_ref().and_then(NodeId::from_peer_id);
        let verdict = if self.is_banned(&source) {
            Err(None)
        } else if author.is_none() {
            Err(Some("gossip without an ed25519 author".to_string()))
        } else {
            match Envelope::validate(
                &msg.data,
                self.config.max_gossip_payload,
                author,
                topic_kind,
            ) {
                Ok(ok) => Ok(ok),
                Err(e) if e.is_misbehaviour() => Err(Some(format!("gossip refused: {e}"))),
                Err(_) => Err(None),
            }
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
            Ok((GossipKind::Distribution, env)) => {
                self.on_announcement(NodeId(env.sender), &env.payload)
            }
            Ok((kind, env)) => self.emit(P2pEvent::Gossip {
                kind,
                from: NodeId(env.sender),
                payload: env.payload,
            }),
            Err(Some(reason)) => self.penalise(source, MISBEHAVIOUR, reason),
            Err(None) => {}
        }
    }

    fn on_app_event(
        &mut self,
        kind: RequestKind,
        ev: request_response::Event<Incoming<Vec<u8>>, Vec<u8>>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if self.is_banned(&peer) || !self.admit_request(peer, kind.protocol()) {
                        return;
                    }
                    let request = match request {
                        Incoming::Valid(r) => r,
                        Incoming::Malformed(e) => {
                            drop(channel);
                            self.penalise(
                                peer,
                                MISBEHAVIOUR,
                                format!("malformed {kind:?} request: {e}"),
                            );
                            return;
                        }
                    };
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound_app.insert(id, (kind, channel));
                    self.emit(P2pEvent::Request(IncomingRequest {
                        kind,
                        from: node(&peer),
                        payload: request,
                        id,
                        responder: self.resp_tx.clone(),
                    }));
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_app.remove(&(kind, request_id)) {
                        let res = if self.is_banned(&peer) {
                            Err(P2pError::Request("peer banned".into()))
                        } else {
                            Ok(response)
                        };
                        let _ = reply.send(res);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_app.remove(&(kind, request_id)) {
                    let _ = reply.send(Err(match &error {
                        request_response::OutboundFailure::Timeout => P2pError::Timeout,
                        e => P2pError::Request(e.to_string()),
                    }));
                }
                if is_malformed_out(&error) {
                    self.penalise(
                        peer,
                        MISBEHAVIOUR,
                        format!("malformed {kind:?} response: {error}"),
                    );
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if is_malformed_in(&error) {
                    self.penalise(
                        peer,
                        MISBEHAVIOUR,
                        format!("malformed {kind:?} request: {error}"),
                    );
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    // ---------------------------------------------------------------- distribution

    fn announce_files(&mut self) {
        self.last_announce = Instant::now();
        let me = *self.swarm.local_peer_id();
        let addrs: Vec<String> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
            })
            .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a).to_string())
            .collect();
        let roots: Vec<FileRoot> = self
            .files
            .iter()
            .filter(|(_, e)| e.download.as_ref().is_none_or(|d| !d.options.star))
            .map(|(r, _)| *r)
            .collect();
        for root in roots {
            let payload = encode_announcement(&root, &addrs);
            if let Err(e) = self.publish(GossipKind::Distribution, payload) {
                tracing::debug!("announce {root}: {e}");
            }
        }
    }

    fn on_announcement(&mut self, from: NodeId, payload: &[u8]) {
        let Ok((root, addrs)) = decode_announcement(payload) else {
            return;
        };
        let peer = from.peer_id();
        if peer == *self.swarm.local_peer_id() || self.is_banned(&peer) {
            return;
        }
        if let Some(d) = self.files.get_mut(&root).and_then(|e| e.download.as_mut()) {
            if d.options.star {
                return;
            }
            for a in addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                self.swarm.behaviour_mut().kad.add_address(&peer, a);
            }
            d.candidates.insert(peer);
        }
    }

    fn start_download(
        &mut self,
        root: FileRoot,
        dest: PathBuf,
        options: DownloadOptions,
        reply: oneshot::Sender<Result<DownloadReport, P2pError>>,
    ) {
        let config = self.config.clone();
        let entry = self.files.entry(root).or_default();
        if entry.download.is_some() {
            let _ = reply.send(Err(P2pError::Busy(root.to_string())));
            return;
        }
        if entry.store.as_ref().is_some_and(|s| s.is_complete()) {
            let _ = reply.send(Err(P2pError::Busy(format!(
                "{root} is already complete here"
            ))));
            return;
        }
        let candidates = options.peers.iter().map(|n| n.peer_id()).collect();
        let mut d = Download {
            dest: dest.clone(),
            options,
            candidates,
            have_pending: HashSet::new(),
            manifest_tried: HashSet::new(),
            manifest_pending: false,
            scheduler: None,
            reply: Some(reply),
            started: Instant::now(),
            fetched: 0,
            resumed: 0,
            rejected: 0,
            bytes_from: HashMap::new(),
        };
        // Resume from the sidecar when it is this same file.
        match ChunkStore::resume(&dest) {
            Ok(Some(store)) if store.root() == root => {
                let store = Arc::new(store);
                d.resumed = store.have_count();
                d.scheduler = Some(new_scheduler(&config, &store, &d.options.peers));
                entry.store = Some(store);
            }
            Ok(Some(_)) => {
                if let Some(r) = d.reply.take() {
                    let _ = r.send(Err(P2pError::Store(format!(
                        "{} holds a partial download of another file",
                        dest.display()
                    ))));
                }
                return;
            }
            _ => {}
        }
        entry.download = Some(d);
        self.announce_files();
        self.drive(root);
    }

    fn new_scheduler(&self, store: &ChunkStore, origins: &[NodeId]) -> Scheduler<PeerId> {
        new_scheduler(&self.config, store, origins)
    }

    /// Advance one download: fetch the manifest, poll have-maps, send chunk
    /// requests, and finish when complete.
    fn drive(&mut self, root: FileRoot) {
        let Some(entry) = self.files.get_mut(&root) else {
            return;
        };
        let Some(d) = entry.download.as_mut() else {
            return;
        };
        let store = entry.store.clone();

        let Some(store) = store else {
            if !d.manifest_pending {
                let next = d
                    .candidates
                    .iter()
                    .find(|p| !d.manifest_tried.contains(*p))
                    .copied();
                if let Some(peer) = next {
                    d.manifest_tried.insert(peer);
                    d.manifest_pending = true;
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .chunks
                        .send_request(&peer, Incoming::Valid(ChunkRequest::Manifest(root)));
                    self.chunk_requests
                        .insert(id, PendingChunk::Manifest(root, peer));
                } else if !d.manifest_tried.is_empty() && d.options.star {
                    // Every named source was asked: retry them after a pause.
                    d.manifest_tried.clear();
                }
            }
            return;
        };

        if store.is_complete() {
            let d = entry.download.take();
            if let Some(mut d) = d {
                let report = DownloadReport {
                    root,
                    bytes: store.manifest().size,
                    chunks_fetched: d.fetched,
                    chunks_resumed: d.resumed,
                    chunks_rejected: d.rejected,
                    bytes_from: d.bytes_from.iter().map(|(p, b)| (node(p), *b)).collect(),
                    elapsed: d.started.elapsed(),
                };
                if let Some(r) = d.reply.take() {
                    let _ = r.send(Ok(report));
                }
            }
            return;
        }

        let Some(sched) = d.scheduler.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        for (peer, i) in sched.next_requests() {
            sends.push((peer, i));
        }
        for (peer, i) in sends {
            let id = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_request(&peer, Incoming::Valid(ChunkRequest::Chunk(root, i)));
            self.chunk_requests
                .insert(id, PendingChunk::Chunk(root, peer, i));
        }
    }

    fn poll_have_maps(&mut self, root: FileRoot) {
        let Some(d) = self.files.get_mut(&root).and_then(|e| e.download.as_mut()) else {
            return;
        };
        if d.scheduler.is_none() {
            return;
        }
        let peers: Vec<PeerId> = d
            .candidates
            .iter()
            .filter(|p| !d.have_pending.contains(*p))
            .copied()
            .collect();
        for peer in peers {
            d.have_pending.insert(peer);
            let id = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_request(&peer, Incoming::Valid(ChunkRequest::Have(root)));
            self.chunk_requests
                .insert(id, PendingChunk::Have(root, peer));
        }
    }

    fn on_tick(&mut self) {
        let roots: Vec<FileRoot> = self
            .files
            .iter()
            .filter(|(_, e)| e.download.is_some())
            .map(|(r, _)| *r)
            .collect();
        for root in &roots {
            self.poll_have_maps(*root);
            self.drive(*root);
        }
        if self.last_announce.elapsed() >= ANNOUNCE_EVERY && !self.files.is_empty() {
            self.announce_files();
        }
        if self.last_kad_bootstrap.elapsed() >= KAD_REFRESH {
            self.last_kad_bootstrap = Instant::now();
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        if self.last_redial.elapsed() >= REDIAL_EVERY {
            self.last_redial = Instant::now();
            self.expire_bans();
            for (peer, addr) in self.static_peers.clone() {
                if !self.swarm.is_connected(&peer) && !self.is_banned(&peer) {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
    }

    fn on_chunk_event(
        &mut self,
        ev: request_response::Event<Incoming<ChunkRequest>, ChunkResponse>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => {
                if self.is_banned(&peer) {
                    return;
                }
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => match request {
                        Incoming::Valid(_) if !self.admit_request(peer, "chunk request") => {}
                        Incoming::Valid(r) => self.serve_chunk_request(peer, r, channel),
                        Incoming::Malformed(e) => {
                            drop(channel);
                            self.penalise(
                                peer,
                                MISBEHAVIOUR,
                                format!("malformed chunk request: {e}"),
                            );
                        }
                    },
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(p) = self.chunk_requests.remove(&request_id) {
                            self.on_chunk_response(p, response);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(p) = self.chunk_requests.remove(&request_id) {
                    self.on_chunk_failure(p, &error);
                }
                if is_malformed_out(&error) {
                    self.penalise(
                        peer,
                        MISBEHAVIOUR,
                        format!("malformed chunk response: {error}"),
                    );
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if is_malformed_in(&error) {
                    self.penalise(
                        peer,
                        MISBEHAVIOUR,
                        format!("malformed chunk request: {error}"),
                    );
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_chunk_request(
        &mut self,
        peer: PeerId,
        req: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
    ) {
        let root = match &req {
            ChunkRequest::Manifest(r) | ChunkRequest::Have(r) | ChunkRequest::Chunk(r, _) => *r,
        };
        let Some(entry) = self.files.get_mut(&root) else {
            let _ = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_response(channel, ChunkResponse::NotFound);
            return;
        };
        let resp = match (req, entry.store.clone()) {
            (ChunkRequest::Manifest(_), Some(s)) => ChunkResponse::Manifest(s.manifest().encode()),
            (ChunkRequest::Have(_), store) => {
                // A peer asking what we hold is fetching this file: it is a
                // trading partner for our own download.
                let fetching = match entry.download.as_mut() {
                    Some(d) => {
                        if !d.options.star {
                            d.candidates.insert(peer);
                        }
                        d.scheduler
                            .as_ref()
                            .map(|s| s.fetching_bitmap())
                            .unwrap_or_default()
                    }
                    None => Vec::new(),
                };
                match store {
                    Some(s) => {
                        let mut have = s.have_bitmap();
                        if let Some(ss) = &entry.super_seed {
                            ss.mask(&mut have, &peer, Instant::now());
                        }
                        ChunkResponse::Have { have, fetching }
                    }
                    None => ChunkResponse::Have {
                        have: Vec::new(),
                        fetching,
                    },
                }
            }
            (ChunkRequest::Chunk(_, i), Some(_))
                if entry
                    .super_seed
                    .as_mut()
                    .is_some_and(|ss| !ss.admit(&peer, i, Instant::now())) =>
            {
                // Sent to another downloader moments ago: fetch it there.
                ChunkResponse::NotFound
            }
            (ChunkRequest::Chunk(_, i), Some(s)) if s.has(i) => {
                // Read, pace and send off the event loop so a capped uplink
                // never stalls the swarm.
                let tx = self.internal_tx.clone();
                let limiter = self.limiter.clone();
                let uploaded = self.uploaded.clone();
                let served = self.served.clone();
                let corrupt = self.config.test_corrupt_uploads;
                tokio::spawn(async move {
                    let resp = match s.read_chunk(i) {
                        Ok(Some(mut data)) => {
                            if let Some(l) = limiter {
                                l.acquire(data.len()).await;
                            }
                            if corrupt {
                                if let Some(b) = data.first_mut() {
                                    *b ^= 0xff;
                                }
                            }
                            uploaded.fetch_add(data.len() as u64, Ordering::Relaxed);
                            served.fetch_add(1, Ordering::Relaxed);
                            ChunkResponse::Chunk(data)
                        }
                        _ => ChunkResponse::NotFound,
                    };
                    let _ = tx.send(Internal::ChunkResponse(channel, resp));
                });
                return;
            }
            _ => ChunkResponse::NotFound,
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .chunks
            .send_response(channel, resp);
    }

    fn on_chunk_response(&mut self, pending: PendingChunk, resp: ChunkResponse) {
        match (pending, resp) {
            (PendingChunk::Manifest(root, peer), ChunkResponse::Manifest(bytes)) => {
                let manifest = Manifest::decode(&bytes).ok().filter(|m| m.root() == root);
                let Some(manifest) = manifest else {
                    if let Some(d) = self.download_mut(&root) {
                        d.manifest_pending = false;
                    }
                    self.penalise(peer, MISBEHAVIOUR, format!("wrong manifest for {root}"));
                    self.drive(root);
                    return;
                };
                let Some(d) = self.download_mut(&root) else {
                    return;
                };
                d.manifest_pending = false;
                let dest = d.dest.clone();
                let origins = d.options.peers.clone();
                match ChunkStore::open_download(&dest, manifest) {
                    Ok(store) => {
                        let store = Arc::new(store);
                        let sched = self.new_scheduler(&store, &origins);
                        if let Some(e) = self.files.get_mut(&root) {
                            if let Some(d) = e.download.as_mut() {
                                d.resumed = store.have_count();
                                d.scheduler = Some(sched);
                            }
                            e.store = Some(store);
                        }
                        self.poll_have_maps(root);
                        self.drive(root);
                    }
                    Err(err) => self.fail_download(root, P2pError::Store(err.to_string())),
                }
            }
            (PendingChunk::Manifest(root, _), _) => {
                if let Some(d) = self.download_mut(&root) {
                    d.manifest_pending = false;
                }
                self.drive(root);
            }
            (PendingChunk::Have(root, peer), ChunkResponse::Have { have, fetching }) => {
                if let Some(d) = self.download_mut(&root) {
                    d.have_pending.remove(&peer);
                    if let Some(s) = d.scheduler.as_mut() {
                        s.set_peer_view(peer, have, fetching);
                    }
                }
                self.drive(root);
            }
            (PendingChunk::Have(root, peer), _) => {
                if let Some(d) = self.download_mut(&root) {
                    d.have_pending.remove(&peer);
                    if let Some(s) = d.scheduler.as_mut() {
                        s.forget_view(&peer);
                    }
                }
                self.drive(root);
            }
            (PendingChunk::Chunk(root, peer, i), ChunkResponse::Chunk(data)) => {
                let Some(store) = self.files.get(&root).and_then(|e| e.store.clone()) else {
                    return;
                };
                let len = data.len() as u64;
                match store.write_chunk(i, &data) {
                    Ok(true) => {
                        if let Some(d) = self.download_mut(&root) {
                            d.fetched += 1;
                            *d.bytes_from.entry(peer).or_default() += len;
                            if let Some(s) = d.scheduler.as_mut() {
                                s.finished(&peer, i, true);
                            }
                        }
                        let have = store.have_count();
                        let m = store.manifest();
                        let bytes = (u64::from(have) * u64::from(m.chunk_size)).min(m.size);
                        self.emit(P2pEvent::DownloadProgress {
                            root,
                            have,
                            total: m.chunk_count(),
                            bytes,
                            size: m.size,
                        });
                    }
                    Ok(false) => {
                        if let Some(d) = self.download_mut(&root) {
                            d.rejected += 1;
                            if let Some(s) = d.scheduler.as_mut() {
                                s.finished(&peer, i, false);
                            }
                        }
                        self.penalise(peer, MISBEHAVIOUR, format!("corrupt chunk {i} of {root}"));
                    }
                    Err(e) => {
                        self.fail_download(root, P2pError::Store(e.to_string()));
                        return;
                    }
                }
                self.drive(root);
            }
            (PendingChunk::Chunk(root, peer, i), _) => {
                // Not there (or withheld by a super-seeder): stop asking this
                // peer for it until its next have-map says otherwise.
                if let Some(d) = self.download_mut(&root) {
                    if let Some(s) = d.scheduler.as_mut() {
                        s.finished(&peer, i, false);
                        s.peer_lacks(&peer, i);
                    }
                }
                self.drive(root);
            }
        }
    }

    fn on_chunk_failure(
        &mut self,
        pending: PendingChunk,
        error: &request_response::OutboundFailure,
    ) {
        tracing::debug!("chunk request failed: {error}");
        match pending {
            PendingChunk::Manifest(root, _) => {
                if let Some(d) = self.download_mut(&root) {
                    d.manifest_pending = false;
                }
            }
            PendingChunk::Have(root, peer) => {
                if let Some(d) = self.download_mut(&root) {
                    d.have_pending.remove(&peer);
                    if let Some(s) = d.scheduler.as_mut() {
                        s.forget_view(&peer);
                    }
                }
                self.drive(root);
            }
            PendingChunk::Chunk(root, peer, i) => {
                if let Some(d) = self.download_mut(&root) {
                    if let Some(s) = d.scheduler.as_mut() {
                        s.finished(&peer, i, false);
                        if matches!(error, request_response::OutboundFailure::DialFailure) {
                            s.remove_peer(&peer);
                        }
                    }
                }
                self.drive(root);
            }
        }
    }

    fn download_mut(&mut self, root: &FileRoot) -> Option<&mut Download> {
        self.files.get_mut(root).and_then(|e| e.download.as_mut())
    }

    fn fail_download(&mut self, root: FileRoot, err: P2pError) {
        if let Some(e) = self.files.get_mut(&root) {
            if let Some(mut d) = e.download.take() {
                if let Some(r) = d.reply.take() {
                    let _ = r.send(Err(err));
                }
            }
        }
    }
}

fn new_scheduler(config: &P2pConfig, store: &ChunkStore, origins: &[NodeId]) -> Scheduler<PeerId> {
    let m = store.manifest();
    let mut s = Scheduler::new(
        m.chunk_count(),
        |i| store.has(i),
        rand::random(),
        config.max_requests_per_peer,
        config.max_requests_per_download,
    );
    for o in origins {
        s.set_origin(o.peer_id());
    }
    s
}

fn is_invalid_data(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::InvalidData)
}

fn is_malformed_in(e: &request_response::InboundFailure) -> bool {
    matches!(e, request_response::InboundFailure::Io(io) if is_invalid_data(io))
}

fn is_malformed_out(e: &request_response::OutboundFailure) -> bool {
    matches!(e, request_response::OutboundFailure::Io(io) if is_invalid_data(io))
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// Announcement payload: `root [32] | count u8 | (len u16 | utf8 addr)*`.
pub(crate) fn encode_announcement(root: &FileRoot, addrs: &[String]) -> Vec<u8> {
    let mut out = root.0.to_vec();
    let addrs: Vec<&String> = addrs.iter().filter(|a| a.len() <= 512).take(16).collect();
    out.push(addrs.len() as u8);
    for a in addrs {
        out.extend_from_slice(&(a.len() as u16).to_be_bytes());
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// Parse an announcement; never panics.
pub(crate) fn decode_announcement(bytes: &[u8]) -> Result<(FileRoot, Vec<String>), DecodeError> {
    let mut r = Reader::new(bytes);
    let root = FileRoot(r.array::<32>()?);
    let n = r.u8()?;
    if n > 16 {
        return Err(DecodeError::TooLarge {
            len: n.into(),
            limit: 16,
        });
    }
    let mut addrs = Vec::new();
    for _ in 0..n {
        let len = r.u16()? as usize;
        if len > 512 {
            return Err(DecodeError::TooLarge { len, limit: 512 });
        }
        let s = std::str::from_utf8(r.take(len)?)
            .map_err(|_| DecodeError::Invalid("address not utf-8"))?;
        addrs.push(s.to_string());
    }
    r.finish()?;
    Ok((root, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn announcement_roundtrip(root in any::<[u8; 32]>(), addrs in proptest::collection::vec("[a-z0-9/.]{0,40}", 0..16)) {
            let enc = encode_announcement(&FileRoot(root), &addrs);
            let (r, a) = decode_announcement(&enc).unwrap();
            prop_assert_eq!(r, FileRoot(root));
            prop_assert_eq!(a, addrs);
        }

        #[test]
        fn announcement_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_announcement(&bytes);
        }
    }
}
