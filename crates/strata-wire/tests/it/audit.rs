//! The verification network's messages: signed reports and votes verify,
//! forgeries and hostile bytes are clear errors.

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
