//! Hand-checked cases, and the one property that needs the private greedy
//! pass: the program never scores below it.

use std::ops::Range;

use proptest::prelude::*;

use super::*;

fn key(i: u8) -> NodeKey {
    let mut k = [0u8; 32];
    k[0] = i;
    k
}

/// A node with one cap for every role.
fn flat(i: u8, cap: u16, speed: f64) -> NodeCap {
    NodeCap {
        key: key(i),
        cap_first: cap,
        cap_mid: cap,
        cap_last: cap,
        cap_solo: cap,
        speed,
    }
}

/// A node whose embedding and head each cost one layer's worth of memory,
/// so it can never be a pipeline alone unless it has two layers to spare.
fn roles(i: u8, mid: u16, speed: f64) -> NodeCap {
    NodeCap {
        key: key(i),
        cap_first: mid - 1,
        cap_mid: mid,
        cap_last: mid - 1,
        cap_solo: mid - 2,
        speed,
    }
}

fn sizes(p: &Pipeline) -> Vec<u16> {
    p.stages
        .iter()
        .map(|s| s.layers.end - s.layers.start)
        .collect()
}

#[test]
fn three_equal_nodes_capped_at_12_of_30_split_10_10_10() {
    let nodes = [flat(1, 12, 1.0), flat(2, 12, 1.0), flat(3, 12, 1.0)];
    let plan = plan(30, &nodes).unwrap();
    assert_eq!(plan.pipelines.len(), 1);
    assert_eq!(sizes(&plan.pipelines[0]), [10, 10, 10]);
    let ranges: Vec<_> = plan.pipelines[0]
        .stages
        .iter()
        .map(|s| s.layers.clone())
        .collect();
    assert_eq!(ranges, [0..10, 10..20, 20..30]);
    assert!(plan.spare.is_empty());
}

#[test]
fn nodes_that_hold_everything_are_one_pipeline_each() {
    let nodes = [flat(1, 30, 1.0), flat(2, 40, 3.0), flat(3, 30, 2.0)];
    let plan = plan(30, &nodes).unwrap();
    assert_eq!(plan.pipelines.len(), 3);
    for p in &plan.pipelines {
        assert_eq!(p.stages.len(), 1);
        assert_eq!(p.stages[0].layers, 0..30);
    }
    // Canonical order: the 40-layer node first, then the two 30s by key.
    let firsts: Vec<_> = plan.pipelines.iter().map(|p| p.stages[0].node).collect();
    assert_eq!(firsts, [key(2), key(1), key(3)]);
}

#[test]
fn a_node_twice_as_fast_gets_twice_the_layers() {
    let plan = plan(30, &[flat(1, 25, 1.0), flat(2, 25, 2.0)]).unwrap();
    assert_eq!(plan.pipelines.len(), 1);
    let p = &plan.pipelines[0];
    assert_eq!(plan.layers_of(&key(2)).map(|r| r.len()), Some(20));
    assert_eq!(plan.layers_of(&key(1)).map(|r| r.len()), Some(10));
    assert_eq!(p.stages.len(), 2);
}

#[test]
fn a_capped_fast_node_passes_its_share_on() {
    // 12 + 10 + 10 = 32: all three are needed; the fast one would take 25.
    let plan = plan(30, &[flat(1, 12, 10.0), flat(2, 10, 1.0), flat(3, 10, 1.0)]).unwrap();
    assert_eq!(plan.layers_of(&key(1)).map(|r| r.len()), Some(12));
    assert_eq!(plan.layers_of(&key(2)).map(|r| r.len()), Some(9));
    assert_eq!(plan.layers_of(&key(3)).map(|r| r.len()), Some(9));
}

#[test]
fn end_caps_bind_the_first_and_last_hops() {
    // 11 + 12 + 11 = 34 ≥ 30; the fast first hop wants 15 but holds 11.
    let plan = plan(
        30,
        &[roles(1, 12, 4.0), roles(2, 12, 1.0), roles(3, 12, 1.0)],
    )
    .unwrap();
    let p = &plan.pipelines[0];
    assert_eq!(p.stages[0].node, key(1));
    assert_eq!(sizes(p), [11, 10, 9]);
}

#[test]
fn full_nodes_win_and_small_ones_stay_spare() {
    // k = 2 from the two full nodes scores 4/2 = 2; adding the 3-stage
    // pipeline would score 9/5 = 1.8.
    let nodes = [
        flat(1, 30, 1.0),
        flat(2, 30, 1.0),
        flat(3, 12, 1.0),
        flat(4, 12, 1.0),
        flat(5, 12, 1.0),
    ];
    let plan = plan(30, &nodes).unwrap();
    assert_eq!(plan.pipelines.len(), 2);
    assert_eq!(plan.spare, [key(3), key(4), key(5)]);
}

#[test]
fn a_full_node_and_two_halves_make_two_pipelines() {
    // k = 2 with 3 stages scores 4/3, above k = 1 with one stage.
    let plan = plan(30, &[flat(1, 30, 1.0), flat(2, 15, 1.0), flat(3, 15, 1.0)]).unwrap();
    assert_eq!(plan.pipelines.len(), 2);
    assert_eq!(plan.stage_count(), 3);
}

#[test]
fn the_program_finds_pipelines_the_greedy_pass_misses() {
    // {5, 3, 2} and {4, 3, 3} both reach 10; greedy spends the 4 on the
    // first pipeline and has too little left for a second.
    let caps = [5, 4, 3, 3, 3, 2];
    let nodes: Vec<_> = caps
        .iter()
        .enumerate()
        .map(|(i, &c)| flat(i as u8, c, 1.0))
        .collect();
    let sorted = validate(10, &nodes).unwrap();
    let greedy = plan_sorted(10, &sorted, dp::choose_greedy);
    let best = plan(10, &nodes).unwrap();
    assert_eq!(greedy.pipelines.len(), 1);
    assert_eq!(best.pipelines.len(), 2);
    assert_eq!(best.stage_count(), 6);
    assert!(best.spare.is_empty());
}

#[test]
fn useless_nodes_are_spare_and_nothing_covers_is_an_empty_plan() {
    let plan_a = plan(30, &[flat(1, 0, 1.0), flat(2, 30, 1.0)]).unwrap();
    assert_eq!(plan_a.pipelines.len(), 1);
    assert_eq!(plan_a.spare, [key(1)]);
    let plan_b = plan(30, &[flat(1, 10, 1.0), flat(2, 10, 1.0)]).unwrap();
    assert!(plan_b.pipelines.is_empty());
    assert_eq!(plan_b.spare.len(), 2);
    assert_eq!(plan(30, &[]).unwrap(), Plan::default());
}

#[test]
fn a_one_layer_model_cannot_be_split() {
    let two_halves = [roles(1, 2, 1.0), roles(2, 2, 1.0)];
    assert!(plan(1, &two_halves).unwrap().pipelines.is_empty());
    let plan = plan(1, &[flat(1, 1, 1.0), flat(2, 1, 1.0)]).unwrap();
    assert_eq!(plan.pipelines.len(), 2);
}

#[test]
fn bad_input_is_refused() {
    assert_eq!(plan(0, &[flat(1, 5, 1.0)]), Err(AllocError::NoLayers));
    for speed in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            plan(30, &[flat(1, 5, speed)]),
            Err(AllocError::BadSpeed { .. })
        ));
    }
    assert_eq!(
        plan(30, &[flat(1, 5, 1.0), flat(1, 6, 1.0)]),
        Err(AllocError::DuplicateNode(key(1)))
    );
    let mut odd = flat(1, 5, 1.0);
    odd.cap_first = 6;
    assert!(matches!(
        plan(30, &[odd]),
        Err(AllocError::InconsistentCaps { .. })
    ));
    odd = flat(1, 5, 1.0);
    odd.cap_solo = 5;
    odd.cap_last = 4;
    assert!(matches!(
        plan(30, &[odd]),
        Err(AllocError::InconsistentCaps { .. })
    ));
    let many: Vec<_> = (0..=MAX_NODES)
        .map(|i| {
            let mut n = flat(0, 1, 1.0);
            n.key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            n
        })
        .collect();
    assert!(matches!(
        plan(30, &many),
        Err(AllocError::TooManyNodes { .. })
    ));
}

#[test]
fn error_messages_name_the_node() {
    let err = plan(30, &[flat(0xab, 5, f64::NAN)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node ab000000 has speed NaN: it must be finite and positive"
    );
}

#[test]
fn coverage_lost_when_a_holder_dies() {
    let live = [flat(1, 12, 1.0), flat(3, 12, 1.0)];
    let holdings = [
        Holding {
            node: key(1),
            layers: 0..10,
            free: 1.0,
        },
        Holding {
            node: key(2),
            layers: 10..20,
            free: 1.0,
        },
        Holding {
            node: key(3),
            layers: 20..30,
            free: 1.0,
        },
    ];
    let v = rebalance(30, &live, &holdings).unwrap();
    let Verdict::CoverageLost { gaps } = &v else {
        panic!("{v:?}");
    };
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0], 10..20);
    assert!(v.should_move(None));
}

#[test]
fn the_plan_itself_is_kept() {
    let live = [flat(1, 12, 1.0), flat(2, 12, 1.0), flat(3, 12, 1.0)];
    let p = plan(30, &live).unwrap();
    let holdings: Vec<_> = p.pipelines[0]
        .stages
        .iter()
        .map(|s| Holding {
            node: s.node,
            layers: s.layers.clone(),
            free: 1.0,
        })
        .collect();
    let v = rebalance(30, &live, &holdings).unwrap();
    assert!(matches!(v, Verdict::Keep { cv, .. } if cv < 1e-12), "{v:?}");
}

#[test]
fn a_lopsided_split_is_skewed_and_moves_on_the_second_epoch() {
    // 25/5 between equal nodes: layers 0..25 run at 1/25, the re-plan's
    // 15/15 at 1/15, a gain of 2/3.
    let live = [flat(1, 30, 1.0), flat(2, 30, 1.0)];
    let live = live.map(|mut n| {
        n.cap_solo = 29;
        n
    });
    let holdings = [
        Holding {
            node: key(1),
            layers: 0..25,
            free: 1.0,
        },
        Holding {
            node: key(2),
            layers: 25..30,
            free: 1.0,
        },
    ];
    let v = rebalance(30, &live, &holdings).unwrap();
    let Verdict::Skewed { cv, gain } = v.clone() else {
        panic!("{v:?}");
    };
    assert!(cv > SKEW_CV);
    assert!((gain - 2.0 / 3.0).abs() < 1e-9, "{gain}");
    assert!(!v.should_move(None));
    assert!(!v.should_move(Some(&Verdict::Keep { cv: 0.0, gain: 0.0 })));
    assert!(v.should_move(Some(&v)));
}

#[test]
fn load_skew_a_replan_cannot_fix_is_kept() {
    // Two 15/15 pipelines; the first hop of one is saturated, so layers
    // 0..15 have half the free throughput of 15..30 (cv 1/3), but the plan
    // is already the best one: moving would not help.
    let live: Vec<_> = (1..=4).map(|i| flat(i, 15, 1.0)).collect();
    let holdings = [
        Holding {
            node: key(1),
            layers: 0..15,
            free: 0.0,
        },
        Holding {
            node: key(2),
            layers: 0..15,
            free: 1.0,
        },
        Holding {
            node: key(3),
            layers: 15..30,
            free: 1.0,
        },
        Holding {
            node: key(4),
            layers: 15..30,
            free: 1.0,
        },
    ];
    let v = rebalance(30, &live, &holdings).unwrap();
    let Verdict::Keep { cv, gain } = v else {
        panic!("{v:?}");
    };
    assert!((cv - 1.0 / 3.0).abs() < 1e-9, "{cv}");
    assert!(gain.abs() < 1e-9, "{gain}");
}

#[test]
fn rebalance_refuses_bad_holdings() {
    let live = [flat(1, 30, 1.0)];
    let bad_range = [Holding {
        node: key(1),
        layers: 5..5,
        free: 1.0,
    }];
    assert!(matches!(
        rebalance(30, &live, &bad_range),
        Err(AllocError::BadRange { .. })
    ));
    let past_end = [Holding {
        node: key(1),
        layers: 5..31,
        free: 1.0,
    }];
    assert!(matches!(
        rebalance(30, &live, &past_end),
        Err(AllocError::BadRange { .. })
    ));
    let bad_free = [Holding {
        node: key(1),
        layers: 0..30,
        free: f64::NAN,
    }];
    assert!(matches!(
        rebalance(30, &live, &bad_free),
        Err(AllocError::BadFree { .. })
    ));
    let twice = [
        Holding {
            node: key(1),
            layers: 0..30,
            free: 1.0,
        },
        Holding {
            node: key(1),
            layers: 0..3,
            free: 1.0,
        },
    ];
    assert_eq!(
        rebalance(30, &live, &twice),
        Err(AllocError::DuplicateHolding(key(1)))
    );
}

#[test]
fn spares_spread_over_the_weakest_layers() {
    // One 3-stage pipeline at 10/10/10 and two spares of 10 layers each:
    // every layer is equally strong, so the first spare takes 0..10 (lowest
    // start), and the second avoids it.
    let live: Vec<_> = (1..=5).map(|i| flat(i, 12, 1.0)).collect();
    let p = plan(30, &live).unwrap();
    assert_eq!(p.spare.len(), 2);
    let placed = place_spares(30, &live, &p).unwrap();
    let windows: Vec<_> = placed.iter().map(|s| s.layers.clone()).collect();
    assert_eq!(windows, [0..12, 12..24]);
}

fn held(i: u8, layers: Range<u16>) -> Holding {
    Holding {
        node: key(i),
        layers,
        free: 1.0,
    }
}

#[test]
fn joiners_cover_the_model_one_window_after_another() {
    // Capped at 10 of 30 each, three nodes joining one after the other
    // each take the first uncovered window; a fourth replicates the weakest.
    let mut live = Vec::new();
    let mut holdings = Vec::new();
    for (i, want) in [(1, 0..10), (2, 10..20), (3, 20..30)] {
        live.push(flat(i, 10, 1.0));
        let p = place(30, &live, &holdings, &key(i), None).unwrap();
        assert_eq!(
            p,
            Placement {
                verdict: None,
                to: Some(want.clone())
            }
        );
        holdings.push(held(i, want));
    }
    // Node 2 is slow: its layers are the weakest, so the fourth doubles them.
    live[1].speed = 0.5;
    live.push(flat(4, 10, 1.0));
    let p = place(30, &live, &holdings, &key(4), None).unwrap();
    assert_eq!(p.to, Some(10..20));
    holdings.push(held(4, 10..20));
    // Everyone placed, nobody moves.
    for i in 1..=4 {
        let p = place(30, &live, &holdings, &key(i), None).unwrap();
        assert_eq!(p.to, None, "node {i}: {p:?}");
    }
}

#[test]
fn joiners_whose_cap_does_not_divide_the_model_still_chain() {
    let mut live = Vec::new();
    let mut holdings = Vec::new();
    for (i, want) in [(1, 0..11), (2, 11..22), (3, 22..30)] {
        live.push(flat(i, 11, 1.0));
        let p = place(30, &live, &holdings, &key(i), None).unwrap();
        assert_eq!(p.to, Some(want.clone()), "joiner {i}");
        holdings.push(held(i, want));
    }
}

#[test]
fn when_a_holder_dies_one_replica_moves_into_the_hole() {
    // Nodes 1 and 4 both hold 0..10; node 2 (10..20) is gone.
    let live = [flat(1, 10, 1.0), flat(3, 10, 1.0), flat(4, 10, 1.0)];
    let holdings = [
        held(1, 0..10),
        held(2, 10..20),
        held(3, 20..30),
        held(4, 0..10),
    ];
    let moves: Vec<_> = [1, 3, 4]
        .map(|i| place(30, &live, &holdings, &key(i), None).unwrap())
        .into_iter()
        .collect();
    assert!(matches!(
        moves[0].verdict,
        Some(Verdict::CoverageLost { .. })
    ));
    // The lowest key of the two replicas moves; the other and the sole
    // holder of 20..30 stay.
    assert_eq!(moves[0].to, Some(10..20));
    assert_eq!(moves[1].to, None);
    assert_eq!(moves[2].to, None);
}

#[test]
fn a_sole_holder_never_leaves_its_layers_but_may_grow_over_a_hole() {
    let live = [flat(1, 10, 1.0), flat(3, 10, 1.0)];
    let holdings = [held(1, 0..10), held(2, 10..20), held(3, 20..30)];
    for i in [1, 3] {
        assert_eq!(place(30, &live, &holdings, &key(i), None).unwrap().to, None);
    }
    // With room for 20 layers, node 1 keeps 0..10 and takes 10..20 too.
    let live = [flat(1, 20, 1.0), flat(3, 10, 1.0)];
    assert_eq!(
        place(30, &live, &holdings, &key(1), None).unwrap().to,
        Some(0..20)
    );
}

#[test]
fn a_skewed_split_is_fixed_one_move_per_epoch_without_a_hole() {
    let live = [flat(1, 30, 1.0), flat(2, 30, 1.0)].map(|mut n| {
        n.cap_solo = 29;
        n
    });
    let mut holdings = vec![held(1, 0..25), held(2, 25..30)];
    let first = place(30, &live, &holdings, &key(1), None).unwrap();
    let skewed = first.verdict.clone().unwrap();
    assert!(matches!(skewed, Verdict::Skewed { .. }), "{skewed:?}");
    // One skewed epoch is not enough.
    assert_eq!(first.to, None);
    // On the second, node 1 would leave 15..25 uncovered: node 2 goes first.
    let p1 = place(30, &live, &holdings, &key(1), Some(&skewed)).unwrap();
    let p2 = place(30, &live, &holdings, &key(2), Some(&skewed)).unwrap();
    assert_eq!(p1.to, None);
    assert_eq!(p2.to, Some(15..30));
    holdings[1] = held(2, 15..30);
    let v = place(30, &live, &holdings, &key(1), None)
        .unwrap()
        .verdict
        .unwrap();
    let p1 = place(30, &live, &holdings, &key(1), Some(&v)).unwrap();
    assert_eq!(p1.to, Some(0..15));
    holdings[0] = held(1, 0..15);
    let v = place(30, &live, &holdings, &key(1), None).unwrap();
    assert!(matches!(v.verdict, Some(Verdict::Keep { .. })), "{v:?}");
}

#[test]
fn place_refuses_a_node_outside_the_live_set() {
    let live = [flat(1, 10, 1.0)];
    assert_eq!(
        place(30, &live, &[], &key(9), None),
        Err(AllocError::UnknownNode(key(9)))
    );
}

/// Nodes for the program-vs-greedy property: few enough for the program,
/// with caps that make many different pipeline shapes possible.
fn small_swarm() -> impl Strategy<Value = (u16, Vec<NodeCap>)> {
    (2u16..40).prop_flat_map(|l| {
        let node = (0..=l + 2, 0u16..3, 0u16..3, 1u32..8)
            .prop_map(|(mid, e, h, v)| (mid, e, h, f64::from(v)));
        (Just(l), prop::collection::vec(node, 0..=12)).prop_map(|(l, raw)| {
            let nodes = raw
                .into_iter()
                .enumerate()
                .map(|(i, (mid, e, h, speed))| NodeCap {
                    key: key(i as u8),
                    cap_first: mid.saturating_sub(e),
                    cap_mid: mid,
                    cap_last: mid.saturating_sub(h),
                    cap_solo: mid.saturating_sub(e + h),
                    speed,
                })
                .collect();
            (l, nodes)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the swarm looks like, at most one holder moves per epoch,
    /// to a window inside the model no larger than what it can hold, that
    /// keeps every layer only it held.
    #[test]
    fn at_most_one_holder_moves_and_never_opens_a_hole(
        (l, nodes) in small_swarm(),
        starts in prop::collection::vec(0u16..40, 12),
        dead in prop::collection::vec(any::<bool>(), 12),
        skewed_before in any::<bool>(),
    ) {
        let holdings: Vec<Holding> = nodes
            .iter()
            .zip(&starts)
            .filter(|(n, _)| n.cap_mid > 0)
            .map(|(n, s)| {
                let cap = n.cap_mid.min(l);
                let start = s % (l - cap + 1);
                Holding { node: n.key, layers: start..start + cap, free: 1.0 }
            })
            .collect();
        let live: Vec<NodeCap> = nodes
            .iter()
            .zip(&dead)
            .filter(|(_, d)| !**d)
            .map(|(n, _)| *n)
            .collect();
        let previous = skewed_before.then_some(Verdict::Skewed { cv: 1.0, gain: 1.0 });
        let mut movers = 0;
        for n in &live {
            if !holdings.iter().any(|h| h.node == n.key) {
                continue;
            }
            let p = place(l, &live, &holdings, &n.key, previous.as_ref()).unwrap();
            let Some(to) = p.to else { continue };
            movers += 1;
            prop_assert!(to.start < to.end && to.end <= l, "{to:?}");
            prop_assert!(to.end - to.start <= n.cap_mid.min(l));
            for h in &holdings {
                if h.node != n.key { continue; }
                for layer in h.layers.clone() {
                    let others = holdings.iter().any(|o| {
                        o.node != n.key
                            && live.iter().any(|x| x.key == o.node)
                            && o.layers.contains(&layer)
                    });
                    prop_assert!(others || to.contains(&layer), "layer {layer} dropped");
                }
            }
        }
        prop_assert!(movers <= 1, "{movers} movers");
    }

    /// The program's plan scores at least the greedy plan's `k² / stages`.
    #[test]
    fn program_never_scores_below_greedy((l, nodes) in small_swarm()) {
        let sorted = validate(l, &nodes).unwrap();
        let best = plan_sorted(u32::from(l), &sorted, dp::choose);
        let greedy = plan_sorted(u32::from(l), &sorted, dp::choose_greedy);
        let (k, s) = (best.pipelines.len() as u64, best.stage_count() as u64);
        let (kg, sg) = (greedy.pipelines.len() as u64, greedy.stage_count() as u64);
        prop_assert!(k * k * sg >= kg * kg * s, "program k={k} s={s}, greedy k={kg} s={sg}");
    }
}
