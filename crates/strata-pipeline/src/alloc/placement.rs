//! Where one node goes: the decision a node takes for itself when it joins
//! and at every allocation epoch, from the announcements every node sees.
//!
//! There is no scheduler: each node evaluates [`place`] over the same live
//! set and applies only its own answer. So that two nodes never move at
//! once into the same hole (or out of one layer together), at most one node
//! moves per epoch for a given view: the lowest key among those whose move
//! helps. Others wait for the next epoch, when the first mover's new holding
//! is in everyone's view.

use std::ops::Range;

use super::join::{live_contributions, sum};
use super::rebalance::rebalance;
use super::{aligned_window, plan_sorted, to_u16, validate, AllocError, Holding, NodeCap, NodeKey};
use super::{Node, Verdict};

/// What [`place`] decided for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The epoch's verdict over the swarm; `None` for a joining node (it
    /// holds nothing yet, so there is nothing to judge).
    pub verdict: Option<Verdict>,
    /// The layers to load now, when the node should take or change a range.
    pub to: Option<Range<u16>>,
}

/// Decides where node `me` goes, given the `live` nodes (with `me` among
/// them) and what they hold now (`holdings`: `me` absent when it is joining).
///
/// - **Joining**: Petals' rule, the [`aligned_window`] of at most the layers
///   it can hold in any role, over the free throughput of the others.
/// - **Coverage lost** (some layer has no live holder): a holder's target is
///   its window by the same rule computed without itself, if that covers an
///   uncovered layer; at once.
/// - **Skewed** in this epoch and in `previous`: a holder's target is its row
///   in the re-plan's pipelines ([`plan`](super::plan)); spares stay.
/// - Otherwise it stays.
///
/// A holder may move only to a target that differs from what it holds and
/// keeps every layer no other live node holds (a move must not open a new
/// hole); of those, the lowest key moves.
///
/// Refuses what [`rebalance`] refuses, and `me` not in `live`.
pub fn place(
    n_layers: u16,
    live: &[NodeCap],
    holdings: &[Holding],
    me: &NodeKey,
    previous: Option<&Verdict>,
) -> Result<Placement, AllocError> {
    let nodes = validate(n_layers, live)?;
    let l = u32::from(n_layers);
    let node = |key: &NodeKey| nodes.iter().find(|n| &n.key == key);
    let Some(mine) = node(me) else {
        return Err(AllocError::UnknownNode(*me));
    };
    let Some(held) = holdings.iter().find(|h| &h.node == me) else {
        return Ok(Placement {
            verdict: None,
            to: window_without(n_layers, &nodes, holdings, mine)?,
        });
    };
    let verdict = rebalance(n_layers, live, holdings)?;
    // Each live holder's target this epoch, if it has one.
    let mut targets: Vec<(&Holding, Range<u16>)> = Vec::new();
    match &verdict {
        Verdict::CoverageLost { gaps } => {
            for h in holdings {
                let Some(n) = node(&h.node) else { continue };
                if let Some(w) = window_without(n_layers, &nodes, holdings, n)? {
                    if gaps.iter().any(|g| g.start < w.end && w.start < g.end) {
                        targets.push((h, w));
                    }
                }
            }
        }
        Verdict::Skewed { .. } if verdict.should_move(previous) => {
            // Pipeline rows only: a spare's Petals window is not aligned
            // with its neighbours, so a route might not use it.
            let plan = plan_sorted(l, &nodes, super::dp::choose);
            let rows: Vec<_> = plan
                .pipelines
                .iter()
                .flat_map(|p| p.stages.iter())
                .collect();
            for h in holdings {
                if let Some(row) = rows.iter().find(|s| s.node == h.node) {
                    targets.push((h, row.layers.clone()));
                }
            }
        }
        _ => {}
    }
    // A move must not open a new hole: it keeps every layer only its node holds.
    let mover = targets
        .into_iter()
        .filter(|(h, w)| {
            w != &h.layers
                && sole_layers(holdings, &nodes, h)
                    .iter()
                    .all(|layer| w.contains(layer))
        })
        .min_by_key(|(h, _)| h.node);
    let to = mover.filter(|(h, _)| &h.node == me).map(|(_, w)| w);
    debug_assert!(to.as_ref().is_none_or(|w| w != &held.layers));
    Ok(Placement {
        verdict: Some(verdict),
        to,
    })
}

/// The window `n` would take by Petals' rule over everyone else's free
/// throughput, aligned so routes can use it ([`aligned_window`]); `None` if
/// it cannot hold a layer in every role or no aligned window fits.
fn window_without(
    n_layers: u16,
    nodes: &[Node],
    holdings: &[Holding],
    n: &Node,
) -> Result<Option<Range<u16>>, AllocError> {
    let l = u32::from(n_layers);
    let cap = n.any_role_cap(l);
    if cap == 0 {
        return Ok(None);
    }
    let live = |k: &NodeKey| nodes.iter().any(|x| &x.key == k);
    let others: Vec<Holding> = holdings
        .iter()
        .filter(|h| h.node != n.key && live(&h.node))
        .cloned()
        .collect();
    let t = sum(l, &live_contributions(n_layers, nodes, &others, true)?);
    let held: Vec<Range<u16>> = others.iter().map(|h| h.layers.clone()).collect();
    aligned_window(&t, to_u16(cap), &held)
}

/// The layers of `h` that no other live node holds.
fn sole_layers(holdings: &[Holding], nodes: &[Node], h: &Holding) -> Vec<u16> {
    let live = |k: &NodeKey| nodes.iter().any(|n| &n.key == k);
    h.layers
        .clone()
        .filter(|layer| {
            !holdings
                .iter()
                .any(|o| o.node != h.node && live(&o.node) && o.layers.contains(layer))
        })
        .collect()
}
