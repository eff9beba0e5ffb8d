//! Where a node started with `--layers auto` holds its blocks, and when it
//! moves: no scheduler, each node applies `strata_pipeline::alloc::place` to
//! what it hears of the other hops (their `HopCapacity` announcements, kept
//! as leases in [`Swarm`]; on a chain, only registered compute nodes with
//! the minimum stake count) and takes its own answer.
//!
//! At start the node listens for [`PlacementConfig::join_wait`] before it
//! loads anything, then takes the weakest window of as many blocks as the
//! memory it offers holds (Petals' rule: an uncovered block first). Every
//! [`PlacementConfig::epoch`] it judges the swarm again: when a block has no
//! live holder, or the split is skewed two epochs running, the one node
//! whose move helps most safely (lowest key) loads its new blocks, drains
//! and switches ([`crate::Hops::move_to`]).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_chain::rpc::ChainClient;
use strata_chain::ROLE_COMPUTE;
use strata_engine::{Engine, ModelLayout, Shard};
use strata_p2p::{NodeId, P2pEvent, P2pEvents, P2pHandle};
use strata_pipeline::alloc::{place, Holding, NodeCap, Verdict};
use strata_wire::capacity::HopCapacity;
use strata_wire::protocols::HOP_CAPACITY;

use crate::memory::{caps, Caps};
use crate::{Hops, NodeError};

/// A hop whose last announcement is older than this is not live: three
/// announcements missed at [`crate::ANNOUNCE_EVERY`].
pub const LEASE: Duration = Duration::from_secs(6);

/// When a node with `--layers auto` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementConfig {
    /// How long a joining node listens to announcements before it chooses.
    pub join_wait: Duration,
    /// How often it judges the swarm again.
    pub epoch: Duration,
}

impl Default for PlacementConfig {
    /// A join after three announcement rounds; an epoch of a minute, since
    /// a move costs a weight load and a drain.
    fn default() -> Self {
        Self {
            join_wait: Duration::from_secs(6),
            epoch: Duration::from_secs(60),
        }
    }
}

/// The latest announcement of every hop heard, as leases.
#[derive(Clone, Default)]
pub struct Swarm {
    hops: Arc<Mutex<HashMap<NodeId, (HopCapacity, Instant)>>>,
}

impl Swarm {
    /// Takes one gossip event; true if it was a hop announcement (kept when
    /// it decodes).
    pub async fn hear(&self, p2p: &P2pHandle, event: &P2pEvent) -> bool {
        let P2pEvent::Gossip {
            topic,
            from,
            payload,
        } = event
        else {
            return false;
        };
        if *topic != HOP_CAPACITY {
            return false;
        }
        match HopCapacity::decode(payload) {
            Ok(h) => {
                // Hops send to each other: remember where this one listens.
                for a in &h.capacity.addrs {
                    let _ = p2p.add_address(*from, a).await;
                }
                self.lock().insert(*from, (h, Instant::now()));
            }
            Err(e) => tracing::debug!("bad hop announcement from {from}: {e}"),
        }
        true
    }

    /// Whether `node` is a hop this node has heard from (live or not).
    pub fn knows(&self, node: &NodeId) -> bool {
        self.lock().contains_key(node)
    }

    /// Live hops of the model (`model_hash`, `n_layers`) other than `me`.
    fn live(&self, model_hash: &[u8; 32], n_layers: u16, me: NodeId) -> Vec<(NodeId, HopCapacity)> {
        self.lock()
            .iter()
            .filter(|(id, (h, seen))| {
                **id != me
                    && seen.elapsed() < LEASE
                    && h.capacity.model_hash == *model_hash
                    && h.n_layers == n_layers
            })
            .map(|(id, (h, _))| (*id, h.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (HopCapacity, Instant)>> {
        // Every update is one insert.
        self.hops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The allocation's view of a node: its caps in every role and its speed.
fn node_cap(key: NodeId, caps: Caps, layer_ms: f32) -> NodeCap {
    NodeCap {
        key: key.0,
        cap_first: caps.first,
        cap_mid: caps.mid,
        cap_last: caps.last,
        cap_solo: caps.solo,
        speed: 1000.0 / f64::from(layer_ms.max(1e-3)),
    }
}

/// The nodes whose announcements count: registered compute nodes holding
/// at least the minimum stake. Anyone can gossip a `HopCapacity`; counting a
/// stranger's claim to hold blocks would let it keep a hole from ever being
/// filled. `None` when the chain cannot be read (the caller keeps what it
/// knew).
async fn accountable(chain: &ChainClient) -> Option<HashSet<[u8; 32]>> {
    let min_stake = chain.config().await.ok()?.params.min_stake;
    let nodes = chain.registered_nodes().await.ok()?;
    Some(
        nodes
            .into_iter()
            .filter(|n| n.roles & ROLE_COMPUTE != 0 && n.stake >= min_stake)
            .map(|n| n.operator.to_bytes())
            .collect(),
    )
}

/// Everyone else's rows for [`place`]: caps from the memory each offers and
/// the concurrency it serves, on this model's layout; only `registered`
/// nodes count when that set is known (a node off-chain counts everyone).
fn others(
    swarm: &Swarm,
    layout: &ModelLayout,
    model_hash: &[u8; 32],
    me: NodeId,
    registered: Option<&HashSet<[u8; 32]>>,
) -> (Vec<NodeCap>, Vec<Holding>) {
    let n_layers = layout.layer_bytes.len() as u16;
    let mut live = Vec::new();
    let mut holdings = Vec::new();
    for (id, h) in swarm.live(model_hash, n_layers, me) {
        if registered.is_some_and(|r| !r.contains(&id.0)) {
            continue;
        }
        let c = &h.capacity;
        let caps = caps(layout, u64::from(c.memory_mb), c.max_concurrent as usize);
        live.push(node_cap(id, caps, h.layer_ms));
        let busy = f64::from(c.active) / f64::from(c.max_concurrent.max(1));
        holdings.push(Holding {
            node: id.0,
            layers: h.start..h.end,
            free: (1.0 - busy).clamp(0.0, 1.0),
        });
    }
    (live, holdings)
}

/// Listens for `wait` (handing every event other than hop announcements to
/// `keep`, which the caller serves once it is ready), then chooses the
/// blocks this node takes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn join(
    p2p: &P2pHandle,
    events: &mut P2pEvents,
    swarm: &Swarm,
    wait: Duration,
    layout: &ModelLayout,
    model_hash: &[u8; 32],
    mine: Caps,
    chain: Option<&ChainClient>,
) -> Result<Range<usize>, NodeError> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(ev)) => {
                // Requests before this node serves anything are dropped
                // unanswered: nothing has routed to it yet.
                swarm.hear(p2p, &ev).await;
            }
            Ok(None) => return Err(NodeError::Config("p2p stopped while joining".into())),
            Err(_) => break,
        }
    }
    let me = p2p.node_id();
    let n_layers = layout.layer_bytes.len() as u16;
    let registered = match chain {
        Some(c) => accountable(c).await,
        None => None,
    };
    if chain.is_some() && registered.is_none() {
        tracing::warn!("the chain could not be read: every hop announcement counts for this join");
    }
    let (mut live, holdings) = others(swarm, layout, model_hash, me, registered.as_ref());
    // A joiner's own speed does not enter its window (only the others'
    // throughput does); it is measured once it holds blocks.
    live.push(node_cap(me, mine, 1.0));
    let placement = place(n_layers, &live, &holdings, &me.0, None)
        .map_err(|e| NodeError::Config(format!("placement: {e}")))?;
    let to = placement.to.ok_or_else(|| {
        NodeError::Config(
            "the memory offered holds no block in every role: offer more with --memory-mb".into(),
        )
    })?;
    tracing::info!(
        blocks = ?to,
        heard = holdings.len(),
        "joining: taking the weakest blocks"
    );
    Ok(usize::from(to.start)..usize::from(to.end))
}

/// What a placed node needs to judge the swarm and move.
pub(crate) struct Mover {
    pub(crate) p2p: P2pHandle,
    pub(crate) swarm: Swarm,
    pub(crate) hops: Hops,
    pub(crate) layout: ModelLayout,
    pub(crate) model_path: PathBuf,
    pub(crate) model_hash: [u8; 32],
    pub(crate) caps: Caps,
    pub(crate) max_concurrent: usize,
    pub(crate) epoch: Duration,
    pub(crate) profile_tokens: usize,
    /// Where registrations and stakes are read; `None` off-chain.
    pub(crate) chain: Option<ChainClient>,
}

impl Mover {
    /// Judges the swarm every epoch and moves when `place` says so; runs
    /// until the node stops.
    pub(crate) async fn run(self) {
        let mut previous: Option<Verdict> = None;
        let mut registered: Option<HashSet<[u8; 32]>> = None;
        loop {
            tokio::time::sleep(self.epoch).await;
            if let Some(chain) = &self.chain {
                // A read that fails keeps the last set known.
                if let Some(r) = accountable(chain).await {
                    registered = Some(r);
                }
            }
            match self
                .epoch_once(previous.as_ref(), registered.as_ref())
                .await
            {
                Ok(v) => previous = v,
                Err(e) => tracing::warn!("placement: {e}"),
            }
        }
    }

    async fn epoch_once(
        &self,
        previous: Option<&Verdict>,
        registered: Option<&HashSet<[u8; 32]>>,
    ) -> Result<Option<Verdict>, NodeError> {
        let me = self.p2p.node_id();
        let n_layers = self.layout.layer_bytes.len() as u16;
        let (mut live, mut holdings) =
            others(&self.swarm, &self.layout, &self.model_hash, me, registered);
        let held = self.hops.layers();
        live.push(node_cap(me, self.caps, self.hops.layer_ms()));
        let busy = self.hops.active() as f64 / self.max_concurrent.max(1) as f64;
        holdings.push(Holding {
            node: me.0,
            layers: held.start as u16..held.end as u16,
            free: (1.0 - busy).clamp(0.0, 1.0),
        });
        let placement = place(n_layers, &live, &holdings, &me.0, previous)
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if let Some(to) = placement.to {
            let to = usize::from(to.start)..usize::from(to.end);
            tracing::info!(from = ?held, to = ?to, verdict = ?placement.verdict, "moving");
            self.move_to(to).await?;
        }
        Ok(placement.verdict)
    }

    async fn move_to(&self, to: Range<usize>) -> Result<(), NodeError> {
        let path = self.model_path.clone();
        let layers = to.clone();
        let tokens = self.profile_tokens;
        let (engine, layer_ms) = tokio::task::spawn_blocking(move || {
            let engine = Engine::load_shard(&path, &Shard::Layers(layers.clone()))
                .map_err(|e| NodeError::Model(e.to_string()))?;
            let ms = crate::profile::layer_ms(&engine, layers, tokens).unwrap_or(0.0);
            Ok::<_, NodeError>((engine, ms))
        })
        .await
        .map_err(|e| NodeError::Model(e.to_string()))??;
        let cut = self
            .hops
            .move_to(Arc::new(engine), to.clone(), layer_ms, crate::DRAIN_LIMIT)
            .await;
        tracing::info!(blocks = ?to, cut, "moved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_wire::Capacity;

    fn announce(swarm: &Swarm, node: u8, blocks: Range<u16>) {
        let hop = HopCapacity {
            capacity: Capacity {
                model: "m".into(),
                model_hash: [7; 32],
                price_per_token: 1,
                tokens_per_sec: 0.0,
                memory_mb: 96,
                max_concurrent: 8,
                active: 0,
                context_length: 2048,
                addrs: vec![],
                sent_at_ms: 0,
                policies: Vec::new(),
            },
            start: blocks.start,
            end: blocks.end,
            n_layers: 30,
            layer_ms: 1.0,
            rtt_us: vec![],
        };
        swarm
            .lock()
            .insert(NodeId([node; 32]), (hop, Instant::now()));
    }

    /// A stranger's announcement does not count once registrations are
    /// known: it could claim blocks it does not hold and keep a hole open.
    #[test]
    fn only_registered_hops_count_when_the_chain_is_known() {
        let path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
        let layout = ModelLayout::read(&path).expect("the model (scripts/fetch-model)");
        let swarm = Swarm::default();
        announce(&swarm, 1, 0..10);
        announce(&swarm, 2, 10..20);
        let me = NodeId([9; 32]);
        let (live, holdings) = others(&swarm, &layout, &[7; 32], me, None);
        assert_eq!((live.len(), holdings.len()), (2, 2));
        let registered: HashSet<[u8; 32]> = [[1; 32]].into_iter().collect();
        let (live, holdings) = others(&swarm, &layout, &[7; 32], me, Some(&registered));
        assert_eq!(
            live.iter().map(|n| n.key).collect::<Vec<_>>(),
            vec![[1; 32]]
        );
        assert_eq!(holdings.len(), 1);
        assert_eq!(holdings[0].layers, 0..10);
    }
}
