//! Application request-response: the protocols the application registered
//! ([`Protocols`]), the behaviour that speaks them ([`AppProtocols`]), and
//! [`Requests`], which matches answers to the requests that asked for them,
//! parks requests to peers that must first be found through Kademlia, and
//! turns inbound requests into [`IncomingRequest`]s for the application.
//!
//! Payloads are opaque bytes; each protocol's size limits are enforced both
//! ways, and an undecodable frame costs its sender.

mod behaviour;
mod registry;

use std::collections::HashMap;
use std::time::Instant;

use libp2p::kad::{GetClosestPeersResult, QueryId};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use strata_primitives::protocol::ProtocolSpec;
use tokio::sync::{mpsc, oneshot};

use crate::codec::Incoming;
use crate::error::P2pError;
use crate::identity::{node_of, NodeId};
use crate::peers::{Direction, Misbehaviour, Peers, Protocol};
pub(crate) use behaviour::{AppEvent, AppProtocols};
pub(crate) use registry::Protocols;

/// Where a request's answer (or failure) goes.
pub(crate) type ReplyTx = oneshot::Sender<Result<Vec<u8>, P2pError>>;

/// A request from a peer that the application should answer.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The protocol it came on, as the application registered it.
    pub protocol: ProtocolSpec,
    /// Who sent it (already authenticated by noise).
    pub from: NodeId,
    /// The request bytes (within the protocol's size limit).
    pub payload: Vec<u8>,
    pub(crate) id: u64,
    pub(crate) responder: mpsc::UnboundedSender<(u64, Vec<u8>)>,
}

impl IncomingRequest {
    /// Send the answer. Dropping the request without answering lets the
    /// remote time out.
    pub fn respond(self, payload: Vec<u8>) -> Result<(), P2pError> {
        self.responder
            .send((self.id, payload))
            .map_err(|_| P2pError::Shutdown)
    }
}

/// A request waiting for Kademlia to find its peer.
struct Parked {
    slot: usize,
    payload: Vec<u8>,
    reply: ReplyTx,
}

/// Requests in flight both ways.
pub(crate) struct Requests {
    protocols: Protocols,
    /// Our requests awaiting an answer, by protocol slot and libp2p id (ids
    /// are only unique within one protocol's behaviour).
    pending: HashMap<(usize, OutboundRequestId), ReplyTx>,
    /// Requests handed to the application, by our own id.
    inbound: HashMap<u64, (usize, ResponseChannel<Vec<u8>>)>,
    next_inbound: u64,
    answers_tx: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    answers_rx: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    parked: HashMap<PeerId, Vec<Parked>>,
    lookups: HashMap<QueryId, PeerId>,
}

impl Requests {
    /// Nothing in flight yet.
    pub(crate) fn new(protocols: Protocols) -> Self {
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        Requests {
            protocols,
            pending: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            answers_tx,
            answers_rx,
            parked: HashMap::new(),
            lookups: HashMap::new(),
        }
    }

    /// Sends `payload` to `to` on `protocol`, or refuses it (unregistered
    /// protocol, over the size limit) through `reply`. A peer we are not
    /// connected to is found through Kademlia first, so a node id alone
    /// (e.g. from the chain) is enough to reach it: the request is parked
    /// and, for the first one parked for that peer, the peer to look up is
    /// returned.
    pub(crate) fn send(
        &mut self,
        app: &mut AppProtocols,
        to: PeerId,
        connected: bool,
        protocol: &str,
        payload: Vec<u8>,
        reply: ReplyTx,
    ) -> Option<PeerId> {
        let Some((slot, spec)) = self.protocols.find(protocol) else {
            let _ = reply.send(Err(P2pError::UnknownProtocol(protocol.to_string())));
            return None;
        };
        if payload.len() > spec.max_request {
            let _ = reply.send(Err(P2pError::TooLarge {
                len: payload.len(),
                limit: spec.max_request,
            }));
            return None;
        }
        if connected {
            if let Some(id) = app.send(slot, &to, payload, Vec::new()) {
                self.pending.insert((slot, id), reply);
            }
            return None;
        }
        let waiting = self.parked.entry(to).or_default();
        waiting.push(Parked {
            slot,
            payload,
            reply,
        });
        (waiting.len() == 1).then_some(to)
    }

    /// The Kademlia lookup `query` for `peer` has started.
    pub(crate) fn lookup_started(&mut self, query: QueryId, peer: PeerId) {
        self.lookups.insert(query, peer);
    }

    /// A step of a Kademlia lookup. Once it found the peer's addresses (or
    /// ended without them), the requests parked for that peer are sent (a
    /// dial without addresses fails them cleanly).
    pub(crate) fn on_lookup(
        &mut self,
        app: &mut AppProtocols,
        query: QueryId,
        result: &GetClosestPeersResult,
        last_step: bool,
    ) {
        let Some(peer) = self.lookups.get(&query).copied() else {
            return;
        };
        let found: Vec<Multiaddr> = match result {
            Ok(ok) => ok
                .peers
                .iter()
                .filter(|p| p.peer_id == peer)
                .flat_map(|p| p.addrs.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        if found.is_empty() && !last_step {
            return;
        }
        self.lookups.remove(&query);
        for p in self.parked.remove(&peer).unwrap_or_default() {
            if let Some(id) = app.send(p.slot, &peer, p.payload, found.clone()) {
                self.pending.insert((p.slot, id), p.reply);
            }
        }
    }

    /// An event of the protocol in `slot`. Returns a request for the
    /// application when a well-formed one arrived within its sender's budget;
    /// misbehaviour is charged to `peers`.
    pub(crate) fn on_event(
        &mut self,
        peers: &mut Peers,
        (slot, event): AppEvent,
        now: Instant,
    ) -> Option<IncomingRequest> {
        let spec = self.protocols.get(slot)?;
        let protocol = Protocol::App(spec.name);
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if peers.is_banned(&peer, now) || !peers.admit(peer, protocol, now) {
                        return None;
                    }
                    let payload = match request {
                        Incoming::Valid(r) => r,
                        Incoming::Malformed(e) => {
                            drop(channel);
                            let m = Misbehaviour::bad_frame(
                                protocol,
                                Direction::Request,
                                Some(&e),
                                e.to_string(),
                            );
                            peers.penalise(peer, m, now);
                            return None;
                        }
                    };
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(id, (slot, channel));
                    Some(IncomingRequest {
                        protocol: spec,
                        from: node_of(&peer),
                        payload,
                        id,
                        responder: self.answers_tx.clone(),
                    })
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&(slot, request_id)) {
                        let res = if peers.is_banned(&peer, now) {
                            Err(P2pError::Request("peer banned".into()))
                        } else {
                            Ok(response)
                        };
                        let _ = reply.send(res);
                    }
                    None
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&(slot, request_id)) {
                    let _ = reply.send(Err(match &error {
                        request_response::OutboundFailure::Timeout => P2pError::Timeout,
                        e => P2pError::Request(e.to_string()),
                    }));
                }
                if let Some(m) = Misbehaviour::of_outbound(protocol, &error) {
                    peers.penalise(peer, m, now);
                }
                None
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let Some(m) = Misbehaviour::of_inbound(protocol, &error) {
                    peers.penalise(peer, m, now);
                }
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }

    /// The application's answer to inbound request `id`; dropped (the remote
    /// times out) when over the protocol's response limit.
    pub(crate) fn answer(&mut self, app: &mut AppProtocols, id: u64, payload: Vec<u8>) {
        let Some((slot, channel)) = self.inbound.remove(&id) else {
            return;
        };
        let limit = self.protocols.get(slot).map_or(0, |p| p.max_response);
        if payload.len() > limit {
            tracing::warn!(
                "application response of {} bytes over {limit}: dropped",
                payload.len()
            );
            return;
        }
        app.respond(slot, channel, payload);
    }

    /// The next answer the application gave (never `None` while `self`
    /// lives: it holds a sender).
    pub(crate) async fn next_answer(&mut self) -> Option<(u64, Vec<u8>)> {
        self.answers_rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: ProtocolSpec = ProtocolSpec {
        name: "/strata/task/1",
        max_request: 8,
        max_response: 8,
        timeout_secs: 5,
    };

    fn setup() -> (Requests, AppProtocols) {
        let protocols = Protocols::new(&[TASK], &[]).unwrap();
        let app = AppProtocols::new(protocols.all());
        (Requests::new(protocols), app)
    }

    #[test]
    fn unregistered_and_oversized_requests_are_refused_not_sent() {
        let (mut r, mut app) = setup();
        let peer = PeerId::random();
        let (tx, mut rx) = oneshot::channel();
        assert_eq!(
            r.send(&mut app, peer, true, "/strata/x/1", vec![], tx),
            None
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(P2pError::UnknownProtocol(name))) if name == "/strata/x/1"
        ));
        let (tx, mut rx) = oneshot::channel();
        assert_eq!(
            r.send(&mut app, peer, true, TASK.name, vec![0; 9], tx),
            None
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(P2pError::TooLarge { len: 9, limit: 8 }))
        ));
        assert!(r.pending.is_empty());
    }

    #[test]
    fn requests_to_unknown_peers_wait_for_one_lookup() {
        let (mut r, mut app) = setup();
        let peer = PeerId::random();
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        assert_eq!(
            r.send(&mut app, peer, false, TASK.name, vec![1], tx1),
            Some(peer)
        );
        assert_eq!(r.send(&mut app, peer, false, TASK.name, vec![2], tx2), None);
        assert_eq!(r.parked[&peer].len(), 2);
    }
}
