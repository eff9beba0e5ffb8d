//! Receipts on their way to the relayer. Each signed receipt is published on
//! the receipt gossip topic (for anyone watching) and handed to the relayer
//! by request, retried until the relayer answers that it stored it.

use std::time::Duration;

use strata_p2p::{GossipKind, NodeId, P2pHandle, RequestKind};
use strata_wire::Receipt;
use tokio::sync::mpsc;

/// First wait before retrying a delivery; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Queue of receipts to deliver; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Receipt>,
}

impl Outbox {
    /// Starts delivering to `relayer` (if any) over `p2p`.
    pub fn start(p2p: P2pHandle, relayer: Option<NodeId>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Receipt>();
        tokio::spawn(async move {
            while let Some(receipt) = rx.recv().await {
                let bytes = receipt.encode();
                if let Err(e) = p2p.publish(GossipKind::Receipt, bytes.clone()).await {
                    tracing::debug!("gossiping receipt: {e}");
                }
                if let Some(relayer) = relayer {
                    deliver(&p2p, relayer, bytes).await;
                }
            }
        });
        Self { tx }
    }

    /// Queues a receipt.
    pub fn push(&self, receipt: Receipt) {
        if self.tx.send(receipt).is_err() {
            tracing::warn!("receipt outbox has stopped; receipt not delivered");
        }
    }
}

/// Sends until stored. The relayer answers `[0]` when the receipt is durably
/// stored (or was already), `[1, message..]` when it refuses it for good.
async fn deliver(p2p: &P2pHandle, relayer: NodeId, bytes: Vec<u8>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match p2p
            .request(relayer, RequestKind::Receipt, bytes.clone())
            .await
        {
            Ok(ans) if ans.first() == Some(&0) => return,
            Ok(ans) => {
                let why = String::from_utf8_lossy(ans.get(1..).unwrap_or_default());
                tracing::error!("relayer refused a receipt: {why}");
                return;
            }
            Err(strata_p2p::P2pError::Shutdown) => return,
            Err(e) => tracing::debug!("delivering receipt to relayer: {e}; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
