//! Receipts from the p2p network: `Receipt` gossip, and `Receipt` requests,
//! which are answered only once the receipt is durably stored (one byte 0),
//! or refused for a fault of the sender (one byte 1 and a UTF-8 reason); when
//! the relayer's own store fails the request goes unanswered and is retried.

use std::sync::Arc;

use strata_p2p::{P2pEvent, P2pEvents};
use strata_wire::protocols::{RECEIPT, RECEIPTS};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ingest::ingest;
use crate::store::Store;

/// Answer byte: stored (or already had it).
pub const ANSWER_STORED: u8 = 0;
/// Answer byte: refused; a UTF-8 message follows.
pub const ANSWER_REFUSED: u8 = 1;

/// Consumes network events until cancelled or the swarm stops.
pub async fn run(store: Arc<Store>, mut events: P2pEvents, cancel: CancellationToken) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            None => return,
            Some(P2pEvent::Gossip {
                topic: RECEIPTS,
                from,
                payload,
            }) => match ingest(&store, payload).await {
                Ok((r, accepted)) => {
                    debug!(%from, task = %strata_wire::hex32(&r.body.task_id), ?accepted, "receipt from gossip")
                }
                Err(e) => warn!(%from, error = %e, "receipt from gossip refused"),
            },
            Some(P2pEvent::Request(req)) if req.protocol == RECEIPT => {
                let from = req.from;
                let answer = match ingest(&store, req.payload.clone()).await {
                    Ok(_) => vec![ANSWER_STORED],
                    Err(e) if !e.is_bad_input() => {
                        // Our fault (the store failed): no answer, so the
                        // node's outbox times out and sends it again.
                        warn!(%from, error = %e, "could not store a receipt; the node will retry");
                        continue;
                    }
                    Err(e) => {
                        warn!(%from, error = %e, "receipt request refused");
                        let mut answer = vec![ANSWER_REFUSED];
                        answer.extend_from_slice(e.to_string().as_bytes());
                        answer
                    }
                };
                if req.respond(answer).is_err() {
                    return;
                }
            }
            Some(_) => {}
        }
    }
}
