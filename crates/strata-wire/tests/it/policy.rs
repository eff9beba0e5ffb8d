//! Policy announcements: a trainer's signature verifies and binds every
//! field; forgeries, other formats, oversize files and hostile bytes are
//! clear errors, never panics.

use proptest::prelude::*;
use strata_chain::{Keypair, Signer};
use strata_wire::policy::*;
use strata_wire::WireError;

fn update(version: u64) -> PolicyUpdate {
    PolicyUpdate {
        base_model: [1; 32],
        version,
        adapter_sha256: [2; 32],
        file_root: [3; 32],
        size: 9_500_000,
        published_at_ms: 1_700_000_000_000,
    }
}

#[test]
fn signed_announcement_round_trips_and_verifies() {
    let trainer = Keypair::new();
    let a = PolicyAnnouncement::sign(&trainer, update(7));
    assert_eq!(a.trainer, trainer.pubkey().to_bytes());
    let bytes = a.encode();
    assert!(bytes.len() <= MAX_POLICY_ANNOUNCEMENT_BYTES);
    let back = PolicyAnnouncement::decode_verified(&bytes).unwrap();
    assert_eq!(back, a);
    assert!(back.signed_bytes().starts_with(POLICY_DOMAIN));
}

#[test]
fn every_field_is_signed() {
    let trainer = Keypair::new();
    let a = PolicyAnnouncement::sign(&trainer, update(7));
    let tampered: [fn(&mut PolicyAnnouncement); 8] = [
        |a| a.base_model[0] ^= 1,
        |a| a.version += 1,
        |a| a.adapter_sha256[5] ^= 1,
        |a| a.file_root[31] ^= 1,
        |a| a.size -= 1,
        |a| a.published_at_ms += 1,
        |a| a.signature[0] ^= 1,
        // Another trainer's key with this trainer's signature.
        |a| a.trainer = Keypair::new().pubkey().to_bytes(),
    ];
    for (i, t) in tampered.into_iter().enumerate() {
        let mut b = a.clone();
        t(&mut b);
        assert!(
            matches!(b.verify(), Err(WireError::Invalid(_))),
            "tampering {i} verified"
        );
        assert!(PolicyAnnouncement::decode_verified(&b.encode()).is_err());
    }
}

#[test]
fn refuses_other_formats_empty_and_oversize_files() {
    let trainer = Keypair::new();
    let mut a = PolicyAnnouncement::sign(&trainer, update(1));
    a.format = POLICY_FORMAT + 1;
    assert!(matches!(
        PolicyAnnouncement::decode(&a.encode()),
        Err(WireError::Invalid(m)) if m.contains("format")
    ));
    for size in [0, MAX_ADAPTER_BYTES + 1] {
        let a = PolicyAnnouncement::sign(&trainer, PolicyUpdate { size, ..update(1) });
        assert!(matches!(
            PolicyAnnouncement::decode(&a.encode()),
            Err(WireError::Invalid(m)) if m.contains("adapter of")
        ));
    }
    assert!(matches!(
        PolicyAnnouncement::decode(&vec![0u8; MAX_POLICY_ANNOUNCEMENT_BYTES + 1]),
        Err(WireError::TooLarge { .. })
    ));
    let mut trailing = PolicyAnnouncement::sign(&trainer, update(1)).encode();
    trailing.push(0);
    assert!(matches!(
        PolicyAnnouncement::decode(&trailing),
        Err(WireError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = PolicyAnnouncement::decode_verified(&bytes);
    }

    #[test]
    fn flipped_bytes_never_verify(i in 0usize..236, bit in 0u8..8) {
        let trainer = Keypair::new();
        let mut bytes = PolicyAnnouncement::sign(&trainer, update(3)).encode();
        let i = i % bytes.len();
        bytes[i] ^= 1 << bit;
        prop_assert!(PolicyAnnouncement::decode_verified(&bytes).is_err());
    }
}
