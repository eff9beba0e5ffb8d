//! The state file: survives restarts, is never half-written, and a corrupt
//! one is named rather than silently replaced.

use strata_chain::Keypair;
use strata_verifier::state::{PendingChallenge, State, StateFile, STATE_FILE};
use strata_wire::audit::VerdictVote;

#[test]
fn done_batches_collapse_into_a_low_water_mark() {
    let mut s = State::default();
    s.audits_done.insert((1, 4));
    s.audits_done.insert((2, 0));
    s.mark_batch_done(1);
    assert!(s.batch_done(1) && !s.batch_done(0));
    assert_eq!(s.batches_below, 0);
    assert!(!s.audits_done.contains(&(1, 4)), "a done batch's audits go");
    assert!(s.audits_done.contains(&(2, 0)));
    s.mark_batch_done(0);
    assert_eq!(s.batches_below, 2);
    assert!(s.batches_done.is_empty());
    s.mark_batch_done(0);
    assert_eq!(s.batches_below, 2, "marking twice changes nothing");
}

#[test]
fn the_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = Keypair::new();
    let vote = VerdictVote::sign(&key, [4; 32], true);
    {
        let f = StateFile::open(Some(dir.path())).unwrap();
        f.update(|s| {
            s.mark_batch_done(0);
            s.mark_batch_done(5);
            s.audits_done.insert((6, 2));
            s.votes.insert([4; 32], vote);
            s.abstained.insert([5; 32]);
            s.reports.push(vec![1, 2, 3]);
            s.challenges.push(PendingChallenge {
                batch_id: 6,
                node: [1; 32],
                leaf_index: 2,
                task_id: [2; 32],
                receipt_digest: [3; 32],
                proof: vec![[4; 32]],
                attempts: 1,
            });
        });
    }
    let again = StateFile::open(Some(dir.path())).unwrap().snapshot();
    assert_eq!(again.batches_below, 1);
    assert!(again.batch_done(5) && !again.batch_done(4));
    assert!(again.audits_done.contains(&(6, 2)));
    assert_eq!(again.votes.get(&[4; 32]), Some(&vote));
    assert!(again.judged(&[5; 32]) && again.judged(&[4; 32]) && !again.judged(&[6; 32]));
    assert_eq!(again.reports, vec![vec![1, 2, 3]]);
    assert_eq!(again.challenges.len(), 1);

    let mut s = again;
    s.retain_challenges(|c| *c == [5; 32]);
    assert!(s.votes.is_empty() && s.judged(&[5; 32]));
}

#[test]
fn a_corrupt_state_file_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    for junk in [&b""[..], &[1, 2, 3][..], &[9, 0, 0][..]] {
        std::fs::write(&path, junk).unwrap();
        let e = StateFile::open(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), junk, "not overwritten");
    }
}

#[test]
fn without_a_directory_the_state_lives_in_memory() {
    let f = StateFile::open(None).unwrap();
    f.update(|s| s.mark_batch_done(0));
    assert_eq!(f.read(|s| s.batches_below), 1);
}
