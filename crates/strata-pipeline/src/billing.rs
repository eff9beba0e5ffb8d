//! Paying the hops of a pipelined task.
//!
//! The unit is a *cell*: one billed token through one layer. A task with
//! `P` prompt tokens that generated `N` tokens on a model of `L` layers
//! bills `(P + N) × L` cells, just as one node serving it whole bills
//! `P + N` tokens; a hop is paid `floor(price × cells / L)`, so a route of
//! nodes charging the same price costs the client what one node would (up to
//! one base unit per hop lost to the floors).
//!
//! Failover is where the care goes. A route's *segment* produced tokens
//! `[k_s, k_{s+1})`; when one of its hops dies, the next segment re-prefills
//! the prompt and the `k_{s+1}` tokens so far on a new route. Per layer:
//! - segment 0's holder is credited `P + k_1` tokens, a later segment's
//!   holder the `k_{s+1} − k_s` tokens that segment produced;
//! - a dead hop is credited nothing (no voucher is signed for work that was
//!   not reported finished), and what it would have been credited moves, per
//!   layer, to the next live holder of that layer: that holder's re-prefill
//!   recomputed exactly those positions;
//! - a live hop of an abandoned segment keeps its credit, and its layers'
//!   re-prefill on the next route is the network's cost of the failover
//!   (bounded by one prefill), not the client's.
//!
//! So whenever the last segment completes, every layer is credited `P + N`
//! tokens exactly once: the client pays once, whatever failed.

use std::ops::Range;

use crate::alloc::NodeKey;

/// One hop of one segment, as the gateway saw it end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHop {
    /// The node.
    pub node: NodeKey,
    /// Its layers `[start, end)`.
    pub layers: Range<u16>,
    /// It reported its work finished (a summary that links with its
    /// neighbours'); a hop that died or lied is not.
    pub finished: bool,
}

/// One route segment of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its hops, first to last; their layers cover `[0, L)`.
    pub hops: Vec<SegmentHop>,
    /// Tokens the task had produced when this segment started (`k_s`).
    pub tokens_from: u32,
    /// Tokens the task had produced when it ended (`k_{s+1}`).
    pub tokens_to: u32,
}

/// What one hop is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopBill {
    /// Index of the segment.
    pub segment: usize,
    /// Index of the hop in it.
    pub hop: usize,
    /// The node.
    pub node: NodeKey,
    /// Cells credited (tokens × layers).
    pub cells: u64,
}

/// Why a task's segments cannot be billed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// No segments, or a model of no layers.
    #[error("nothing to bill")]
    Empty,
    /// A segment's hops do not cover `[0, L)` with contiguous, non-empty ranges.
    #[error("segment {0}'s hops do not cover the model's layers contiguously")]
    BadRoute(usize),
    /// Segments' token counts do not follow each other from 0.
    #[error("segment {0}'s tokens do not continue the previous segment's")]
    BadTokens(usize),
}

/// Credits every hop of a task's `segments` (in order) on a model of
/// `n_layers` layers, for a prompt of `prompt_tokens`. Returns one bill per
/// hop (dead hops with 0 cells), and the cells no live hop recomputed (left
/// unpaid: the task was abandoned before a later route covered them).
pub fn credit(
    n_layers: u16,
    prompt_tokens: u32,
    segments: &[Segment],
) -> Result<(Vec<HopBill>, u64), BillingError> {
    if n_layers == 0 || segments.is_empty() {
        return Err(BillingError::Empty);
    }
    let mut expected_from = 0u32;
    for (s, seg) in segments.iter().enumerate() {
        if seg.tokens_from != expected_from || seg.tokens_to < seg.tokens_from {
            return Err(BillingError::BadTokens(s));
        }
        expected_from = seg.tokens_to;
        let mut next = 0u16;
        for hop in &seg.hops {
            if hop.layers.start != next || hop.layers.end <= hop.layers.start {
                return Err(BillingError::BadRoute(s));
            }
            next = hop.layers.end;
        }
        if next != n_layers {
            return Err(BillingError::BadRoute(s));
        }
    }
    // Tokens per layer waiting for a live holder to be credited with them.
    let mut backlog = vec![0u64; usize::from(n_layers)];
    let mut bills = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        let produced = u64::from(seg.tokens_to - seg.tokens_from);
        let tokens = if s == 0 {
            u64::from(prompt_tokens) + produced
        } else {
            produced
        };
        for (h, hop) in seg.hops.iter().enumerate() {
            let mut cells = 0u64;
            for layer in hop.layers.clone() {
                let waiting = &mut backlog[usize::from(layer)];
                *waiting += tokens;
                if hop.finished {
                    cells += std::mem::take(waiting);
                }
            }
            bills.push(HopBill {
                segment: s,
                hop: h,
                node: hop.node,
                cells: if hop.finished { cells } else { 0 },
            });
        }
    }
    Ok((bills, backlog.iter().sum()))
}

/// A hop's price for `cells` at `price_per_token` (for a whole token through
/// the whole model) on a model of `n_layers`: `floor(price × cells / L)`,
/// computed without overflow.
pub fn hop_price(price_per_token: u64, cells: u64, n_layers: u16) -> u64 {
    let layers = u128::from(n_layers.max(1));
    let price = u128::from(price_per_token) * u128::from(cells) / layers;
    u64::try_from(price).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(i: usize) -> NodeKey {
        [i as u8; 32]
    }

    /// A segment over `cuts` (interior layer boundaries) of `n` layers, hop
    /// `i` on node `base + i`, finished unless listed in `dead`.
    fn segment(n: u16, cuts: &[u16], base: usize, dead: &[usize], k: (u32, u32)) -> Segment {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(n);
        Segment {
            hops: bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| SegmentHop {
                    node: key(base + i),
                    layers: w[0]..w[1],
                    finished: !dead.contains(&i),
                })
                .collect(),
            tokens_from: k.0,
            tokens_to: k.1,
        }
    }

    #[test]
    fn without_failures_each_hop_is_paid_for_its_layers() {
        let (bills, unpaid) = credit(30, 20, &[segment(30, &[10, 20], 0, &[], (0, 12))]).unwrap();
        assert_eq!(unpaid, 0);
        let cells: Vec<u64> = bills.iter().map(|b| b.cells).collect();
        assert_eq!(cells, vec![320, 320, 320]);
        // Three hops at the single node's price charge what it would.
        let prices: u64 = cells.iter().map(|&c| hop_price(300, c, 30)).sum();
        assert_eq!(prices, 300 * 32);
    }

    #[test]
    fn a_dead_middle_hop_is_paid_nothing_and_its_replica_everything() {
        // Route A (nodes 0, 1, 2) produced 5 tokens, then node 1 died;
        // route B (nodes 0, 3, 2) re-prefilled and produced 7 more.
        let segments = [
            segment(30, &[10, 20], 0, &[1], (0, 5)),
            Segment {
                hops: vec![
                    SegmentHop {
                        node: key(0),
                        layers: 0..10,
                        finished: true,
                    },
                    SegmentHop {
                        node: key(3),
                        layers: 10..20,
                        finished: true,
                    },
                    SegmentHop {
                        node: key(2),
                        layers: 20..30,
                        finished: true,
                    },
                ],
                tokens_from: 5,
                tokens_to: 12,
            },
        ];
        let (bills, unpaid) = credit(30, 20, &segments).unwrap();
        assert_eq!(unpaid, 0);
        let cells: Vec<(NodeKey, u64)> = bills.iter().map(|b| (b.node, b.cells)).collect();
        assert_eq!(
            cells,
            vec![
                (key(0), 250),
                (key(1), 0),
                (key(2), 250),
                (key(0), 70),
                (key(3), 320),
                (key(2), 70),
            ]
        );
    }

    #[test]
    fn malformed_segments_are_refused() {
        assert_eq!(credit(30, 5, &[]), Err(BillingError::Empty));
        assert_eq!(
            credit(0, 5, &[segment(30, &[], 0, &[], (0, 1))]),
            Err(BillingError::Empty)
        );
        let gap = Segment {
            hops: vec![
                SegmentHop {
                    node: key(0),
                    layers: 0..10,
                    finished: true,
                },
                SegmentHop {
                    node: key(1),
                    layers: 11..30,
                    finished: true,
                },
            ],
            tokens_from: 0,
            tokens_to: 3,
        };
        assert_eq!(credit(30, 5, &[gap]), Err(BillingError::BadRoute(0)));
        assert_eq!(
            credit(
                30,
                5,
                &[
                    segment(30, &[10], 0, &[], (0, 3)),
                    segment(30, &[], 2, &[], (4, 6))
                ]
            ),
            Err(BillingError::BadTokens(1))
        );
        assert_eq!(
            credit(30, 5, &[segment(29, &[10], 0, &[], (0, 3))]),
            Err(BillingError::BadRoute(0))
        );
        assert_eq!(hop_price(u64::MAX, u64::MAX, 1), u64::MAX);
    }

    /// Random tasks: up to 4 segments over random routes, some hops dead.
    fn task() -> impl Strategy<Value = (u16, u32, Vec<Segment>, bool)> {
        (1u16..40, 0u32..200, 1usize..5, any::<bool>()).prop_flat_map(|(n, p, segs, last_ok)| {
            let seg = (
                proptest::collection::btree_set(1..n.max(2), 0..usize::from(n.min(6))),
                proptest::collection::vec(any::<bool>(), 8),
                0u32..20,
            );
            proptest::collection::vec(seg, segs).prop_map(move |raw| {
                let mut k = 0;
                let count = raw.len();
                let segments = raw
                    .into_iter()
                    .enumerate()
                    .map(|(s, (cuts, alive, produced))| {
                        let cuts: Vec<u16> = cuts.into_iter().filter(|&c| c < n).collect();
                        let complete = s + 1 == count && last_ok;
                        // Every segment but a completed last one lost a hop.
                        let dead: Vec<usize> = (0..=cuts.len())
                            .filter(|&i| !complete && !alive[i % alive.len()])
                            .collect();
                        let seg = segment(n, &cuts, s * 8, &dead, (k, k + produced));
                        k += produced;
                        seg
                    })
                    .collect();
                (n, p, segments, last_ok)
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_layer_is_paid_once_and_dead_hops_never(
            (n, p, segments, last_ok) in task()
        ) {
            let (bills, unpaid) = credit(n, p, &segments).unwrap();
            let total = u64::from(p) + u64::from(segments.last().unwrap().tokens_to);
            let credited: u64 = bills.iter().map(|b| b.cells).sum();
            // Nothing is created or lost: credited plus unpaid is the whole task.
            prop_assert_eq!(credited + unpaid, total * u64::from(n));
            if last_ok {
                prop_assert_eq!(unpaid, 0);
            }
            for b in &bills {
                let hop = &segments[b.segment].hops[b.hop];
                if !hop.finished {
                    prop_assert_eq!(b.cells, 0);
                }
                // No hop is credited more than every token through its layers.
                prop_assert!(b.cells <= total * u64::from(hop.layers.end - hop.layers.start));
            }
            // An oracle built the other way round: each segment's tokens of
            // each layer go to the first finished holder of that layer from
            // that segment on.
            let mut expected = vec![vec![0u64; 16]; segments.len()];
            for layer in 0..n {
                for (s, seg) in segments.iter().enumerate() {
                    let tokens = u64::from(seg.tokens_to - seg.tokens_from)
                        + if s == 0 { u64::from(p) } else { 0 };
                    let holder = segments[s..].iter().enumerate().find_map(|(d, later)| {
                        later
                            .hops
                            .iter()
                            .position(|h| h.finished && h.layers.contains(&layer))
                            .map(|h| (s + d, h))
                    });
                    if let Some((s2, h)) = holder {
                        expected[s2][h] += tokens;
                    }
                }
            }
            for b in &bills {
                prop_assert_eq!(b.cells, expected[b.segment][b.hop]);
            }
        }

        #[test]
        fn one_price_everywhere_costs_what_one_node_would(
            cuts in proptest::collection::btree_set(1u16..30, 0..8),
            p in 1u32..500,
            k in 0u32..300,
            price in 0u64..1_000_000,
        ) {
            let cuts: Vec<u16> = cuts.into_iter().collect();
            let (bills, _) = credit(30, p, &[segment(30, &cuts, 0, &[], (0, k))]).unwrap();
            let paid: u64 = bills.iter().map(|b| hop_price(price, b.cells, 30)).sum();
            let single = price * u64::from(p + k);
            prop_assert!(paid <= single);
            // Each hop's floor loses less than one base unit.
            prop_assert!(paid + bills.len() as u64 > single);
        }
    }
}
