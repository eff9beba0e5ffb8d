//! Policy versions on the wire: the receipt of a task served with an
//! adapter (version 4), the task call that asks for a version, and the
//! versions a node lists in its capacity announcement. Each was appended
//! so that what existed before keeps its bytes: checked here against
//! encodings written with the old layouts.

use borsh::BorshSerialize;
use proptest::prelude::*;
use strata_chain::Keypair;
use strata_wire::capacity::{HeldPolicy, HopCapacity, MAX_CAPACITY_BYTES, MAX_HELD_POLICIES};
use strata_wire::receipt::{ADAPTED_RECEIPT_VERSION, RECEIPT_VERSION};
use strata_wire::task::{TaskRequest, TaskSpec, MAX_TASK_MESSAGE_BYTES};
use strata_wire::{decode, encode, AdapterPart, Capacity, Receipt, ReceiptBody, WireError};

use crate::common::body;

fn adapted(node: &Keypair, client: &Keypair) -> ReceiptBody {
    ReceiptBody {
        version: ADAPTED_RECEIPT_VERSION,
        adapter: Some(AdapterPart {
            policy_version: 3,
            adapter: [0xad; 32],
        }),
        ..body(node, client, 50, 150)
    }
}

#[test]
fn an_adapted_receipt_names_its_adapter_and_round_trips() {
    let (node, client) = (Keypair::new(), Keypair::new());
    let r = Receipt::sign(&node, adapted(&node, &client)).unwrap();
    let bytes = r.encode();
    let back = Receipt::decode_verified(&bytes).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.body.adapter.unwrap().policy_version, 3);
    // Version 2's bytes, then the 40 of the adapter part.
    let base = Receipt::sign(&node, body(&node, &client, 50, 150)).unwrap();
    assert_eq!(base.body.version, RECEIPT_VERSION);
    assert_eq!(bytes.len(), base.encode().len() + 40);
    assert_eq!(
        &bytes[1..base.encode().len() - 64],
        &base.encode()[1..base.encode().len() - 64]
    );
    // The digest covers the adapter: another adapter is another receipt.
    let mut other = adapted(&node, &client);
    other.adapter.as_mut().unwrap().adapter[0] ^= 1;
    assert_ne!(other.digest(), r.body.digest());
    assert_eq!(back.body.work_units(), base.body.work_units());
}

#[test]
fn adapted_receipts_that_disagree_with_their_version_are_refused() {
    let (node, client) = (Keypair::new(), Keypair::new());
    // Version 4 without the part, and a part on version 2: never signed.
    let no_part = ReceiptBody {
        adapter: None,
        ..adapted(&node, &client)
    };
    assert!(Receipt::sign(&node, no_part).is_err());
    let v2_with_part = ReceiptBody {
        version: RECEIPT_VERSION,
        ..adapted(&node, &client)
    };
    assert!(Receipt::sign(&node, v2_with_part).is_err());
    // Version 0 is the base model, which has no adapter part.
    let mut zero = adapted(&node, &client);
    zero.adapter.as_mut().unwrap().policy_version = 0;
    let r = Receipt::sign(&node, zero).unwrap();
    assert!(
        matches!(Receipt::decode_verified(&r.encode()), Err(WireError::Invalid(m)) if m.contains("version 0"))
    );
    // A version-2 receipt's bytes with the version byte set to 4 lack the
    // part: they do not decode.
    let mut bytes = Receipt::sign(&node, body(&node, &client, 50, 150))
        .unwrap()
        .encode();
    bytes[0] = ADAPTED_RECEIPT_VERSION;
    assert!(Receipt::decode_verified(&bytes).is_err());
}

fn spec() -> TaskSpec {
    TaskSpec {
        task_id: [4; 32],
        client: [5; 32],
        model: "m".into(),
        prompt: strata_wire::task::Prompt::Text("hi".into()),
        max_tokens: 8,
        sampling: strata_wire::Sampling::GREEDY,
        stop: vec![],
    }
}

#[test]
fn a_versioned_start_round_trips_and_the_older_calls_keep_their_tags() {
    let req = TaskRequest::StartPolicy {
        spec: spec(),
        top_logprobs: Some(0),
        policy_version: 7,
    };
    let bytes = encode(&req);
    assert_eq!(
        decode::<TaskRequest>(&bytes, MAX_TASK_MESSAGE_BYTES),
        Ok(req.clone())
    );
    assert_eq!(req_tag(&bytes), 9, "appended after the eight earlier calls");
    assert_eq!(req_tag(&encode(&TaskRequest::Start(spec()))), 0);
    let logprobs = TaskRequest::StartLogprobs {
        spec: spec(),
        top_logprobs: 2,
    };
    assert_eq!(req_tag(&encode(&logprobs)), 7);
    assert_eq!(req.task_id(), [4; 32]);
}

fn req_tag(bytes: &[u8]) -> u8 {
    bytes[0]
}

/// Capacity as it was before policies were listed.
#[derive(BorshSerialize)]
struct OldCapacity {
    model: String,
    model_hash: [u8; 32],
    price_per_token: u64,
    tokens_per_sec: f32,
    memory_mb: u32,
    max_concurrent: u32,
    active: u32,
    context_length: u32,
    addrs: Vec<String>,
    sent_at_ms: u64,
}

fn capacity(policies: Vec<HeldPolicy>) -> Capacity {
    Capacity {
        model: "m".into(),
        model_hash: [1; 32],
        price_per_token: 10,
        tokens_per_sec: 25.0,
        memory_mb: 512,
        max_concurrent: 8,
        active: 1,
        context_length: 2048,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        sent_at_ms: 5,
        policies,
    }
}

fn old() -> OldCapacity {
    OldCapacity {
        model: "m".into(),
        model_hash: [1; 32],
        price_per_token: 10,
        tokens_per_sec: 25.0,
        memory_mb: 512,
        max_concurrent: 8,
        active: 1,
        context_length: 2048,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        sent_at_ms: 5,
    }
}

fn held(n: u64) -> Vec<HeldPolicy> {
    (1..=n)
        .map(|version| HeldPolicy {
            version,
            adapter: [version as u8; 32],
        })
        .collect()
}

#[test]
fn capacity_lists_policies_and_keeps_its_old_bytes_without_them() {
    // No policies: the old layout's bytes, both ways.
    let old_bytes = borsh::to_vec(&old()).unwrap();
    assert_eq!(encode(&capacity(vec![])), old_bytes);
    let back: Capacity = decode(&old_bytes, MAX_CAPACITY_BYTES).unwrap();
    assert_eq!(back, capacity(vec![]));
    assert!(back.holds_policy(0) && !back.holds_policy(1));

    // With policies: round trip, and the old bytes are a prefix.
    let c = capacity(held(3));
    let bytes = encode(&c);
    assert!(bytes.starts_with(&old_bytes));
    assert_eq!(
        decode::<Capacity>(&bytes, MAX_CAPACITY_BYTES),
        Ok(c.clone())
    );
    assert!(c.holds_policy(3) && !c.holds_policy(4));

    // Too many, a list present but empty, a list cut short: refused.
    let mut too_many = old_bytes.clone();
    (MAX_HELD_POLICIES as u32 + 1)
        .serialize(&mut too_many)
        .unwrap();
    for p in held(MAX_HELD_POLICIES as u64 + 1) {
        p.serialize(&mut too_many).unwrap();
    }
    assert!(decode::<Capacity>(&too_many, MAX_CAPACITY_BYTES).is_err());
    let mut empty = old_bytes.clone();
    0u32.serialize(&mut empty).unwrap();
    assert!(decode::<Capacity>(&empty, MAX_CAPACITY_BYTES).is_err());
    assert!(decode::<Capacity>(&bytes[..bytes.len() - 1], MAX_CAPACITY_BYTES).is_err());
    assert!(decode::<Capacity>(&old_bytes[..old_bytes.len() - 2], MAX_CAPACITY_BYTES).is_err());
}

#[test]
fn hop_announcements_keep_their_bytes_and_may_list_policies() {
    let hop = |policies| HopCapacity {
        capacity: capacity(policies),
        start: 0,
        end: 10,
        n_layers: 30,
        layer_ms: 0.5,
        rtt_us: vec![([2; 32], 100)],
    };
    let mut old_bytes = borsh::to_vec(&old()).unwrap();
    (0u16, 10u16, 30u16, 0.5f32)
        .serialize(&mut old_bytes)
        .unwrap();
    vec![([2u8; 32], 100u32)].serialize(&mut old_bytes).unwrap();
    assert_eq!(encode(&hop(vec![])), old_bytes);
    assert_eq!(HopCapacity::decode(&old_bytes), Ok(hop(vec![])));
    let with = hop(held(2));
    assert_eq!(HopCapacity::decode(&encode(&with)), Ok(with));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Hostile bytes after a well-formed announcement never panic, and
    /// decode only as a policy list within the limit.
    #[test]
    fn hostile_capacity_tails_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = borsh::to_vec(&old()).unwrap();
        bytes.extend(&tail);
        if let Ok(c) = decode::<Capacity>(&bytes, MAX_CAPACITY_BYTES) {
            prop_assert!(!tail.is_empty() || c.policies.is_empty());
            prop_assert!(c.policies.len() <= MAX_HELD_POLICIES);
        }
        let _ = HopCapacity::decode(&bytes);
        let _ = Receipt::decode_verified(&tail);
    }
}
