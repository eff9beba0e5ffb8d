//! Receipts, vouchers and task messages: round trips, forgeries and hostile bytes.

use proptest::prelude::*;
use strata_chain::{Keypair, Signer};
use strata_wire::task::{TaskRequest, TaskResponse, MAX_TASK_MESSAGE_BYTES};
use strata_wire::{decode, Receipt, Voucher, WireError, MAX_RECEIPT_BYTES};

use crate::common::body;

#[test]
fn signed_receipt_round_trips_and_verifies() {
    let (node, client) = (Keypair::new(), Keypair::new());
    let r = Receipt::sign(&node, body(&node, &client, 50, 150)).unwrap();
    let bytes = r.encode();
    assert!(bytes.len() <= MAX_RECEIPT_BYTES, "{} bytes", bytes.len());
    let back = Receipt::decode_verified(&bytes).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.leaf(), r.leaf());
}

#[test]
fn forged_receipts_are_refused() {
    let (node, client, other) = (Keypair::new(), Keypair::new(), Keypair::new());
    let good = Receipt::sign(&node, body(&node, &client, 50, 150)).unwrap();

    let mut inflated = good.clone();
    inflated.body.completion_tokens += 1;
    assert!(
        matches!(inflated.verify(), Err(WireError::Invalid(m)) if m.contains("receipt signature"))
    );

    // Signed by someone else than the node it names.
    assert!(Receipt::sign(&other, body(&node, &client, 50, 150)).is_err());

    // A voucher for another node, re-signed by a colluding node.
    let mut b = body(&node, &client, 50, 150);
    b.voucher = Voucher::sign(&client, &other.pubkey(), 150);
    let r = Receipt::sign(&node, b).unwrap();
    assert!(matches!(r.verify(), Err(WireError::Invalid(m)) if m.contains("another node")));

    // A voucher whose signature was tampered with.
    let mut b = body(&node, &client, 50, 150);
    b.voucher.cumulative = 1_000;
    let r = Receipt::sign(&node, b).unwrap();
    assert!(matches!(r.verify(), Err(WireError::Invalid(m)) if m.contains("voucher signature")));

    // A voucher below the task's price.
    let r = Receipt::sign(&node, body(&node, &client, 500, 150)).unwrap();
    assert!(matches!(r.verify(), Err(WireError::Invalid(m)) if m.contains("price")));
}

#[test]
fn oversized_and_trailing_bytes_are_refused() {
    let (node, client) = (Keypair::new(), Keypair::new());
    let mut bytes = Receipt::sign(&node, body(&node, &client, 1, 1))
        .unwrap()
        .encode();
    bytes.push(0);
    assert!(matches!(
        Receipt::decode_verified(&bytes),
        Err(WireError::Malformed(_))
    ));
    let big = vec![0u8; MAX_RECEIPT_BYTES + 1];
    assert!(matches!(
        Receipt::decode_verified(&big),
        Err(WireError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Hostile bytes never panic any network-facing decoder.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Receipt::decode_verified(&bytes);
        let _ = decode::<TaskRequest>(&bytes, MAX_TASK_MESSAGE_BYTES);
        let _ = decode::<TaskResponse>(&bytes, MAX_TASK_MESSAGE_BYTES);
        let _ = decode::<strata_wire::Capacity>(&bytes, strata_wire::capacity::MAX_CAPACITY_BYTES);
    }

    /// Flipping any byte of a signed receipt makes it fail to decode or verify.
    #[test]
    fn any_bit_flip_is_detected(pos in 0usize..400, bit in 0u8..8) {
        let (node, client) = (Keypair::new(), Keypair::new());
        let mut bytes = Receipt::sign(&node, body(&node, &client, 5, 5)).unwrap().encode();
        let pos = pos % bytes.len();
        bytes[pos] ^= 1 << bit;
        prop_assert!(Receipt::decode_verified(&bytes).is_err());
    }
}

#[test]
fn hop_receipts_round_trip_and_bill_their_share() {
    use crate::common::hop_body;
    let (node, client) = (Keypair::new(), Keypair::new());
    for index in 0..3 {
        let r = Receipt::sign(&node, hop_body(&node, &client, index)).unwrap();
        let bytes = r.encode();
        assert!(bytes.len() <= MAX_RECEIPT_BYTES, "{} bytes", bytes.len());
        let back = Receipt::decode_verified(&bytes).unwrap();
        assert_eq!(back, r);
        // 50 cells over 30 blocks: one whole-model token's worth, rounded down.
        assert_eq!(back.body.work_units(), 1);
    }
    // A whole-model receipt's bytes are a prefix-free sibling: decoding
    // them never yields a hop part.
    let whole = Receipt::sign(&node, body(&node, &client, 50, 150)).unwrap();
    assert_eq!(
        Receipt::decode_verified(&whole.encode()).unwrap().body.hop,
        None
    );
}

#[test]
fn inconsistent_hop_receipts_are_refused() {
    use crate::common::hop_body;
    let (node, client) = (Keypair::new(), Keypair::new());
    let refused = |edit: &dyn Fn(&mut strata_wire::ReceiptBody), why: &str| {
        let mut b = hop_body(&node, &client, 1);
        edit(&mut b);
        let r = Receipt::sign(&node, b).unwrap();
        match r.verify() {
            Err(WireError::Invalid(m)) => assert!(m.contains(why), "{why}: got {m}"),
            other => panic!("{why}: {other:?}"),
        }
    };
    // Another task's hop id: a receipt cannot be filed under a task it did not serve.
    refused(&|b| b.task_id = [8; 32], "not the hop's id");
    refused(
        &|b| {
            let h = b.hop.as_mut().unwrap();
            h.index = 3;
            b.task_id = strata_wire::hop_task_id(&h.task_id, 0, 3, &b.node);
        },
        "outside the route",
    );
    refused(&|b| b.hop.as_mut().unwrap().end = 31, "outside the model");
    refused(
        &|b| b.hop.as_mut().unwrap().start = 0,
        "do not fit its place",
    );
    refused(&|b| b.hop.as_mut().unwrap().cells = 51, "more cells");
    // Version and hop part must agree: signing either mismatch is refused,
    // and the bytes of one never decode.
    let mut hop_as_v2 = hop_body(&node, &client, 1);
    hop_as_v2.version = 2;
    let mut whole_as_v3 = body(&node, &client, 50, 150);
    whole_as_v3.version = 3;
    for b in [hop_as_v2, whole_as_v3] {
        assert!(Receipt::sign(&node, b.clone()).is_err());
        let unsigned = Receipt {
            body: b,
            signature: [0; 64],
        };
        assert!(decode::<Receipt>(&unsigned.encode(), MAX_RECEIPT_BYTES).is_err());
    }
}
