//! Which node runs a task: the gateway keeps the latest capacity
//! announcement of every node it hears on gossip, and picks among fresh ones
//! serving the model the one with the most free room (its announced load
//! plus what this gateway has sent it since), faster nodes first on ties.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_p2p::NodeId;
use strata_wire::Capacity;

/// Announcements older than this are ignored (nodes re-announce every 2 s).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

struct Entry {
    capacity: Capacity,
    seen: Instant,
    in_flight: u32,
}

/// The nodes this gateway knows of.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<HashMap<NodeId, Entry>>,
}

impl Router {
    /// Records an announcement.
    pub fn announce(&self, node: NodeId, capacity: Capacity) {
        let mut n = self.lock();
        let in_flight = n.get(&node).map(|e| e.in_flight).unwrap_or(0);
        n.insert(
            node,
            Entry {
                capacity,
                seen: Instant::now(),
                in_flight,
            },
        );
    }

    /// Models served by fresh nodes.
    pub fn models(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .lock()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER)
            .map(|e| e.capacity.model.clone())
            .collect();
        m.sort();
        m.dedup();
        m
    }

    /// Fresh nodes serving `model`, best first, skipping `exclude`.
    pub fn candidates(&self, model: &str, exclude: &[NodeId]) -> Vec<(NodeId, Capacity)> {
        let n = self.lock();
        let mut c: Vec<(&NodeId, &Entry)> = n
            .iter()
            .filter(|(id, e)| {
                e.seen.elapsed() < STALE_AFTER && e.capacity.model == model && !exclude.contains(id)
            })
            .collect();
        let load = |e: &Entry| {
            (e.capacity.active + e.in_flight) as f32 / e.capacity.max_concurrent.max(1) as f32
        };
        c.sort_by(|a, b| {
            load(a.1).total_cmp(&load(b.1)).then(
                b.1.capacity
                    .tokens_per_sec
                    .total_cmp(&a.1.capacity.tokens_per_sec),
            )
        });
        c.into_iter()
            .map(|(id, e)| (*id, e.capacity.clone()))
            .collect()
    }

    /// A task was sent to `node` (`+1`) or ended there (`-1`).
    pub fn track(&self, node: &NodeId, delta: i32) {
        if let Some(e) = self.lock().get_mut(node) {
            e.in_flight = e.in_flight.saturating_add_signed(delta);
        }
    }

    /// Fresh nodes.
    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER)
            .count()
    }

    /// True when no fresh node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Entry>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}
