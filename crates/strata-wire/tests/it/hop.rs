//! The hop protocol: round trips, every refusal of a malformed route or
//! step, limits, and decoders that never panic on arbitrary bytes.

use proptest::prelude::*;
use strata_wire::hop::*;
use strata_wire::{encode, Sampling, WireError};

fn route(ranges: &[(u16, u16)]) -> Vec<RouteHop> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| RouteHop {
            node: [i as u8 + 1; 32],
            start,
            end,
        })
        .collect()
}

fn open(ranges: &[(u16, u16)], index: u8) -> HopOpen {
    HopOpen {
        task_id: [7; 32],
        segment: 0,
        route: route(ranges),
        index,
        client: [9; 32],
        model_hash: [3; 32],
        n_layers: 30,
        sampling: Sampling {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            seed: 5,
        },
        sample_offset: 0,
        max_new: 16,
        stop_tokens: vec![2],
    }
}

fn step(rows: &[u32]) -> HopRequest {
    HopRequest::Step {
        entries: rows
            .iter()
            .enumerate()
            .map(|(i, &rows)| StepEntry {
                task_id: [i as u8; 32],
                segment: 0,
                position: 12,
                rows,
            })
            .collect(),
        states: vec![1; 64],
    }
}

fn refused(r: &HopRequest) -> String {
    match HopRequest::decode(&encode(r)) {
        Err(WireError::Invalid(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn good_messages_round_trip() {
    let three = [(0, 10), (10, 20), (20, 30)];
    let o = open(&three, 1);
    assert_eq!(o.this_hop().map(|h| (h.start, h.end)), Some((10, 20)));
    assert_eq!(o.previous_hop().map(|h| h.node), Some([1; 32]));
    assert_eq!(o.next_hop().map(|h| h.node), Some([3; 32]));
    let messages = [
        HopRequest::Open(o),
        HopRequest::Open(open(&[(0, 30)], 0)),
        step(&[5, 1, 1]),
        HopRequest::Tokens {
            entries: vec![TokenEntry {
                task_id: [1; 32],
                segment: 2,
                position: 40,
                token: 17,
                last: true,
            }],
        },
        HopRequest::Close {
            task_id: [1; 32],
            segment: 0,
            reason: CloseReason::Failover,
        },
        HopRequest::Finish {
            task_id: [1; 32],
            segment: 0,
        },
        HopRequest::Failed {
            task_id: [1; 32],
            segment: 1,
            hop: 2,
            detail: "hop 2 did not take the rows".into(),
        },
    ];
    for m in messages {
        assert_eq!(HopRequest::decode(&encode(&m)).unwrap(), m);
    }
    let summary = HopResponse::Finished(HopSummary {
        positions: 40,
        input_states: [1; 32],
        output_states: [2; 32],
        commitment_root: [3; 32],
        sampled: 0,
    });
    assert_eq!(HopResponse::decode(&encode(&summary)).unwrap(), summary);
}

#[test]
fn malformed_routes_are_refused() {
    let cases: Vec<(HopOpen, &str)> = vec![
        (open(&[], 0), "1 to"),
        (open(&[(0, 10), (10, 30)], 2), "outside"),
        (open(&[(0, 10), (11, 30)], 0), "from 10"),
        (open(&[(0, 10), (10, 10), (10, 30)], 0), "non-empty"),
        (open(&[(1, 30)], 0), "from 0"),
        (open(&[(0, 10), (10, 29)], 0), "ends at block 29"),
        (open(&[(0, 10), (10, 40)], 0), "ends at block 40"),
    ];
    for (o, why) in cases {
        let m = refused(&HopRequest::Open(o.clone()));
        assert!(m.contains(why), "{:?}: {m}", o.route);
    }
    let mut twice = open(&[(0, 10), (10, 30)], 0);
    twice.route[1].node = twice.route[0].node;
    assert!(refused(&HopRequest::Open(twice)).contains("twice"));
    let too_long: Vec<(u16, u16)> = (0..17).map(|i| (i, i + 1)).collect();
    let mut long = open(&too_long, 0);
    long.n_layers = 17;
    assert!(refused(&HopRequest::Open(long)).contains("1 to 16"));
    let mut o = open(&[(0, 30)], 0);
    o.max_new = 0;
    assert!(refused(&HopRequest::Open(o)).contains("max_new"));
    let mut o = open(&[(0, 30)], 0);
    o.stop_tokens = vec![1; MAX_STOP_TOKENS + 1];
    assert!(refused(&HopRequest::Open(o)).contains("stop tokens"));
    // (Borsh itself refuses NaN.)
    for (t, p) in [(f32::INFINITY, 0.9), (-1.0, 0.9), (0.7, 0.0), (0.7, 1.5)] {
        let mut o = open(&[(0, 30)], 0);
        o.sampling.temperature = t;
        o.sampling.top_p = p;
        assert!(refused(&HopRequest::Open(o)).contains("sampling"));
    }
}

#[test]
fn malformed_steps_are_refused() {
    assert!(refused(&step(&[])).contains("entries"));
    assert!(refused(&step(&[3, 0])).contains("without rows"));
    assert!(refused(&step(&[MAX_STEP_ROWS, 1])).contains("rows"));
    assert!(refused(&step(&vec![1; MAX_STEP_ENTRIES + 1])).contains("entries"));
    let HopRequest::Step { entries, .. } = step(&[2]) else {
        unreachable!()
    };
    let empty = HopRequest::Step {
        entries,
        states: Vec::new(),
    };
    assert!(refused(&empty).contains("without states"));
    let HopRequest::Step {
        mut entries,
        states,
    } = step(&[2, 2])
    else {
        unreachable!()
    };
    entries[1].task_id = entries[0].task_id;
    assert!(refused(&HopRequest::Step { entries, states }).contains("twice"));
    assert!(refused(&HopRequest::Tokens { entries: vec![] }).contains("entries"));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let big = vec![0u8; MAX_HOP_REQUEST_BYTES + 1];
    assert!(matches!(
        HopRequest::decode(&big),
        Err(WireError::TooLarge { .. })
    ));
    let big = vec![0u8; MAX_HOP_RESPONSE_BYTES + 1];
    assert!(matches!(
        HopResponse::decode(&big),
        Err(WireError::TooLarge { .. })
    ));
    // A long error detail is cut to the limit by the sender, on a character
    // boundary, and refused from a sender that did not.
    let e = HopResponse::error(HopErrorKind::BadShape, "é".repeat(MAX_ERROR_DETAIL));
    let HopResponse::Error { detail, .. } = &e else {
        unreachable!()
    };
    assert!(detail.len() <= MAX_ERROR_DETAIL);
    assert_eq!(HopResponse::decode(&encode(&e)).unwrap(), e);
    let raw = HopResponse::Error {
        kind: HopErrorKind::Internal,
        detail: "x".repeat(MAX_ERROR_DETAIL + 1),
    };
    assert!(HopResponse::decode(&encode(&raw)).is_err());
    // The same limit on a failure report.
    let failed = HopRequest::Failed {
        task_id: [1; 32],
        segment: 0,
        hop: 1,
        detail: "x".repeat(MAX_ERROR_DETAIL + 1),
    };
    assert!(HopRequest::decode(&encode(&failed)).is_err());
}

#[test]
fn hop_announcements_round_trip_and_bad_ones_are_refused() {
    use strata_wire::capacity::{HopCapacity, MAX_HOP_CAPACITY_BYTES, MAX_HOP_RTTS};
    let good = HopCapacity {
        capacity: strata_wire::Capacity {
            model: "m".into(),
            model_hash: [1; 32],
            price_per_token: 10,
            tokens_per_sec: 0.0,
            memory_mb: 96,
            max_concurrent: 8,
            active: 1,
            context_length: 2048,
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            sent_at_ms: 5,
            policies: Vec::new(),
        },
        start: 10,
        end: 20,
        n_layers: 30,
        layer_ms: 0.8,
        rtt_us: vec![([2; 32], 150); MAX_HOP_RTTS],
    };
    assert_eq!(HopCapacity::decode(&encode(&good)), Ok(good.clone()));
    let refused = |edit: &dyn Fn(&mut HopCapacity)| {
        let mut h = good.clone();
        edit(&mut h);
        matches!(HopCapacity::decode(&encode(&h)), Err(WireError::Invalid(_)))
    };
    assert!(refused(&|h| h.end = h.start), "empty range");
    assert!(refused(&|h| h.end = 31), "past the model");
    assert!(refused(&|h| h.layer_ms = f32::INFINITY));
    let mut nan = good.clone();
    nan.layer_ms = f32::NAN;
    assert!(
        HopCapacity::decode(&encode(&nan)).is_err(),
        "Borsh refuses NaN"
    );
    assert!(refused(&|h| h.layer_ms = 0.0));
    assert!(
        refused(&|h| h.rtt_us.push(([3; 32], 1))),
        "too many round trips"
    );
    let mut big = good.clone();
    big.capacity.addrs = vec!["x".repeat(MAX_HOP_CAPACITY_BYTES)];
    assert!(matches!(
        HopCapacity::decode(&encode(&big)),
        Err(WireError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = HopRequest::decode(&bytes);
        let _ = HopResponse::decode(&bytes);
        let _ = strata_wire::capacity::HopCapacity::decode(&bytes);
    }

    #[test]
    fn any_contiguous_route_is_accepted(cuts in proptest::collection::btree_set(1u16..30, 0..15), index in 0u8..16) {
        let mut bounds = vec![0u16];
        bounds.extend(cuts);
        bounds.push(30);
        let ranges: Vec<(u16, u16)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        let index = index % ranges.len() as u8;
        let o = open(&ranges, index);
        prop_assert!(o.validate().is_ok());
        let this = o.this_hop().unwrap();
        prop_assert_eq!((this.start, this.end), ranges[usize::from(index)]);
    }
}
