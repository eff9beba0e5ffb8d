//! The relayer is not trusted: its receipt lists must make the on-chain
//! root, and a challenged receipt's proof must lead to it.

use strata_chain::accounts::{Challenge, ChallengeStatus, ChallengeTerms};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{pda, Pubkey};
use strata_verifier::relayer::{
    claimed_batch_id, verify_batch, verify_challenged_receipt, RelayerClient, RelayerError,
};
use strata_wire::api::{BatchReceiptView, BatchReceiptsView, ReceiptView};
use strata_wire::{hex32, Receipt};

use crate::support::{batch, receipt_view, receipts};

fn listing(id: u64, receipts: &[Receipt]) -> BatchReceiptsView {
    BatchReceiptsView {
        batch_id: id,
        status: "posted".into(),
        // Never believed: the verifier recomputes it.
        root: hex32(&[0; 32]),
        receipts: receipts
            .iter()
            .enumerate()
            .map(|(i, r)| BatchReceiptView {
                leaf_index: i as u32,
                task_id: hex32(&r.body.task_id),
                node: Pubkey::from(r.body.node).to_string(),
                raw: hex::encode(r.encode()),
            })
            .collect(),
    }
}

#[test]
fn an_honest_listing_gives_every_receipt_with_a_proof_to_the_root() {
    for n in [1, 2, 5, 8] {
        let rs = receipts(n);
        let b = batch(7, &rs);
        // Listed in any order: leaf indices, not positions, place them.
        let mut view = listing(7, &rs);
        view.receipts.reverse();
        let checked = verify_batch(&b, &view).unwrap();
        assert_eq!(checked.len(), n);
        for (i, c) in checked.iter().enumerate() {
            assert_eq!(c.leaf_index as usize, i);
            assert_eq!(c.receipt, rs[i]);
            assert_eq!(c.leaf, rs[i].leaf());
            assert_eq!(
                merkle::verify::<Ledger>(&b.root, c.leaf, i as u64, n as u64, &c.proof),
                Ok(()),
                "the proof the verifier builds is the one the program checks"
            );
            if n > 1 {
                let other = ((i + 1) % n) as u64;
                assert!(
                    merkle::verify::<Ledger>(&b.root, c.leaf, other, n as u64, &c.proof).is_err()
                );
            }
        }
    }
}

#[test]
fn a_relayer_that_lies_is_refused() {
    let rs = receipts(5);
    let b = batch(3, &rs);
    let mismatch =
        |view: &BatchReceiptsView| matches!(verify_batch(&b, view), Err(RelayerError::Mismatch(_)));

    let mut missing = listing(3, &rs);
    missing.receipts.pop();
    assert!(mismatch(&missing), "a receipt left out");

    let mut extra = listing(3, &rs);
    let stranger = &receipts(1)[0];
    extra.receipts.push(BatchReceiptView {
        leaf_index: 5,
        task_id: hex32(&stranger.body.task_id),
        node: Pubkey::from(stranger.body.node).to_string(),
        raw: hex::encode(stranger.encode()),
    });
    assert!(mismatch(&extra), "a receipt added");

    let mut swapped = listing(3, &rs);
    swapped.receipts[0].leaf_index = 1;
    swapped.receipts[1].leaf_index = 0;
    assert!(mismatch(&swapped), "two receipts at each other's leaves");

    let mut doubled = listing(3, &rs);
    doubled.receipts[1].leaf_index = 0;
    assert!(mismatch(&doubled), "two receipts at one leaf");

    let mut replaced = listing(3, &rs);
    replaced.receipts[2].raw = hex::encode(receipts(3)[2].encode());
    assert!(
        mismatch(&replaced),
        "a valid receipt that is not the batch's"
    );

    assert!(mismatch(&listing(4, &rs)), "another batch's listing");

    let mut forged = listing(3, &rs);
    let mut bytes = rs[1].encode();
    bytes[40] ^= 1;
    forged.receipts[1].raw = hex::encode(bytes);
    assert!(matches!(
        verify_batch(&b, &forged),
        Err(RelayerError::Malformed(_))
    ));

    let mut junk = listing(3, &rs);
    junk.receipts[0].raw = "not hex".into();
    assert!(matches!(
        verify_batch(&b, &junk),
        Err(RelayerError::Malformed(_))
    ));
}

#[test]
fn the_listing_json_decodes() {
    let rs = receipts(2);
    let json = serde_json::json!({
        "batch_id": 9,
        "status": "posted",
        "root": hex32(&batch(9, &rs).root),
        "receipts": rs.iter().enumerate().map(|(i, r)| serde_json::json!({
            "leaf_index": i,
            "task_id": hex32(&r.body.task_id),
            "node": Pubkey::from(r.body.node).to_string(),
            "raw": hex::encode(r.encode()),
        })).collect::<Vec<_>>(),
    });
    let view: BatchReceiptsView = serde_json::from_value(json).unwrap();
    assert_eq!(verify_batch(&batch(9, &rs), &view).unwrap().len(), 2);
    assert!(serde_json::from_str::<BatchReceiptsView>(r#"{"batch_id": "x"}"#).is_err());
}

fn challenge_of(b: &strata_chain::accounts::Batch, r: &Receipt, leaf_index: u32) -> Challenge {
    Challenge {
        version: 1,
        bump: 255,
        challenger: Pubkey::new_unique(),
        node: Pubkey::from(r.body.node),
        batch: pda::batch(b.id),
        leaf_index,
        task_id: r.body.task_id,
        bond: 1,
        opened_at: 0,
        deadline: 100,
        opened_slot: 200,
        seed_slot: 204,
        seed: [5; 32],
        total_verifier_stake: 1,
        terms: ChallengeTerms {
            slash_bps: 5_000,
            challenger_share_bps: 2_000,
            verifier_quorum: 2,
            committee_size: 3,
        },
        status: ChallengeStatus::Open,
        slashed: 0,
        reserved: [0; 16],
    }
}

#[test]
fn a_challenged_receipt_counts_only_at_its_leaf_with_a_proof_to_the_root() {
    let rs = receipts(6);
    let b = batch(11, &rs);
    let leaves: Vec<[u8; 32]> = rs.iter().map(Receipt::leaf).collect();
    let proof = |i: usize| merkle::proof::<Ledger>(&leaves, i).unwrap();
    let c = challenge_of(&b, &rs[4], 4);

    let good = receipt_view(&rs[4], 11, 4, &proof(4));
    assert_eq!(claimed_batch_id(&good).unwrap(), 11);
    let found = verify_challenged_receipt(&c, &b, &good).unwrap();
    assert_eq!(found.receipt, rs[4]);
    assert_eq!((found.batch_id, found.proof), (11, proof(4)));

    let refused = |v: &ReceiptView| verify_challenged_receipt(&c, &b, v).is_err();
    assert!(
        refused(&receipt_view(&rs[4], 11, 4, &proof(3))),
        "wrong proof"
    );
    assert!(
        refused(&receipt_view(&rs[4], 11, 3, &proof(4))),
        "wrong leaf"
    );
    assert!(
        refused(&receipt_view(&rs[4], 12, 4, &proof(4))),
        "wrong batch"
    );
    assert!(
        refused(&receipt_view(&rs[3], 11, 3, &proof(3))),
        "another receipt of the batch"
    );
    let mut unbatched = good.clone();
    unbatched.batch = None;
    assert!(refused(&unbatched));
    assert!(claimed_batch_id(&unbatched).is_err());
    let mut junk = good;
    junk.raw = "zz".into();
    assert!(refused(&junk));
}

#[test]
fn relayer_urls_must_be_http() {
    assert!(RelayerClient::new("http://127.0.0.1:8788/").is_ok());
    assert_eq!(
        RelayerClient::new(" https://relayer.example/ ")
            .unwrap()
            .base(),
        "https://relayer.example"
    );
    assert!(RelayerClient::new("127.0.0.1:8788").is_err());
    assert!(RelayerClient::new("ftp://relayer").is_err());
}

#[tokio::test]
async fn an_unreachable_relayer_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = RelayerClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = client.batch_receipts(1).await.unwrap_err();
    assert!(matches!(e, RelayerError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    assert!(client.post_audit(&[1, 2, 3]).await.is_err());
}
