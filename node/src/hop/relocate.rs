//! A hop moving to other blocks (`--layers auto`, `crate::placement`):
//! drain, fail over what is left, keep what still has to be settled, swap
//! the engine.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::Engine;

use super::engine::HopEngine;
use super::{fail, Held, Hops};

impl Hops {
    /// Moves this hop to blocks `layers`, which `engine` holds (profiled at
    /// `layer_ms`): refuses new sequences, lets the running ones finish for up to `limit` (those still running
    /// then are failed, and their callers fail over), closes every sequence
    /// still in the old engine so its summary can be settled, then serves
    /// the new blocks. Returns how many sequences were cut.
    pub async fn move_to(
        &self,
        engine: Arc<Engine>,
        layers: Range<usize>,
        layer_ms: f32,
        limit: Duration,
    ) -> usize {
        self.inner.moving.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while self.active() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ids, cut) = {
            let mut t = self.lock();
            let ids = t.ids();
            let mut cut = 0;
            for id in &ids {
                if let Some(seq) = t.by_id_mut(id).filter(|s| !s.ended) {
                    fail(seq, "the hop moved to other blocks".into());
                    cut += 1;
                }
            }
            (ids, cut)
        };
        // Ended sequences still in the old engine: closed there, so their
        // summaries can be settled after the move.
        for id in ids {
            self.close_in_engine(id).await;
        }
        let hop_engine =
            HopEngine::spawn(engine.clone(), layers.clone(), self.inner.events.clone());
        *self.inner.held.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Held {
            engine,
            layers,
            hop_engine,
            layer_ms,
        });
        self.inner.moving.store(false, Ordering::SeqCst);
        cut
    }
}
