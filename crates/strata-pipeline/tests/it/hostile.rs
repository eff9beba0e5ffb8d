//! Arbitrary input: errors, never panics; whatever is accepted is valid.

use proptest::prelude::*;
use strata_pipeline::{
    join_window, layer_throughput, place_spares, plan, rebalance, AllocError, Holding, NodeCap,
};

use crate::common::{check_plan, CASES};

/// Any speed at all: NaN, infinities, zero, negatives, subnormals, huge.
fn any_speed() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::MIN_POSITIVE / 4.0),
        Just(f64::MAX),
        0.001f64..1000.0,
    ]
}

/// Nodes from a small key space (duplicates happen), caps either arbitrary
/// or consistent, any speed.
fn any_nodes() -> impl Strategy<Value = Vec<NodeCap>> {
    let caps = prop_oneof![
        any::<[u16; 4]>(),
        (any::<u16>(), 0u16..4, 0u16..4).prop_map(|(m, e, h)| [
            m.saturating_sub(e),
            m,
            m.saturating_sub(h),
            m.saturating_sub(e + h)
        ]),
    ];
    let node = (0u8..48, caps, any_speed()).prop_map(|(k, c, speed)| NodeCap {
        key: [k; 32],
        cap_first: c[0],
        cap_mid: c[1],
        cap_last: c[2],
        cap_solo: c[3],
        speed,
    });
    prop::collection::vec(node, 0..20)
}

fn any_holdings() -> impl Strategy<Value = Vec<Holding>> {
    let h = (
        0u8..48,
        any::<u16>(),
        any::<u16>(),
        prop_oneof![any::<f64>(), 0.0f64..=1.0],
    )
        .prop_map(|(k, a, b, free)| Holding {
            node: [k; 32],
            layers: a..b,
            free,
        });
    prop::collection::vec(h, 0..12)
}

/// Layer counts with the edges well represented.
fn any_layers() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(1), Just(u16::MAX), any::<u16>(), 1u16..64]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn plan_never_panics(l in any_layers(), nodes in any_nodes()) {
        match plan(l, &nodes) {
            Ok(p) => {
                check_plan(l, &nodes, &p)?;
                let _ = place_spares(l, &nodes, &p).unwrap();
            }
            Err(AllocError::NoLayers) => prop_assert_eq!(l, 0),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn rebalance_never_panics(l in any_layers(), nodes in any_nodes(), holdings in any_holdings()) {
        let _ = layer_throughput(l, &nodes, &holdings);
        let _ = rebalance(l, &nodes, &holdings);
    }

    #[test]
    fn join_window_never_panics(t in prop::collection::vec(any::<f64>(), 0..300), cap in any::<u16>()) {
        if let Ok(w) = join_window(&t, cap) {
            prop_assert!(w.start < w.end && usize::from(w.end) <= t.len());
            prop_assert_eq!(w.len(), usize::from(cap).min(t.len()));
        }
    }
}

#[test]
fn no_nodes_and_zero_caps_are_empty_plans() {
    assert!(plan(30, &[]).unwrap().pipelines.is_empty());
    let zero = NodeCap {
        key: [1; 32],
        cap_first: 0,
        cap_mid: 0,
        cap_last: 0,
        cap_solo: 0,
        speed: 1.0,
    };
    let p = plan(u16::MAX, &[zero]).unwrap();
    assert!(p.pipelines.is_empty());
    assert_eq!(p.spare, [[1; 32]]);
}

#[test]
fn join_window_refuses_nonsense() {
    assert_eq!(join_window(&[], 3), Err(AllocError::NoLayers));
    assert_eq!(join_window(&[1.0], 0), Err(AllocError::ZeroCap));
    assert!(matches!(
        join_window(&[1.0, f64::NAN], 1),
        Err(AllocError::BadThroughput { layer: 1, .. })
    ));
    assert!(matches!(
        join_window(&[-1.0], 1),
        Err(AllocError::BadThroughput { layer: 0, .. })
    ));
    let too_long = vec![0.0; usize::from(u16::MAX) + 1];
    assert_eq!(
        join_window(&too_long, 3),
        Err(AllocError::TooManyLayers(too_long.len()))
    );
}
