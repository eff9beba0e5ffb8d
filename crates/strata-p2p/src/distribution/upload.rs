//! Sending chunk bytes: read and paced off the event loop, so a capped
//! uplink never stalls the swarm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;

use super::protocol::ChunkResponse;
use super::store::ChunkStore;

/// A chunk response ready to send.
type Ready = (ResponseChannel<ChunkResponse>, ChunkResponse);

/// Token-bucket-like pacing of uploads: each chunk reserves its transmission
/// slot at `rate` bytes/s, so the node's upload averages at most `rate`.
struct RateLimiter {
    rate: f64,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        RateLimiter {
            rate: rate.max(1) as f64,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// When `bytes` may be sent: after everything reserved before them.
    fn reserve(&self, bytes: usize, now: Instant) -> Instant {
        let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*next).max(now);
        let done = start + Duration::from_secs_f64(bytes as f64 / self.rate);
        *next = done;
        done
    }

    async fn acquire(&self, bytes: usize) {
        let done = self.reserve(bytes, Instant::now());
        tokio::time::sleep_until(done.into()).await;
    }
}

/// The upload side: pacing, counters, and the channel on which chunk reads
/// come back to the event loop.
pub(super) struct Uploads {
    limiter: Option<Arc<RateLimiter>>,
    uploaded: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    /// Test only: flip the first byte of every chunk sent.
    corrupt: bool,
    tx: mpsc::UnboundedSender<Ready>,
    rx: mpsc::UnboundedReceiver<Ready>,
}

impl Uploads {
    /// Uploads capped at `rate_limit` bytes/s, if any.
    pub(super) fn new(rate_limit: Option<u64>, corrupt: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Uploads {
            limiter: rate_limit.map(|r| Arc::new(RateLimiter::new(r))),
            uploaded: Arc::new(AtomicU64::new(0)),
            served: Arc::new(AtomicU64::new(0)),
            corrupt,
            tx,
            rx,
        }
    }

    /// The next chunk response ready to send.
    pub(super) async fn next(&mut self) -> Option<Ready> {
        self.rx.recv().await
    }

    /// Chunk bytes uploaded and chunk requests served so far.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.uploaded.load(Ordering::Relaxed),
            self.served.load(Ordering::Relaxed),
        )
    }

    /// Reads chunk `i` of `store`, paces it and hands the response back to
    /// the event loop (see [`Uploads::next`]), all off the loop.
    pub(super) fn send_chunk(
        &self,
        store: Arc<ChunkStore>,
        i: u32,
        channel: ResponseChannel<ChunkResponse>,
    ) {
        let (tx, limiter, uploaded, served, corrupt) = (
            self.tx.clone(),
            self.limiter.clone(),
            self.uploaded.clone(),
            self.served.clone(),
            self.corrupt,
        );
        tokio::spawn(async move {
            let resp = match store.read_chunk(i) {
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
            let _ = tx.send((channel, resp));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_paced_back_to_back() {
        let l = RateLimiter::new(1000);
        let t0 = Instant::now();
        assert_eq!(l.reserve(500, t0), t0 + Duration::from_millis(500));
        // The next chunk waits for the first, even if asked for at once.
        assert_eq!(l.reserve(1000, t0), t0 + Duration::from_millis(1500));
        // An idle uplink does not bank credit.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(l.reserve(250, later), later + Duration::from_millis(250));
    }
}
