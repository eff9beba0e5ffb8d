//! Signed gossip envelopes.
//!
//! Gossipsub already signs each message with the publisher's libp2p key, but
//! that signature is a transport detail. Strata wraps every payload in its own
//! envelope signed with the node key (the Solana key), so a capacity
//! announcement or receipt can be checked and stored by anyone who never saw the
//! gossip, and so the sender's identity is the on-chain key, not a PeerId.
//!
//! Layout (big-endian):
//! `version u16 | kind u8 | sender [32] | payload_len u32 | payload | signature [64]`.
//! The signature covers `DOMAIN || version || kind || sender || payload_len || payload`.

use crate::codec::{DecodeError, Reader};
use crate::identity::{verify_signature, NodeId, NodeIdentity};

/// The envelope version this build speaks. Messages with other versions are
/// dropped (and count against the sender only if malformed, not merely new).
pub const ENVELOPE_VERSION: u16 = 1;

/// Domain separator so a gossip signature can never be replayed as a receipt
/// or transaction signature made with the same key.
const DOMAIN: &[u8] = b"strata-gossip-v1";

/// Fixed bytes around the payload: version, kind, sender, length, signature.
pub const ENVELOPE_OVERHEAD: usize = 2 + 1 + 32 + 4 + 64;

/// What a gossip message is about; each kind has its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GossipKind {
    /// A node announces capacity (layers served, free slots, prices).
    Capacity,
    /// A signed task receipt.
    Receipt,
    /// Software / policy version announcements.
    Version,
    /// Internal: peers announce the files (roots) they hold or fetch.
    Distribution,
}

impl GossipKind {
    /// All kinds, for subscribing.
    pub const ALL: [GossipKind; 4] = [
        GossipKind::Capacity,
        GossipKind::Receipt,
        GossipKind::Version,
        GossipKind::Distribution,
    ];

    /// Wire tag.
    pub fn tag(self) -> u8 {
        match self {
            GossipKind::Capacity => 1,
            GossipKind::Receipt => 2,
            GossipKind::Version => 3,
            GossipKind::Distribution => 4,
        }
    }

    /// Kind for a wire tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        GossipKind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// Gossipsub topic name of this kind.
    pub fn topic(self) -> &'static str {
        match self {
            GossipKind::Capacity => "/strata/capacity/1",
            GossipKind::Receipt => "/strata/receipts/1",
            GossipKind::Version => "/strata/versions/1",
            GossipKind::Distribution => "/strata/distribution/1",
        }
    }
}

/// A decoded, *not yet verified* envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope format version.
    pub version: u16,
    /// Wire tag of the kind (kept raw so unknown kinds can be reported).
    pub kind: u8,
    /// Claimed sender key.
    pub sender: [u8; 32],
    /// Opaque application bytes.
    pub payload: Vec<u8>,
    /// ed25519 signature by `sender`.
    pub signature: [u8; 64],
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// Could not be parsed (malformed: the sender is penalised).
    #[error("malformed envelope: {0}")]
    Malformed(#[from] DecodeError),
    /// A version this build does not know (dropped, not penalised).
    #[error("unknown envelope version {0}")]
    UnknownVersion(u16),
    /// A kind this build does not know (dropped, not penalised).
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// The signature does not verify (forgery: penalised).
    #[error("bad signature")]
    BadSignature,
    /// Signed by someone other than the gossipsub author.
    #[error("envelope sender is not the message author")]
    SenderMismatch,
    /// Published on the topic of another kind.
    #[error("kind does not match topic")]
    WrongTopic,
}

impl GossipError {
    /// Whether this refusal is misbehaviour that should cost the sender.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(
            self,
            GossipError::UnknownVersion(_) | GossipError::UnknownKind(_)
        )
    }
}

fn signed_bytes(version: u16, kind: u8, sender: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 39 + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&version.to_be_bytes());
    m.push(kind);
    m.extend_from_slice(sender);
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

impl Envelope {
    /// Build and sign an envelope with the local identity.
    pub fn sign(identity: &NodeIdentity, kind: GossipKind, payload: Vec<u8>) -> Self {
        let sender = identity.node_id().0;
        let signature = identity.sign(&signed_bytes(
            ENVELOPE_VERSION,
            kind.tag(),
            &sender,
            &payload,
        ));
        Envelope {
            version: ENVELOPE_VERSION,
            kind: kind.tag(),
            sender,
            payload,
            signature,
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + self.payload.len());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parse with a payload limit. Does not verify.
    pub fn decode(bytes: &[u8], max_payload: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u16()?;
        let kind = r.u8()?;
        let sender = r.array::<32>()?;
        let payload = r.bytes(max_payload)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Envelope {
            version,
            kind,
            sender,
            payload,
            signature,
        })
    }

    /// Full validation: parse, known version and kind, signature, and that the
    /// signer is the gossipsub author (`author`, from the transport signature)
    /// and the kind matches the topic it arrived on.
    pub fn validate(
        bytes: &[u8],
        max_payload: usize,
        author: Option<NodeId>,
        topic_kind: Option<GossipKind>,
    ) -> Result<(GossipKind, Envelope), GossipError> {
        let env = Envelope::decode(bytes, max_payload)?;
        if env.version != ENVELOPE_VERSION {
            return Err(GossipError::UnknownVersion(env.version));
        }
        let kind = GossipKind::from_tag(env.kind).ok_or(GossipError::UnknownKind(env.kind))?;
        let msg = signed_bytes(env.version, env.kind, &env.sender, &env.payload);
        if !verify_signature(&env.sender, &msg, &env.signature) {
            return Err(GossipError::BadSignature);
        }
        if let Some(author) = author {
            if author.0 != env.sender {
                return Err(GossipError::SenderMismatch);
            }
        }
        if let Some(t) = topic_kind {
            if t != kind {
                return Err(GossipError::WrongTopic);
            }
        }
        Ok((kind, env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signed_envelope_validates() {
        let id = NodeIdentity::generate();
        let env = Envelope::sign(&id, GossipKind::Receipt, b"hello".to_vec());
        let bytes = env.encode();
        let (kind, back) =
            Envelope::validate(&bytes, 1024, Some(id.node_id()), Some(GossipKind::Receipt))
                .unwrap();
        assert_eq!(kind, GossipKind::Receipt);
        assert_eq!(back, env);
    }

    #[test]
    fn forged_and_mismatched_envelopes_are_refused() {
        let id = NodeIdentity::generate();
        let other = NodeIdentity::generate();
        let mut env = Envelope::sign(&id, GossipKind::Capacity, b"cap".to_vec());
        // Someone else relabels it as theirs.
        let mut forged = env.clone();
        forged.sender = other.node_id().0;
        assert_eq!(
            Envelope::validate(&forged.encode(), 1024, None, None).unwrap_err(),
            GossipError::BadSignature
        );
        // Valid signature, but published by another author.
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, Some(other.node_id()), None).unwrap_err(),
            GossipError::SenderMismatch
        );
        // Wrong topic.
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, None, Some(GossipKind::Receipt)).unwrap_err(),
            GossipError::WrongTopic
        );
        // Tampered payload.
        env.payload[0] ^= 1;
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, None, None).unwrap_err(),
            GossipError::BadSignature
        );
    }

    #[test]
    fn unknown_version_is_dropped_not_penalised() {
        let id = NodeIdentity::generate();
        let mut env = Envelope::sign(&id, GossipKind::Version, vec![]);
        env.version = 99;
        let err = Envelope::validate(&env.encode(), 1024, None, None).unwrap_err();
        assert_eq!(err, GossipError::UnknownVersion(99));
        assert!(!err.is_misbehaviour());
    }

    #[test]
    fn oversized_payload_is_refused() {
        let id = NodeIdentity::generate();
        let env = Envelope::sign(&id, GossipKind::Version, vec![0; 2000]);
        assert!(matches!(
            Envelope::validate(&env.encode(), 1024, None, None),
            Err(GossipError::Malformed(DecodeError::TooLarge { .. }))
        ));
    }

    proptest! {
        #[test]
        fn envelope_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..512), tag in 1u8..=4) {
            let id = NodeIdentity::generate();
            let kind = GossipKind::from_tag(tag).unwrap();
            let env = Envelope::sign(&id, kind, payload);
            let (k, back) = Envelope::validate(&env.encode(), 512, Some(id.node_id()), Some(kind)).unwrap();
            prop_assert_eq!(k, kind);
            prop_assert_eq!(back, env);
        }

        #[test]
        fn envelope_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::validate(&bytes, 256, None, None);
        }
    }
}
