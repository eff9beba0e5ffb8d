//! Layer allocation: how many pipelines, which nodes in each, which layers
//! each node holds; where spare and joining nodes go; when to rebalance.
//!
//! Everything here is a pure function of its arguments. Nodes are first put in
//! one canonical order, capacity descending then key ascending, so the input
//! order never matters; all later tie-breaks refer to that order.

mod dp;
mod join;
mod placement;
mod rebalance;
mod waterfill;

use std::ops::Range;

pub use join::{aligned_window, join_window, layer_throughput, place_spares, Holding};
pub use placement::{place, Placement};
pub use rebalance::{rebalance, Verdict, MIN_GAIN, SKEW_CV};

/// A node's identity: its 32-byte public key.
pub type NodeKey = [u8; 32];

/// Most nodes one plan accepts. The greedy fallback is quadratic in the node
/// count; this keeps a plan well under a second even in a debug build, and a
/// swarm larger than this for one model would be planned per region anyway.
pub const MAX_NODES: usize = 4096;

/// What one node offers: how many layers it can hold in each role, and how
/// fast it runs them.
///
/// The roles differ because the first hop also holds the token embedding and
/// the last hop the output head, which take memory that would otherwise hold
/// layers. A node that is a pipeline on its own holds both, so its cap is the
/// smallest; it is given explicitly because rounding (caps are whole layers)
/// makes it not exactly derivable from the other three.
/// Caps above the model's layer count are fine (they mean "all of them").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeCap {
    /// The node's key; unique within one plan.
    pub key: NodeKey,
    /// Layers it can hold as the first hop (with the embedding).
    pub cap_first: u16,
    /// Layers it can hold as a middle hop (layers only): its largest cap.
    pub cap_mid: u16,
    /// Layers it can hold as the last hop (with the head).
    pub cap_last: u16,
    /// Layers it can hold as the only hop (embedding and head).
    pub cap_solo: u16,
    /// Decode speed in layers per second (one token through one layer);
    /// finite and positive.
    pub speed: f64,
}

/// One hop of a pipeline: a node and the contiguous layers it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stage {
    /// The node holding these layers.
    pub node: NodeKey,
    /// The layers `[start, end)`, never empty.
    pub layers: Range<u16>,
}

/// A chain of stages whose ranges follow each other and cover `[0, L)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pipeline {
    /// The hops in order: the first holds layer 0 (and the embedding), the
    /// last holds layer `L - 1` (and the head).
    pub stages: Vec<Stage>,
}

/// The allocation of a whole live set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Plan {
    /// The pipelines, ordered by their first hop in canonical node order.
    pub pipelines: Vec<Pipeline>,
    /// Nodes in no pipeline, in canonical order (capacity descending, then
    /// key). They become replicas through [`place_spares`] / [`join_window`].
    pub spare: Vec<NodeKey>,
}

impl Plan {
    /// The layers `node` holds in this plan's pipelines, if any: what a node
    /// reads to apply its own row.
    pub fn layers_of(&self, node: &NodeKey) -> Option<Range<u16>> {
        self.pipelines
            .iter()
            .flat_map(|p| p.stages.iter())
            .find(|s| &s.node == node)
            .map(|s| s.layers.clone())
    }

    /// Total number of stages over all pipelines.
    pub fn stage_count(&self) -> usize {
        self.pipelines.iter().map(|p| p.stages.len()).sum()
    }
}

/// Why an allocation input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocError {
    /// The model has zero layers: there is nothing to allocate.
    #[error("the model has no layers")]
    NoLayers,
    /// More nodes than [`MAX_NODES`].
    #[error("{count} nodes, more than the {max} one plan accepts")]
    TooManyNodes {
        /// Nodes given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A node's speed is NaN, infinite, zero or negative.
    #[error("node {} has speed {speed}: it must be finite and positive", short(.node))]
    BadSpeed {
        /// The node.
        node: NodeKey,
        /// The speed given.
        speed: f64,
    },
    /// The same key appears twice.
    #[error("node {} appears twice", short(.0))]
    DuplicateNode(NodeKey),
    /// Caps that no memory budget can produce: the embedding and the head
    /// only ever take room away, so `solo ≤ first, last ≤ mid` must hold.
    #[error("node {} has caps first {first}, mid {mid}, last {last}, solo {solo}: need solo <= first, last <= mid", short(.node))]
    InconsistentCaps {
        /// The node.
        node: NodeKey,
        /// `cap_first` given.
        first: u16,
        /// `cap_mid` given.
        mid: u16,
        /// `cap_last` given.
        last: u16,
        /// `cap_solo` given.
        solo: u16,
    },
    /// A holding's layer range is empty or reaches past the model.
    #[error("node {} holds layers {start}..{end}, not a non-empty range inside 0..{n_layers}", short(.node))]
    BadRange {
        /// The node.
        node: NodeKey,
        /// Start of the range given.
        start: u16,
        /// End of the range given.
        end: u16,
        /// The model's layer count.
        n_layers: u16,
    },
    /// A holding's free fraction is not a number in `[0, 1]`.
    #[error("node {} has free fraction {free}: it must lie in [0, 1]", short(.node))]
    BadFree {
        /// The node.
        node: NodeKey,
        /// The fraction given.
        free: f64,
    },
    /// Two holdings name the same node (a node holds one range).
    #[error("node {} has two holdings", short(.0))]
    DuplicateHolding(NodeKey),
    /// A join window of zero layers was asked for.
    #[error("a joining node must be able to hold at least one layer")]
    ZeroCap,
    /// A per-layer throughput is NaN, infinite or negative.
    #[error("throughput of layer {layer} is {value}: it must be finite and non-negative")]
    BadThroughput {
        /// The layer.
        layer: usize,
        /// The value given.
        value: f64,
    },
    /// More per-layer throughputs than a layer index (`u16`) can name.
    #[error("{0} layers, more than a layer index can name")]
    TooManyLayers(usize),
    /// The node asking where to go is not in the live set it gave.
    #[error("node {} is not among the live nodes", short(.0))]
    UnknownNode(NodeKey),
}

/// The first four bytes in hex: enough to tell nodes apart in a message.
fn short(key: &NodeKey) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The position a node takes in a pipeline, which decides its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The only hop.
    Solo,
    /// First of several.
    First,
    /// Neither first nor last.
    Mid,
    /// Last of several.
    Last,
}

/// A validated node with its caps clamped to the model's depth, so the
/// arithmetic below never sees a cap above `L`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub(crate) key: NodeKey,
    pub(crate) first: u32,
    pub(crate) mid: u32,
    pub(crate) last: u32,
    pub(crate) solo: u32,
    pub(crate) speed: f64,
}

impl Node {
    fn new(cap: &NodeCap, n_layers: u16) -> Node {
        let clamp = |c: u16| u32::from(c.min(n_layers));
        Node {
            key: cap.key,
            first: clamp(cap.cap_first),
            mid: clamp(cap.cap_mid),
            last: clamp(cap.cap_last),
            solo: clamp(cap.cap_solo),
            speed: cap.speed,
        }
    }

    pub(crate) fn cap(&self, role: Role) -> u32 {
        match role {
            Role::Solo => self.solo,
            Role::First => self.first,
            Role::Mid => self.mid,
            Role::Last => self.last,
        }
    }

    /// The most layers it can hold wherever a window lands: a spare's window
    /// may touch layer 0 or layer `L - 1`, so it gets the smaller end cap,
    /// and it must not span the whole model unless it can hold it alone.
    pub(crate) fn any_role_cap(&self, n_layers: u32) -> u32 {
        let cap = self.first.min(self.last);
        if cap >= n_layers && self.solo < n_layers {
            n_layers - 1
        } else {
            cap
        }
    }
}

/// Checks every node and returns them in canonical order.
///
/// The order is (`cap_mid` descending, key ascending): the dynamic program
/// opens pipelines with the biggest nodes, and the key (unique) makes the
/// order total, which is what makes plans independent of input order.
pub(crate) fn validate(n_layers: u16, nodes: &[NodeCap]) -> Result<Vec<Node>, AllocError> {
    if n_layers == 0 {
        return Err(AllocError::NoLayers);
    }
    if nodes.len() > MAX_NODES {
        return Err(AllocError::TooManyNodes {
            count: nodes.len(),
            max: MAX_NODES,
        });
    }
    let mut keys: Vec<&NodeKey> = nodes.iter().map(|n| &n.key).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(AllocError::DuplicateNode(*pair[0]));
    }
    let mut sorted: Vec<&NodeCap> = nodes.iter().collect();
    sorted.sort_unstable_by(|a, b| b.cap_mid.cmp(&a.cap_mid).then(a.key.cmp(&b.key)));
    // Checked in canonical order so the same bad set always names the same node.
    for n in &sorted {
        if !(n.speed.is_finite() && n.speed > 0.0) {
            return Err(AllocError::BadSpeed {
                node: n.key,
                speed: n.speed,
            });
        }
        if n.cap_first > n.cap_mid
            || n.cap_last > n.cap_mid
            || n.cap_solo > n.cap_first.min(n.cap_last)
        {
            return Err(AllocError::InconsistentCaps {
                node: n.key,
                first: n.cap_first,
                mid: n.cap_mid,
                last: n.cap_last,
                solo: n.cap_solo,
            });
        }
    }
    Ok(sorted.into_iter().map(|n| Node::new(n, n_layers)).collect())
}

/// Plans the pipelines for a model of `n_layers` layers over `nodes`.
///
/// Parallax's two phases: a dynamic program picks the number of pipelines and
/// their members (fewest stages for each count `k`, best `k² / stages`), then each
/// pipeline's layers are water-filled in proportion to speed under the caps.
/// Nodes not needed are returned as [`Plan::spare`]. If the nodes cannot
/// cover the model even once, the plan is empty and every node is spare:
/// that is a fact about the swarm, not an input error.
///
/// Refuses `n_layers == 0`, a non-finite or non-positive speed, duplicate
/// keys, inconsistent caps and more than [`MAX_NODES`] nodes.
pub fn plan(n_layers: u16, nodes: &[NodeCap]) -> Result<Plan, AllocError> {
    let sorted = validate(n_layers, nodes)?;
    Ok(plan_sorted(u32::from(n_layers), &sorted, dp::choose))
}

/// The plan over already validated, sorted nodes, with the way pipelines are
/// chosen passed in so tests can compare the program against the greedy pass.
pub(crate) fn plan_sorted(
    l: u32,
    sorted: &[Node],
    choose: fn(u32, &[Node]) -> Vec<dp::Members>,
) -> Plan {
    let mut used = vec![false; sorted.len()];
    let mut pipelines = Vec::new();
    for members in choose(l, sorted) {
        let shape: Vec<(u32, f64)> = members
            .iter()
            .map(|&(i, role)| (sorted[i].cap(role), sorted[i].speed))
            .collect();
        let Some(sizes) = waterfill::split(l, &shape) else {
            // The chooser only forms pipelines the split can serve; if that
            // ever failed, leaving its nodes spare keeps the plan valid.
            debug_assert!(false, "chosen pipeline cannot be split: {shape:?}");
            continue;
        };
        let mut start = 0u32;
        let mut stages = Vec::with_capacity(members.len());
        for (&(i, _), size) in members.iter().zip(sizes) {
            used[i] = true;
            // Both ends are ≤ L ≤ u16::MAX: the split sums to exactly L.
            stages.push(Stage {
                node: sorted[i].key,
                layers: to_u16(start)..to_u16(start + size),
            });
            start += size;
        }
        pipelines.push(Pipeline { stages });
    }
    let spare = sorted
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(n, _)| n.key)
        .collect();
    Plan { pipelines, spare }
}

/// Narrows a layer index already known to be ≤ `L` (a `u16`).
pub(crate) fn to_u16(x: u32) -> u16 {
    u16::try_from(x).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests;
