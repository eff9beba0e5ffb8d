//! Collecting votes until a quorum of the committee agrees.

use strata_chain::ed25519::verify_instruction;
use strata_chain::{Keypair, Pubkey, Signer};
use strata_verifier::votes::{Added, VotePool, MAX_VOTERS};
use strata_wire::audit::VerdictVote;

const CHALLENGE: [u8; 32] = [7; 32];

struct Setup {
    keys: Vec<Keypair>,
    pool: VotePool,
}

/// Five staked verifiers, one open challenge.
fn setup() -> Setup {
    let keys: Vec<Keypair> = (0..5).map(|_| Keypair::new()).collect();
    let mut pool = VotePool::new();
    pool.set_scope([CHALLENGE], keys.iter().map(|k| k.pubkey().to_bytes()));
    Setup { keys, pool }
}

fn committee(keys: &[Keypair]) -> Vec<Pubkey> {
    keys.iter().map(|k| k.pubkey()).collect()
}

#[test]
fn a_quorum_of_members_agreeing_makes_a_verdict() {
    let Setup { keys, mut pool } = setup();
    let members = committee(&keys[..3]);
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None, "no votes yet");
    assert_eq!(
        pool.insert(VerdictVote::sign(&keys[0], CHALLENGE, true)),
        Added::New
    );
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None, "one of two");
    pool.insert(VerdictVote::sign(&keys[2], CHALLENGE, true));
    let verdict = pool.quorum(&CHALLENGE, &members, 2).unwrap();
    assert!(verdict.upheld);
    assert_eq!(verdict.votes.len(), 2);
    let mut expected = vec![keys[0].pubkey(), keys[2].pubkey()];
    expected.sort();
    assert_eq!(verdict.voters(), expected, "sorted by voter");

    // What gets submitted is exactly what the program checks.
    let signed = verdict.signed_messages();
    assert!(signed.iter().all(|m| m.verify()));
    assert_eq!(
        signed.iter().map(|m| m.signer).collect::<Vec<_>>(),
        verdict.voters(),
        "signatures and voter accounts in the same order"
    );
    assert_eq!(
        signed[0].message,
        VerdictVote::message(&CHALLENGE, true),
        "the program's verdict message"
    );
    assert!(verify_instruction(&signed).is_ok());

    // More agreeing votes still submit exactly a quorum (a small transaction).
    pool.insert(VerdictVote::sign(&keys[1], CHALLENGE, true));
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2).unwrap().votes.len(), 2);
}

#[test]
fn duplicate_votes_count_once_and_the_first_stays() {
    let Setup { keys, mut pool } = setup();
    let members = committee(&keys[..3]);
    let first = VerdictVote::sign(&keys[0], CHALLENGE, true);
    assert_eq!(pool.insert(first), Added::New);
    assert_eq!(pool.insert(first), Added::Duplicate, "the same vote again");
    assert_eq!(
        pool.insert(VerdictVote::sign(&keys[0], CHALLENGE, false)),
        Added::Duplicate,
        "a voter changing its mind"
    );
    assert_eq!(pool.count(&CHALLENGE), 1);
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None);
    pool.insert(VerdictVote::sign(&keys[1], CHALLENGE, true));
    assert!(pool.quorum(&CHALLENGE, &members, 2).unwrap().upheld);
}

#[test]
fn votes_from_outside_the_committee_never_count() {
    let Setup { keys, mut pool } = setup();
    let members = committee(&keys[..2]);
    // Staked verifiers, but not selected for this challenge.
    pool.insert(VerdictVote::sign(&keys[3], CHALLENGE, true));
    pool.insert(VerdictVote::sign(&keys[4], CHALLENGE, true));
    assert_eq!(pool.count(&CHALLENGE), 2);
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None);
    pool.insert(VerdictVote::sign(&keys[0], CHALLENGE, true));
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None, "one member");
    pool.insert(VerdictVote::sign(&keys[1], CHALLENGE, true));
    let verdict = pool.quorum(&CHALLENGE, &members, 2).unwrap();
    assert!(verdict.voters().iter().all(|v| members.contains(v)));
}

#[test]
fn mixed_verdicts_wait_for_a_side_to_reach_the_quorum() {
    let Setup { keys, mut pool } = setup();
    let members = committee(&keys);
    pool.insert(VerdictVote::sign(&keys[0], CHALLENGE, true));
    pool.insert(VerdictVote::sign(&keys[1], CHALLENGE, false));
    assert_eq!(pool.quorum(&CHALLENGE, &members, 2), None, "one each");
    pool.insert(VerdictVote::sign(&keys[2], CHALLENGE, false));
    let verdict = pool.quorum(&CHALLENGE, &members, 2).unwrap();
    assert!(!verdict.upheld, "rejected by two");
    assert!(verdict.votes.iter().all(|v| !v.upheld));
    // Both sides at a quorum of one: the larger side wins, a tie waits.
    assert!(!pool.quorum(&CHALLENGE, &members, 1).unwrap().upheld);
    pool.insert(VerdictVote::sign(&keys[3], CHALLENGE, true));
    assert_eq!(
        pool.quorum(&CHALLENGE, &members, 1),
        None,
        "two against two"
    );
}

#[test]
fn votes_on_closed_challenges_or_from_unstaked_keys_are_not_kept() {
    let Setup { keys, mut pool } = setup();
    let stranger = Keypair::new();
    assert_eq!(
        pool.insert(VerdictVote::sign(&stranger, CHALLENGE, true)),
        Added::OutOfScope,
        "not a staked verifier"
    );
    assert_eq!(
        pool.insert(VerdictVote::sign(&keys[0], [8; 32], true)),
        Added::OutOfScope,
        "not an open challenge"
    );
    pool.insert(VerdictVote::sign(&keys[0], CHALLENGE, true));
    assert_eq!(pool.count(&CHALLENGE), 1);
    // The challenge closes: its votes go.
    pool.set_scope([[8; 32]], keys.iter().map(|k| k.pubkey().to_bytes()));
    assert_eq!(pool.count(&CHALLENGE), 0);
    assert_eq!(
        VotePool::new().insert(VerdictVote::sign(&keys[0], CHALLENGE, true)),
        Added::OutOfScope
    );
}

#[test]
fn a_challenge_holds_a_bounded_number_of_voters() {
    let keys: Vec<Keypair> = (0..MAX_VOTERS + 3).map(|_| Keypair::new()).collect();
    let mut pool = VotePool::new();
    pool.set_scope([CHALLENGE], keys.iter().map(|k| k.pubkey().to_bytes()));
    let added: Vec<Added> = keys
        .iter()
        .map(|k| pool.insert(VerdictVote::sign(k, CHALLENGE, true)))
        .collect();
    assert_eq!(
        added.iter().filter(|a| **a == Added::New).count(),
        MAX_VOTERS
    );
    assert_eq!(added.last(), Some(&Added::Full));
}

#[test]
fn junk_vote_bytes_are_refused_before_the_pool() {
    let key = Keypair::new();
    let vote = VerdictVote::sign(&key, CHALLENGE, true);
    let mut bytes = strata_wire::encode(&vote);
    assert_eq!(VerdictVote::decode_verified(&bytes).unwrap(), vote);
    bytes[0] ^= 1; // another challenge: the signature no longer matches
    assert!(VerdictVote::decode_verified(&bytes).is_err());
    assert!(VerdictVote::decode_verified(&[0; 3]).is_err());
    assert!(VerdictVote::decode_verified(&[0; 1000]).is_err());
}
