//! Which node runs a task: the gateway keeps the latest capacity
//! announcement of every node it hears on gossip, and picks among fresh ones
//! serving the model the one with the most free room (its announced load
//! plus what this gateway has sent it since), faster nodes first on ties.
//!
//! Pipeline hops announce the blocks they hold instead
//! ([`HopCapacity`]); [`Router::routes`] chains fresh ones into routes
//! (`strata_pipeline::route`: least expected time per token given each
//! hop's speed and load, and the round trips hops measure to each other).
//! An announcement is a lease: a hop that stops
//! announcing leaves routing [`STALE_AFTER`] after its last one.
//! [`Router::hops`] lists the fresh hops first, so that the caller can
//! leave out those it will not send a given task to (their stake cannot
//! answer for their share of it: `crate::ceiling`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_p2p::NodeId;
use strata_pipeline::route::{best_route, Offer};
use strata_wire::capacity::HopCapacity;
use strata_wire::hop::RouteHop;
use strata_wire::Capacity;

/// Announcements older than this are ignored (nodes re-announce every 2 s).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

struct Entry {
    capacity: Capacity,
    seen: Instant,
    in_flight: u32,
}

/// Round trip assumed between two hops neither of which announced one.
const DEFAULT_RTT_MS: f64 = 1.0;

struct HopEntry {
    hop: HopCapacity,
    seen: Instant,
    in_flight: u32,
}

/// Routes for one pipelined task, best first, and what they share.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Best first; the later ones avoid one node of the best each, for failover.
    pub routes: Vec<Vec<RouteHop>>,
    /// SHA-256 of the model file every hop holds a part of.
    pub model_hash: [u8; 32],
    /// The model's block count.
    pub n_layers: u16,
    /// Each node's price per whole-model token, as announced.
    pub prices: HashMap<[u8; 32], u64>,
    /// Each node's announced decode time of one token through one block,
    /// ms (what the stall detector expects of a route).
    pub layer_ms: HashMap<[u8; 32], f32>,
}

/// A fresh pipeline hop, as announced.
#[derive(Debug, Clone, PartialEq)]
pub struct HopHolding {
    /// The node.
    pub node: [u8; 32],
    /// The blocks it holds.
    pub blocks: Range<u16>,
    /// The model's block count.
    pub n_layers: u16,
    /// Its price per whole-model token.
    pub price_per_token: u64,
}

/// Free slots a node keeps for interactive traffic: deferred (batch) work
/// is sent to a node only while more than this many of its announced
/// `max_concurrent` slots are free, counting its announced `active` tasks
/// and every task this gateway sent it since (`crate::batches`).
pub const BATCH_RESERVE_SLOTS: u32 = 1;

/// True when `capacity`, with `in_flight` more tasks from this gateway,
/// has room for batch work beyond [`BATCH_RESERVE_SLOTS`].
pub fn batch_room(capacity: &Capacity, in_flight: u32) -> bool {
    let used = capacity.active.saturating_add(in_flight);
    capacity.max_concurrent.saturating_sub(used) > BATCH_RESERVE_SLOTS
}

/// The nodes this gateway knows of.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<HashMap<NodeId, Entry>>,
    hops: Mutex<HashMap<NodeId, HopEntry>>,
    /// Interactive tasks accepted and not yet sent to a node.
    waiting: AtomicUsize,
}

/// An interactive task waiting for a node; it stops waiting when dropped.
pub struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

    /// Records a pipeline hop's announcement.
    pub fn announce_hop(&self, node: NodeId, hop: HopCapacity) {
        let mut h = self.lock_hops();
        let in_flight = h.get(&node).map(|e| e.in_flight).unwrap_or(0);
        h.insert(
            node,
            HopEntry {
                hop,
                seen: Instant::now(),
                in_flight,
            },
        );
    }

    /// Fresh hops holding parts of `model`.
    pub fn hops(&self, model: &str) -> Vec<HopHolding> {
        self.lock_hops()
            .iter()
            .filter(|(_, e)| e.seen.elapsed() < STALE_AFTER && e.hop.capacity.model == model)
            .map(|(id, e)| HopHolding {
                node: id.0,
                blocks: e.hop.start..e.hop.end,
                n_layers: e.hop.n_layers,
                price_per_token: e.hop.capacity.price_per_token,
            })
            .collect()
    }

    /// Routes over fresh hops holding parts of `model`, none of them in
    /// `exclude` (hops a task may not be sent to): the best, then the best
    /// without each of its nodes in turn (distinct ones only). None when no
    /// chain of such hops covers the model.
    pub fn routes(&self, model: &str, exclude: &[[u8; 32]]) -> Option<Routes> {
        let hops = self.lock_hops();
        let fresh: Vec<(&NodeId, &HopEntry)> = hops
            .iter()
            .filter(|(id, e)| {
                e.seen.elapsed() < STALE_AFTER
                    && e.hop.capacity.model == model
                    && !exclude.contains(&id.0)
            })
            .collect();
        // One model file: the one the most hops hold (ties to the smaller hash).
        let mut files: HashMap<([u8; 32], u16), usize> = HashMap::new();
        for (_, e) in &fresh {
            *files
                .entry((e.hop.capacity.model_hash, e.hop.n_layers))
                .or_default() += 1;
        }
        let (&(model_hash, n_layers), _) = files
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0 .0.cmp(&a.0 .0)))?;
        let mut offers = Vec::new();
        let mut prices = HashMap::new();
        let mut layer_ms = HashMap::new();
        for (id, e) in fresh {
            let c = &e.hop.capacity;
            if c.model_hash != model_hash || e.hop.n_layers != n_layers {
                continue;
            }
            prices.insert(id.0, c.price_per_token);
            layer_ms.insert(id.0, e.hop.layer_ms);
            offers.push(Offer {
                node: id.0,
                layers: e.hop.start..e.hop.end,
                layer_ms: f64::from(e.hop.layer_ms),
                load: f64::from(c.active + e.in_flight) / f64::from(c.max_concurrent.max(1)),
            });
        }
        // Round trips the hops measured (libp2p ping) and announced: either
        // end's figure serves for the edge.
        let mut rtts: HashMap<([u8; 32], [u8; 32]), f64> = HashMap::new();
        for (id, e) in hops.iter() {
            for (peer, us) in &e.hop.rtt_us {
                let ms = f64::from(*us) / 1000.0;
                rtts.insert((id.0, *peer), ms);
                rtts.entry((*peer, id.0)).or_insert(ms);
            }
        }
        let rtt = |a: &[u8; 32], b: &[u8; 32]| rtts.get(&(*a, *b)).copied();
        let route = |exclude: &[[u8; 32]]| {
            best_route(n_layers, &offers, exclude, rtt, DEFAULT_RTT_MS).map(|r| {
                r.hops
                    .into_iter()
                    .map(|(node, layers)| RouteHop {
                        node,
                        start: layers.start,
                        end: layers.end,
                    })
                    .collect::<Vec<_>>()
            })
        };
        let best = route(&[])?;
        let mut routes = vec![best.clone()];
        for hop in &best {
            if let Some(r) = route(&[hop.node]) {
                if !routes.contains(&r) {
                    routes.push(r);
                }
            }
        }
        Some(Routes {
            routes,
            model_hash,
            n_layers,
            prices,
            layer_ms,
        })
    }

    /// A pipelined task was sent over `route` (`+1`) or ended (`-1`).
    pub fn track_route(&self, route: &[RouteHop], delta: i32) {
        let mut hops = self.lock_hops();
        for h in route {
            if let Some(e) = hops.get_mut(&NodeId(h.node)) {
                e.in_flight = e.in_flight.saturating_add_signed(delta);
            }
        }
    }

    /// Models served by fresh nodes (whole, or hops of a route).
    pub fn models(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .lock()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER)
            .map(|e| e.capacity.model.clone())
            .collect();
        m.extend(
            self.lock_hops()
                .values()
                .filter(|e| e.seen.elapsed() < STALE_AFTER)
                .map(|e| e.hop.capacity.model.clone()),
        );
        m.sort();
        m.dedup();
        m
    }

    /// Fresh nodes serving policy version `policy_version` of `model` (0:
    /// the base model, which every node serves; above 0: only nodes whose
    /// announcement lists it), best first, skipping `exclude`.
    pub fn candidates(
        &self,
        model: &str,
        policy_version: u64,
        exclude: &[NodeId],
    ) -> Vec<(NodeId, Capacity)> {
        let n = self.lock();
        let mut c: Vec<(&NodeId, &Entry)> = n
            .iter()
            .filter(|(id, e)| {
                e.seen.elapsed() < STALE_AFTER
                    && e.capacity.model == model
                    && e.capacity.holds_policy(policy_version)
                    && !exclude.contains(id)
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

    /// Policy versions above 0 that fresh nodes serving `model` announce,
    /// ascending (for a refusal that says what is served).
    pub fn policy_versions(&self, model: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .lock()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER && e.capacity.model == model)
            .flat_map(|e| e.capacity.policies.iter().map(|p| p.version))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Counts an interactive task as waiting for a node until the guard
    /// is dropped (batch work starts only while none waits).
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting)
    }

    /// Interactive tasks waiting for a node now.
    pub fn interactive_waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Fresh nodes serving `model` that batch work may go to now: priced at
    /// most `max_price` per token (any price if None), with room beyond the
    /// interactive reserve ([`batch_room`]); cheapest first, then least
    /// loaded, skipping `exclude`.
    pub fn batch_candidates(
        &self,
        model: &str,
        exclude: &[NodeId],
        max_price: Option<u64>,
    ) -> Vec<(NodeId, Capacity)> {
        let n = self.lock();
        let mut c: Vec<(&NodeId, &Entry)> = n
            .iter()
            .filter(|(id, e)| {
                e.seen.elapsed() < STALE_AFTER
                    && e.capacity.model == model
                    && !exclude.contains(id)
                    && max_price.is_none_or(|p| e.capacity.price_per_token <= p)
                    && batch_room(&e.capacity, e.in_flight)
            })
            .collect();
        let load = |e: &Entry| e.capacity.active.saturating_add(e.in_flight);
        c.sort_by(|a, b| {
            a.1.capacity
                .price_per_token
                .cmp(&b.1.capacity.price_per_token)
                .then(load(a.1).cmp(&load(b.1)))
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

    /// Fresh nodes (whole and hops).
    pub fn len(&self) -> usize {
        let whole = self
            .lock()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER)
            .count();
        let hops = self
            .lock_hops()
            .values()
            .filter(|e| e.seen.elapsed() < STALE_AFTER)
            .count();
        whole + hops
    }

    /// True when no fresh node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Entry>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_hops(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, HopEntry>> {
        self.hops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceiling::hops_over;

    fn hop(blocks: Range<u16>, price: u64, rtt_us: Vec<([u8; 32], u32)>) -> HopCapacity {
        let capacity = Capacity {
            model: "m".into(),
            model_hash: [7; 32],
            price_per_token: price,
            tokens_per_sec: 10.0,
            memory_mb: 100,
            max_concurrent: 4,
            active: 0,
            context_length: 2048,
            addrs: vec![],
            sent_at_ms: 0,
            policies: Vec::new(),
        };
        HopCapacity {
            capacity,
            start: blocks.start,
            end: blocks.end,
            n_layers: 30,
            layer_ms: 0.5,
            rtt_us,
        }
    }

    fn announce(router: &Router, n: u8, blocks: Range<u16>, price: u64) {
        router.announce_hop(NodeId([n; 32]), hop(blocks, price, vec![]));
    }

    fn whole(price: u64, active: u32, max_concurrent: u32) -> Capacity {
        Capacity {
            price_per_token: price,
            active,
            max_concurrent,
            ..hop(0..30, price, vec![]).capacity
        }
    }

    /// Batch work takes only slots beyond the interactive reserve, counting
    /// what this gateway sent since the announcement; it goes to the
    /// cheapest node under the cap; nothing while an interactive task waits
    /// is the batch runner's check of `interactive_waiting`.
    #[test]
    fn batch_work_leaves_the_reserve_and_the_price_cap() {
        assert!(batch_room(&whole(1, 0, 4), 0));
        assert!(batch_room(&whole(1, 2, 4), 0));
        assert!(
            !batch_room(&whole(1, 3, 4), 0),
            "one free slot is the reserve"
        );
        assert!(!batch_room(&whole(1, 2, 4), 1));
        assert!(!batch_room(&whole(1, 9, 4), 0));
        assert!(
            !batch_room(&whole(1, 0, 1), 0),
            "a one-slot node never takes batch work"
        );

        let r = Router::default();
        let (cheap, dear, full) = (NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32]));
        r.announce(dear, whole(5, 0, 4));
        r.announce(cheap, whole(1, 1, 4));
        r.announce(full, whole(1, 3, 4));
        let ids = |max| -> Vec<NodeId> {
            r.batch_candidates("m", &[], max)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(ids(None), vec![cheap, dear]);
        assert_eq!(ids(Some(2)), vec![cheap]);
        // Tasks this gateway sent since the announcement count too: with
        // one more, two of four are free; with two, only the reserve.
        r.track(&cheap, 1);
        assert_eq!(ids(Some(2)), vec![cheap]);
        r.track(&cheap, 1);
        assert_eq!(ids(Some(2)), Vec::<NodeId>::new());
        assert_eq!(r.batch_candidates("other", &[], None).len(), 0);

        assert_eq!(r.interactive_waiting(), 0);
        let w = r.waiting();
        assert_eq!(r.interactive_waiting(), 1);
        drop(w);
        assert_eq!(r.interactive_waiting(), 0);
    }

    /// Two replicas of the middle blocks, equally fast: the route takes the
    /// one the others measured closer, from either end's announcement.
    #[test]
    fn routes_avoid_the_hop_with_the_long_round_trips() {
        let (a, near, far, c) = ([1; 32], [2; 32], [3; 32], [4; 32]);
        let route_middle = |far_us: u32, near_us: u32| {
            let r = Router::default();
            r.announce_hop(
                NodeId(a),
                hop(0..10, 1, vec![(far, far_us), (near, near_us)]),
            );
            r.announce_hop(NodeId(near), hop(10..20, 1, vec![]));
            r.announce_hop(NodeId(far), hop(10..20, 1, vec![(c, far_us)]));
            r.announce_hop(NodeId(c), hop(20..30, 1, vec![(near, near_us)]));
            r.routes("m", &[]).unwrap().routes[0][1].node
        };
        assert_eq!(route_middle(40_000, 200), near);
        assert_eq!(route_middle(200, 40_000), far);
    }

    /// A hop whose stake cannot answer for its share of a task is in none
    /// of that task's routes; with no replica of it, the task has none.
    #[test]
    fn hops_over_their_ceiling_are_left_out() {
        let router = Router::default();
        announce(&router, 1, 0..10, 10);
        announce(&router, 2, 10..20, 10);
        announce(&router, 3, 10..20, 10);
        announce(&router, 4, 20..30, 10);
        let all = router.routes("m", &[]).expect("a route");
        assert!(all.routes.iter().flatten().any(|h| h.node == [2; 32]));
        assert_eq!(all.layer_ms.get(&[1; 32]), Some(&0.5));

        // 300 tokens at 10 a token: 1 000 per ten blocks. Node 2's stake
        // answers for 999.
        let holdings = router.hops("m");
        assert_eq!(holdings.len(), 4);
        let ceiling = |n: &[u8; 32]| if n[0] == 2 { 999 } else { 1_000 };
        let over = hops_over(&holdings, 300, ceiling);
        assert_eq!(over, vec![[2; 32]]);
        let fit = router
            .routes("m", &over)
            .expect("a route through the replica");
        assert!(!fit.routes.is_empty());
        for route in &fit.routes {
            assert!(route.iter().all(|h| h.node != [2; 32]), "{route:?}");
        }
        assert!(!fit.prices.contains_key(&[2; 32]));

        // Both holders of 10..20 over their ceiling: no route for the task.
        let ceiling = |n: &[u8; 32]| if n[0] == 2 || n[0] == 3 { 0 } else { 1_000 };
        let mut over = hops_over(&holdings, 300, ceiling);
        over.sort();
        assert_eq!(over, vec![[2; 32], [3; 32]]);
        assert!(router.routes("m", &over).is_none());
    }
}
