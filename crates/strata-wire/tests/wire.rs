//! Receipts, vouchers and task messages: round trips, forgeries and hostile bytes.

use proptest::prelude::*;
use strata_chain::{Keypair, Signer};
use strata_wire::task::{TaskRequest, TaskResponse, MAX_TASK_MESSAGE_BYTES};
use strata_wire::{decode, Receipt, ReceiptBody, Voucher, WireError, MAX_RECEIPT_BYTES};

fn body(node: &Keypair, client: &Keypair, price: u64, cumulative: u64) -> ReceiptBody {
    ReceiptBody {
        version: strata_wire::receipt::RECEIPT_VERSION,
        task_id: [7; 32],
        node: node.pubkey().to_bytes(),
        model_hash: [1; 32],
        input_hash: strata_wire::tokens_hash(&[1, 2, 3]),
        output_hash: strata_wire::tokens_hash(&[4, 5]),
        prompt_tokens: 3,
        completion_tokens: 2,
        commitment_root: [9; 32],
        sampling: strata_wire::Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 7,
        },
        price,
        voucher: Voucher::sign(client, &node.pubkey(), cumulative),
        finished_at_ms: 1,
    }
}

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

/// Fixed vectors: the bytes of a receipt (version 2: with its sampling
/// settings), a voucher and a receipt-batch Merkle proof. A refactor that changes any of them changes what is on the wire and
/// on-chain, which must be a deliberate, versioned change, not an accident.
mod golden {
    use strata_chain::merkle::{self, domains::Ledger};
    use strata_chain::{Keypair, Signer};
    use strata_wire::{Receipt, ReceiptBody, Voucher};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn keys() -> (Keypair, Keypair) {
        (
            Keypair::new_from_array([11; 32]),
            Keypair::new_from_array([22; 32]),
        )
    }

    #[test]
    fn voucher_bytes_are_pinned() {
        let (node, client) = keys();
        let v = Voucher::sign(&client, &node.pubkey(), 123_456_789);
        assert_eq!(hex(&v.message()), VOUCHER_MESSAGE);
        assert_eq!(hex(&strata_wire::encode(&v)), VOUCHER);
    }

    #[test]
    fn receipt_bytes_are_pinned() {
        let (node, client) = keys();
        let body = ReceiptBody {
            version: 2,
            task_id: [7; 32],
            node: node.pubkey().to_bytes(),
            model_hash: [1; 32],
            input_hash: strata_wire::tokens_hash(&[1, 2, 3]),
            output_hash: strata_wire::tokens_hash(&[4, 5]),
            prompt_tokens: 3,
            completion_tokens: 2,
            commitment_root: [9; 32],
            sampling: strata_wire::Sampling {
                temperature: 0.0,
                top_p: 1.0,
                top_k: 0,
                seed: 7,
            },
            price: 50,
            voucher: Voucher::sign(&client, &node.pubkey(), 150),
            finished_at_ms: 1_700_000_000_000,
        };
        let r = Receipt::sign(&node, body).unwrap();
        assert_eq!(hex(&r.encode()), RECEIPT);
        assert_eq!(hex(&r.leaf()), RECEIPT_LEAF);
    }

    #[test]
    fn merkle_proof_bytes_are_pinned() {
        let (node, _) = keys();
        let leaves: Vec<[u8; 32]> = (0..5u8)
            .map(|i| Ledger::receipt_leaf(&[i; 32], node.pubkey().as_array(), &[i + 100; 32]))
            .collect();
        assert_eq!(hex(&merkle::root::<Ledger>(&leaves)), BATCH_ROOT);
        let proof: Vec<u8> = merkle::proof::<Ledger>(&leaves, 3).unwrap().concat();
        assert_eq!(hex(&proof), BATCH_PROOF_3);
        let reward = Ledger::reward_leaf(node.pubkey().as_array(), 4_242);
        assert_eq!(hex(&reward), REWARD_LEAF);
    }

    const VOUCHER_MESSAGE: &str = "535452564f55433106a1aa4cc5e23ee075b0261470ee741224165af35665c2690735c0a00000000066be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a15cd5b0700000000";
    const VOUCHER: &str = "511c34a1a2cb521df16bb246b8de8e7997ce235c7e76b22a3d7503a24819dd8a66be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a15cd5b0700000000c20db87d6b743d89486c2dd0aa045bdc3acbc63f252e19707e2644ff6caa47de53c7b99c5a8ef21a6c57f4f3efbdf8b3665d75a238885f270b534f9a9361e106";
    const RECEIPT: &str = "02070707070707070707070707070707070707070707070707070707070707070766be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a0101010101010101010101010101010101010101010101010101010101010101cb68dcf7fdbfe9bdefa1622e70ae05a0d387f2a0ff09199b451dfe3f558fef2c2b6236bde0773033b88bbdfa3d90073e1a6877700e5a5097e229873cf75bfc6003000000020000000909090909090909090909090909090909090909090909090909090909090909000000000000803f0000000007000000000000003200000000000000511c34a1a2cb521df16bb246b8de8e7997ce235c7e76b22a3d7503a24819dd8a66be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a9600000000000000783ee5789e6644b8169ba216eb6cc08b9b827e3c98a1466f4468116ba0dfe41df6617f838e584a762fc5932b281c96d37e23b2cebfce745598f446bbe6807e020068e5cf8b010000f53ca3c4d8456665e22eca9d16cc5f880362cef422570d7f321ee8aa7bfce839444f65c74a9a2c937b3664f36bcaa83e7615df0c28c44f8c7594ce4c0de5b501";
    const RECEIPT_LEAF: &str = "f609dd507b9c04d2ee96894baf5ff49a44110449677449b3ab65bbe19e9e8859";
    const BATCH_ROOT: &str = "00759d157d905561e4457dc4d5ea1336efb4034e2fc1d31a8166a6103c18a0dc";
    const BATCH_PROOF_3: &str = "9303de585e040d3c95a402651a781604afec750107daa1f7acd670e6fffa874bb3c693c03321f246eab1f6b444fae4946b11680bfca29a9a8f0b720de66779eb075653d874cbcfb1bba75d4c3c45d8c67b3eceaa09a86495e3207477643591c7";
    const REWARD_LEAF: &str = "ea87e6176565a127dff0362267eb98a6107ac77f878283de6d2d30ce03040bd9";
}

/// The verification network's messages: signed reports and votes verify,
/// forgeries and hostile bytes are clear errors.
mod audit {
    use proptest::prelude::*;
    use strata_chain::{Keypair, Signer};
    use strata_wire::audit::*;
    use strata_wire::WireError;

    fn body(verifier: &Keypair) -> AuditBody {
        AuditBody {
            version: AUDIT_VERSION,
            task_id: [1; 32],
            batch_id: 3,
            leaf_index: 4,
            node: [5; 32],
            verifier: verifier.pubkey().to_bytes(),
            layers: vec![2, 9, 17],
            steps: vec![0, 5],
            outcome: AuditOutcome::Failed {
                check: FailedCheck::Layer(9),
                detail: "relative deviation 0.8".into(),
            },
            work_digest: [6; 32],
            max_rel_dev: 0.8,
            cpu_micros: 12_000,
            finished_at_ms: 1,
        }
    }

    #[test]
    fn reports_verify_and_forgeries_do_not() {
        let v = Keypair::new();
        let r = AuditReport::sign(&v, body(&v)).unwrap();
        assert_eq!(AuditReport::decode_verified(&r.encode()).unwrap(), r);
        // Signed by someone else than the verifier it names.
        assert!(AuditReport::sign(&Keypair::new(), body(&v)).is_err());
        // Any change to the body breaks the signature.
        let mut forged = r.clone();
        forged.body.outcome = AuditOutcome::Passed;
        assert!(matches!(
            AuditReport::decode_verified(&forged.encode()),
            Err(WireError::Invalid(_))
        ));
    }

    #[test]
    fn votes_are_the_programs_verdict_signatures() {
        let v = Keypair::new();
        let vote = VerdictVote::sign(&v, [8; 32], true);
        let bytes = strata_wire::encode(&vote);
        assert_eq!(VerdictVote::decode_verified(&bytes).unwrap(), vote);
        let mut flipped = vote;
        flipped.upheld = false;
        assert!(VerdictVote::decode_verified(&strata_wire::encode(&flipped)).is_err());
        let m = VerdictVote::message(&[8; 32], true);
        let signed = strata_chain::ed25519::SignedMessage {
            signer: v.pubkey(),
            signature: vote.signature,
            message: m,
        };
        assert!(
            signed.verify(),
            "the program's precompile check would accept it"
        );
    }

    #[test]
    fn opening_requests_are_bounded() {
        let ok = OpeningRequest {
            task_id: [1; 32],
            batch_id: 0,
            leaf_index: 0,
            proof: vec![[3; 32]; 4],
            layers: vec![1, 2],
        };
        assert_eq!(
            OpeningRequest::decode(&strata_wire::encode(&ok)).unwrap(),
            ok
        );
        let none = OpeningRequest {
            layers: vec![],
            ..ok.clone()
        };
        assert!(OpeningRequest::decode(&strata_wire::encode(&none)).is_err());
        let many = OpeningRequest {
            layers: (0..65).collect(),
            ..ok.clone()
        };
        assert!(OpeningRequest::decode(&strata_wire::encode(&many)).is_err());
        let deep = OpeningRequest {
            proof: vec![[0; 32]; 33],
            ..ok
        };
        assert!(OpeningRequest::decode(&strata_wire::encode(&deep)).is_err());
        assert!(matches!(
            OpeningRequest::decode(&vec![0u8; MAX_OPENING_REQUEST_BYTES + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = OpeningRequest::decode(&bytes);
            let _ = OpeningResponse::decode(&bytes);
            let _ = AuditReport::decode_verified(&bytes);
            let _ = VerdictVote::decode_verified(&bytes);
        }
    }
}
