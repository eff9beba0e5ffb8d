//! Receipts on their way to the relayer. Each signed receipt is written to
//! the node's outbox directory first (so a crash or restart cannot lose what
//! the node is owed), published on the receipt gossip topic for anyone
//! watching, and handed to the relayer by request, retried until the
//! relayer answers that it stored it; only then is the file removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata_p2p::{NodeId, P2pHandle};
use strata_wire::protocols::{RECEIPT, RECEIPTS};
use strata_wire::Receipt;
use tokio::sync::mpsc;

/// First wait before retrying a delivery; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const EXT: &str = "receipt";

/// Queue of receipts to deliver; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Receipt>,
    pending: Arc<AtomicUsize>,
    dir: Option<PathBuf>,
}

impl Outbox {
    /// Starts delivering to `relayer` (if any) over `p2p`. With `dir`,
    /// receipts left there by an earlier run are queued first.
    pub fn start(p2p: P2pHandle, relayer: Option<NodeId>, dir: Option<PathBuf>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Receipt>();
        let pending = Arc::new(AtomicUsize::new(0));
        let outbox = Self {
            tx,
            pending: pending.clone(),
            dir: dir.clone(),
        };
        if let Some(d) = &dir {
            for r in leftovers(d) {
                outbox.queue(r);
            }
        }
        tokio::spawn(async move {
            while let Some(receipt) = rx.recv().await {
                let bytes = receipt.encode();
                if let Err(e) = p2p.publish(&RECEIPTS, bytes.clone()).await {
                    tracing::debug!("gossiping receipt: {e}");
                }
                if let (Some(relayer), Some(d)) = (relayer, &dir) {
                    let file = file_of(d, &receipt);
                    match deliver(&p2p, relayer, bytes).await {
                        Delivery::Stored => {
                            let _ = std::fs::remove_file(&file);
                        }
                        // Kept for the operator to look at, out of the retry set.
                        Delivery::Refused => {
                            let _ = std::fs::rename(&file, file.with_extension("refused"));
                        }
                        Delivery::Stopped => {}
                    }
                } else if let Some(relayer) = relayer {
                    deliver(&p2p, relayer, bytes).await;
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
        outbox
    }

    /// Stores a receipt in the outbox directory, then queues it.
    pub fn push(&self, receipt: Receipt) {
        if let Some(d) = &self.dir {
            let path = file_of(d, &receipt);
            let written = std::fs::create_dir_all(d)
                .and_then(|_| std::fs::write(path.with_extension("tmp"), receipt.encode()))
                .and_then(|_| std::fs::rename(path.with_extension("tmp"), &path));
            if let Err(e) = written {
                tracing::error!("writing receipt to {}: {e}", path.display());
            }
        }
        self.queue(receipt);
    }

    fn queue(&self, receipt: Receipt) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(receipt).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                "receipt outbox has stopped; the receipt stays on disk for the next run"
            );
        }
    }

    /// Receipts not yet handled.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

fn file_of(dir: &Path, r: &Receipt) -> PathBuf {
    dir.join(format!("{}.{EXT}", hex::encode(r.body.task_id)))
}

fn leftovers(dir: &Path) -> Vec<Receipt> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == EXT))
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            match Receipt::decode_verified(&bytes) {
                Ok(r) => Some(r),
                Err(err) => {
                    tracing::warn!(
                        "dropping unreadable outbox file {}: {err}",
                        e.path().display()
                    );
                    None
                }
            }
        })
        .collect()
}

/// How a delivery ended.
enum Delivery {
    /// The relayer stored it (or already had it).
    Stored,
    /// The relayer refused it for good.
    Refused,
    /// The network shut down first.
    Stopped,
}

/// Sends until the relayer answers: `[0]` when the receipt is durably stored
/// (or was already), `[1, message..]` when it refuses it for good. No answer
/// (time-out, relayer down, relayer's store failing) means try again.
async fn deliver(p2p: &P2pHandle, relayer: NodeId, bytes: Vec<u8>) -> Delivery {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match p2p.request(relayer, &RECEIPT, bytes.clone()).await {
            Ok(ans) if ans.first() == Some(&0) => return Delivery::Stored,
            Ok(ans) => {
                let why = String::from_utf8_lossy(ans.get(1..).unwrap_or_default());
                tracing::error!("relayer refused a receipt: {why}");
                return Delivery::Refused;
            }
            Err(strata_p2p::P2pError::Shutdown) => return Delivery::Stopped,
            Err(e) => tracing::debug!("delivering receipt to relayer: {e}; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
