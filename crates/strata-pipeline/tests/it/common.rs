//! Swarm generators and the invariants every plan must satisfy.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use proptest::prelude::*;
use strata_pipeline::{NodeCap, NodeKey, Plan};

/// Cases per property: enough to hit the program, the greedy pass and the
/// rounding corners, few enough to run in seconds in a debug build.
pub const CASES: u32 = 256;

/// A key whose sort order is unrelated to `i` (random prefix), unique by `i`.
pub fn key(prefix: [u8; 4], i: usize) -> NodeKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&prefix);
    k[30..].copy_from_slice(&(i as u16).to_be_bytes());
    k
}

/// Speeds with many exact ties (small integers) and some arbitrary ones.
pub fn speed() -> impl Strategy<Value = f64> {
    prop_oneof![(1u32..=4).prop_map(f64::from), 0.05f64..20.0]
}

/// A consistent node from its middle cap and the model-wide costs (in
/// layers) of the embedding `e` and the head `h`.
pub fn node(prefix: [u8; 4], i: usize, mid: u16, e: u16, h: u16, speed: f64) -> NodeCap {
    NodeCap {
        key: key(prefix, i),
        cap_first: mid.saturating_sub(e),
        cap_mid: mid,
        cap_last: mid.saturating_sub(h),
        cap_solo: mid.saturating_sub(e + h),
        speed,
    }
}

/// A model of up to 48 layers and `count` nodes whose caps range from
/// nothing to a little over the whole model.
pub fn swarm(count: RangeInclusive<usize>) -> impl Strategy<Value = (u16, Vec<NodeCap>)> {
    (1u16..=48, 0u16..3, 0u16..3).prop_flat_map(move |(l, e, h)| {
        let one = (any::<[u8; 4]>(), 0..=l + 4, speed());
        (Just(l), prop::collection::vec(one, count.clone())).prop_map(move |(l, raw)| {
            let nodes = raw
                .into_iter()
                .enumerate()
                .map(|(i, (prefix, mid, v))| node(prefix, i, mid, e, h, v))
                .collect();
            (l, nodes)
        })
    })
}

/// Deep models (up to `u16::MAX` layers) with caps as fractions of the model.
pub fn deep_swarm(max_nodes: usize) -> impl Strategy<Value = (u16, Vec<NodeCap>)> {
    (1u16..=u16::MAX).prop_flat_map(move |l| {
        let one = (any::<[u8; 4]>(), 0u32..=130, speed());
        (Just(l), prop::collection::vec(one, 0..=max_nodes)).prop_map(|(l, raw)| {
            let nodes = raw
                .into_iter()
                .enumerate()
                .map(|(i, (prefix, pct, v))| {
                    let mid = (u32::from(l) * pct / 100).min(u32::from(u16::MAX)) as u16;
                    node(prefix, i, mid, 1, 1, v)
                })
                .collect();
            (l, nodes)
        })
    })
}

/// The cap a node has at hop `pos` of a pipeline of `len` hops.
pub fn role_cap(n: &NodeCap, pos: usize, len: usize) -> u16 {
    if len == 1 {
        n.cap_solo
    } else if pos == 0 {
        n.cap_first
    } else if pos == len - 1 {
        n.cap_last
    } else {
        n.cap_mid
    }
}

/// Every invariant of a plan for `nodes` over `l` layers.
pub fn check_plan(l: u16, nodes: &[NodeCap], plan: &Plan) -> Result<(), TestCaseError> {
    let by_key: HashMap<NodeKey, &NodeCap> = nodes.iter().map(|n| (n.key, n)).collect();
    let mut seen: HashMap<NodeKey, usize> = HashMap::new();
    for p in &plan.pipelines {
        for s in &p.stages {
            *seen.entry(s.node).or_default() += 1;
        }
    }
    for k in &plan.spare {
        *seen.entry(*k).or_default() += 1;
    }
    // No node twice, no stranger, nobody forgotten.
    prop_assert!(seen.values().all(|&c| c == 1), "a node appears twice");
    prop_assert!(
        seen.keys().all(|k| by_key.contains_key(k)),
        "unknown node in plan"
    );
    prop_assert_eq!(seen.len(), nodes.len());

    // k ≤ Σ cap / L: each pipeline needs caps summing to L.
    let total: u64 = nodes.iter().map(|n| u64::from(n.cap_mid.min(l))).sum();
    prop_assert!(plan.pipelines.len() as u64 <= total / u64::from(l));

    for p in &plan.pipelines {
        let len = p.stages.len();
        prop_assert!(len >= 1);
        let mut at = 0u16;
        for (pos, s) in p.stages.iter().enumerate() {
            // Contiguous from 0, non-empty, within the role's cap.
            prop_assert_eq!(s.layers.start, at);
            prop_assert!(s.layers.end > s.layers.start, "empty stage");
            let size = s.layers.end - s.layers.start;
            prop_assert!(
                size <= role_cap(by_key[&s.node], pos, len),
                "stage over its cap"
            );
            at = s.layers.end;
        }
        prop_assert_eq!(at, l, "pipeline does not end at L");

        let size = |pos: usize| p.stages[pos].layers.end - p.stages[pos].layers.start;
        let capped =
            |pos: usize| size(pos) == role_cap(by_key[&p.stages[pos].node], pos, len).min(l);
        for i in 0..len {
            for j in 0..len {
                let (vi, vj) = (
                    by_key[&p.stages[i].node].speed,
                    by_key[&p.stages[j].node].speed,
                );
                // A faster stage never holds fewer layers unless capped.
                if vi > vj && size(i) < size(j) {
                    prop_assert!(capped(i), "faster stage {i} has fewer layers than {j}");
                }
                // Equal speeds: within one layer unless the smaller is capped.
                if vi == vj && size(j) > size(i) + 1 {
                    prop_assert!(capped(i), "equal stages {i}, {j} differ by more than one");
                }
            }
        }
    }
    Ok(())
}
