//! A batch's audit seed: drawn from a slot after the batch was posted, once,
//! by anyone, and equal to what off-chain code computes from public data.
//! (Malformed SlotHashes bytes cannot be produced here: the runtime refuses
//! to store them; `strata_primitives::slot_hashes` tests its parser on them.)

use strata_primitives::audit;

use crate::prelude::*;

#[test]
fn a_batch_audit_seed_comes_from_a_later_slot_and_is_drawn_once() {
    let mut env = Env::new();
    let relayer = env.relayer();
    let (node, _) = env.compute_node(MIN_STAKE);
    let leaves = dispute_leaves(&node.pubkey());
    let posted = env.slot();
    let id = env.post_batch(&relayer, &leaves);
    let b = env.batch(id);
    assert_eq!(b.seed_slot, posted + u64::from(params().seed_delay_slots));
    assert_eq!(b.audit_seed, [0; 32]);
    env.set_slot_hashes(&[(posted, [1; 32]), (posted - 1, [2; 32])]);
    assert_error(env.seal_batch(id), StrataError::SeedNotReady);
    env.reach_seed_slot(b.seed_slot, [5; 32]);
    let meta = env.seal_batch(id).unwrap();
    let seed = audit::batch_seed(&[5; 32], &b.root);
    assert!(matches!(
        from_logs(&meta.logs).as_slice(),
        [StrataEvent::BatchSealed(e)] if e.id == id && e.audit_seed == seed && e.slot == b.seed_slot
    ));
    assert_eq!(env.batch(id).audit_seed, seed);
    env.advance_slots(1);
    assert_error(env.seal_batch(id), StrataError::SeedAlreadyDrawn);
}
