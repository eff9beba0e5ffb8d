//! One `NetworkBehaviour` over however many request-response protocols the
//! application registered.
//!
//! libp2p's request-response behaviour offers every protocol it was built
//! with on each outbound stream, so one behaviour per protocol is the only
//! way to say which protocol a request goes on. The derive macro composes a
//! fixed set of fields; this wrapper composes a list chosen at start, with
//! libp2p's `MultiHandler` keyed by each protocol's slot.

use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::handler::multi::MultiHandler;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use strata_primitives::protocol::ProtocolSpec;

use crate::codec::{FrameCodec, Incoming};

/// Opaque application request-response on one protocol.
type AppRr = request_response::Behaviour<FrameCodec<Vec<u8>, Vec<u8>>>;

/// An event of the protocol in slot `.0`.
pub(crate) type AppEvent = (usize, request_response::Event<Incoming<Vec<u8>>, Vec<u8>>);

/// The application's protocols, one request-response behaviour per slot.
pub(crate) struct AppProtocols {
    slots: Vec<AppRr>,
    /// Slot polled first next time, so a busy protocol cannot starve the rest.
    next_poll: usize,
}

impl AppProtocols {
    /// One behaviour per spec (in slot order), each with its own size limits
    /// and time-out. The names must have been checked
    /// ([`Protocols::new`](super::Protocols::new)).
    pub(crate) fn new(specs: &[ProtocolSpec]) -> Self {
        let slots = specs
            .iter()
            .map(|p| {
                request_response::Behaviour::with_codec(
                    FrameCodec::new(p.max_request, p.max_response),
                    [(StreamProtocol::new(p.name), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(std::time::Duration::from_secs(p.timeout_secs)),
                )
            })
            .collect();
        AppProtocols {
            slots,
            next_poll: 0,
        }
    }

    /// Sends `payload` on the protocol in `slot` (known to exist), dialling
    /// `addrs` if the peer is not connected.
    pub(crate) fn send(
        &mut self,
        slot: usize,
        peer: &PeerId,
        payload: Vec<u8>,
        addrs: Vec<Multiaddr>,
    ) -> Option<OutboundRequestId> {
        let rr = self.slots.get_mut(slot)?;
        Some(rr.send_request_with_addresses(peer, Incoming::Valid(payload), addrs))
    }

    /// Answers an inbound request of the protocol in `slot`.
    pub(crate) fn respond(
        &mut self,
        slot: usize,
        channel: ResponseChannel<Vec<u8>>,
        payload: Vec<u8>,
    ) {
        if let Some(rr) = self.slots.get_mut(slot) {
            let _ = rr.send_response(channel, payload);
        }
    }
}

impl NetworkBehaviour for AppProtocols {
    type ConnectionHandler = MultiHandler<usize, THandler<AppRr>>;
    type ToSwarm = AppEvent;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        for rr in &mut self.slots {
            rr.handle_pending_inbound_connection(id, local, remote)?;
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let mut handlers = Vec::with_capacity(self.slots.len());
        for (slot, rr) in self.slots.iter_mut().enumerate() {
            handlers.push((
                slot,
                rr.handle_established_inbound_connection(id, peer, local, remote)?,
            ));
        }
        MultiHandler::try_from_iter(handlers).map_err(ConnectionDenied::new)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut out = Vec::new();
        for rr in &mut self.slots {
            out.extend(rr.handle_pending_outbound_connection(id, peer, addresses, role)?);
        }
        Ok(out)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let mut handlers = Vec::with_capacity(self.slots.len());
        for (slot, rr) in self.slots.iter_mut().enumerate() {
            handlers.push((
                slot,
                rr.handle_established_outbound_connection(id, peer, addr, role, port_use)?,
            ));
        }
        MultiHandler::try_from_iter(handlers).map_err(ConnectionDenied::new)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        for rr in &mut self.slots {
            rr.on_swarm_event(event);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        (slot, event): THandlerOutEvent<Self>,
    ) {
        if let Some(rr) = self.slots.get_mut(slot) {
            rr.on_connection_handler_event(peer, id, event);
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<AppEvent, THandlerInEvent<Self>>> {
        let n = self.slots.len();
        for k in 0..n {
            let slot = (self.next_poll + k) % n;
            if let Poll::Ready(ev) = self.slots[slot].poll(cx) {
                self.next_poll = (slot + 1) % n;
                return Poll::Ready(ev.map_out(|e| (slot, e)).map_in(|e| (slot, e)));
            }
        }
        Poll::Pending
    }
}
