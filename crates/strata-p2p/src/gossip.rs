//! Signed gossip envelopes.
//!
//! Gossipsub already signs each message with the publisher's libp2p key, but
//! that signature is a transport detail. Strata wraps every payload in its own
//! envelope signed with the node key (the Solana key), so a capacity
//! announcement or receipt can be checked and stored by anyone who never saw the
//! gossip, and so the sender's identity is the on-chain key, not a PeerId.
//!
//! Layout (big-endian):
//! `version u16 | tag u8 | sender [32] | payload_len u32 | payload | signature [64]`.
//! The signature covers `DOMAIN || version || tag || sender || payload_len || payload`.
//! The tag names the topic ([`TopicSpec::tag`]), so a message cannot be
//! replayed on another topic.
//!
//! Which topics exist is the application's registration plus the layer's own
//! file announcements: [`Topics`] checks that registration once at start and
//! then validates every message against it.

use libp2p::gossipsub::{IdentTopic, TopicHash};
use strata_primitives::protocol::TopicSpec;

use crate::codec::{DecodeError, Reader};
use crate::error::P2pError;
use crate::identity::{verify_signature, NodeId, NodeIdentity};
use crate::peers::Misbehaviour;

/// The envelope version this build speaks. Messages with other versions are
/// dropped (and count against the sender only if malformed, not merely new).
pub const ENVELOPE_VERSION: u16 = 1;

/// Domain separator so a gossip signature can never be replayed as a receipt
/// or transaction signature made with the same key.
const DOMAIN: &[u8] = b"strata-gossip-v1";

/// Fixed bytes around the payload: version, tag, sender, length, signature.
pub const ENVELOPE_OVERHEAD: usize = 2 + 1 + 32 + 4 + 64;

/// A decoded, *not yet verified* envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope format version.
    pub version: u16,
    /// Wire tag of the topic (kept raw so unknown tags can be reported).
    pub tag: u8,
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
    /// A topic tag this node did not register (dropped, not penalised).
    #[error("unknown topic tag {0}")]
    UnknownTag(u8),
    /// The signature does not verify (forgery: penalised).
    #[error("bad signature")]
    BadSignature,
    /// Signed by someone other than the gossipsub author.
    #[error("envelope sender is not the message author")]
    SenderMismatch,
    /// Published on another topic than the one its tag names.
    #[error("kind does not match topic")]
    WrongTopic,
}

impl GossipError {
    /// Whether this refusal is misbehaviour that should cost the sender.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(
            self,
            GossipError::UnknownVersion(_) | GossipError::UnknownTag(_)
        )
    }
}

fn signed_bytes(version: u16, tag: u8, sender: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 39 + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&version.to_be_bytes());
    m.push(tag);
    m.extend_from_slice(sender);
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

impl Envelope {
    /// Build and sign an envelope for `topic` with the local identity.
    pub fn sign(identity: &NodeIdentity, topic: &TopicSpec, payload: Vec<u8>) -> Self {
        let sender = identity.node_id().0;
        let signature = identity.sign(&signed_bytes(
            ENVELOPE_VERSION,
            topic.tag,
            &sender,
            &payload,
        ));
        Envelope {
            version: ENVELOPE_VERSION,
            tag: topic.tag,
            sender,
            payload,
            signature,
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + self.payload.len());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.tag);
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
        let tag = r.u8()?;
        let sender = r.array::<32>()?;
        let payload = r.bytes(max_payload)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Envelope {
            version,
            tag,
            sender,
            payload,
            signature,
        })
    }

    /// Full validation: parse, known version and topic tag (one of
    /// `topics`), signature, and that the signer is the gossipsub author
    /// (`author`, from the transport signature) and the tag matches the topic
    /// the message arrived on (`arrived_on`).
    pub fn validate(
        bytes: &[u8],
        max_payload: usize,
        author: Option<NodeId>,
        topics: &[TopicSpec],
        arrived_on: Option<&TopicSpec>,
    ) -> Result<(TopicSpec, Envelope), GossipError> {
        let env = Envelope::decode(bytes, max_payload)?;
        if env.version != ENVELOPE_VERSION {
            return Err(GossipError::UnknownVersion(env.version));
        }
        let topic = *topics
            .iter()
            .find(|t| t.tag == env.tag)
            .ok_or(GossipError::UnknownTag(env.tag))?;
        let msg = signed_bytes(env.version, env.tag, &env.sender, &env.payload);
        if !verify_signature(&env.sender, &msg, &env.signature) {
            return Err(GossipError::BadSignature);
        }
        if let Some(author) = author {
            if author.0 != env.sender {
                return Err(GossipError::SenderMismatch);
            }
        }
        if let Some(t) = arrived_on {
            if t.tag != topic.tag {
                return Err(GossipError::WrongTopic);
            }
        }
        Ok((topic, env))
    }
}

/// The topics this node subscribes to: the application's, then the layer's
/// own, with their gossipsub hashes.
pub(crate) struct Topics {
    specs: Vec<TopicSpec>,
    hashes: Vec<TopicHash>,
}

impl Topics {
    /// Checks the application's registration against itself and against the
    /// layer's `internal` topics: every tag and every name must be unique.
    pub(crate) fn new(app: &[TopicSpec], internal: &[TopicSpec]) -> Result<Self, P2pError> {
        for (i, t) in app.iter().enumerate() {
            if let Some(own) = internal.iter().find(|o| o.tag == t.tag || o.name == t.name) {
                return Err(P2pError::Registration(format!(
                    "topic {} (tag {}) collides with the p2p layer's own {} (tag {})",
                    t.name, t.tag, own.name, own.tag
                )));
            }
            if let Some(other) = app[..i].iter().find(|o| o.tag == t.tag) {
                return Err(P2pError::Registration(format!(
                    "topic tag {} is registered twice ({} and {})",
                    t.tag, other.name, t.name
                )));
            }
            if app[..i].iter().any(|o| o.name == t.name) {
                return Err(P2pError::Registration(format!(
                    "topic {} is registered twice",
                    t.name
                )));
            }
        }
        let specs: Vec<TopicSpec> = app.iter().chain(internal).copied().collect();
        let hashes = specs
            .iter()
            .map(|t| IdentTopic::new(t.name).hash())
            .collect();
        Ok(Topics { specs, hashes })
    }

    /// Every topic, application topics first.
    pub(crate) fn all(&self) -> &[TopicSpec] {
        &self.specs
    }

    /// The registered topic called `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<TopicSpec> {
        self.specs.iter().find(|t| t.name == name).copied()
    }

    /// The largest payload any topic carries (sizes gossipsub's frame limit).
    pub(crate) fn largest_payload(&self) -> usize {
        self.specs.iter().map(|t| t.max_payload).max().unwrap_or(0)
    }

    fn by_hash(&self, hash: &TopicHash) -> Option<&TopicSpec> {
        self.hashes
            .iter()
            .position(|h| h == hash)
            .map(|i| &self.specs[i])
    }

    /// Validates a gossip message that arrived on `topic`, signed at the
    /// transport by `author`. `Err(Some(_))` is misbehaviour to charge to the
    /// peer that relayed it; `Err(None)` is a message merely not for us (an
    /// envelope version or topic tag this build does not know).
    pub(crate) fn check(
        &self,
        data: &[u8],
        topic: &TopicHash,
        author: Option<NodeId>,
    ) -> Result<(TopicSpec, Envelope), Option<Misbehaviour>> {
        if author.is_none() {
            return Err(Some(Misbehaviour::AnonymousGossip));
        }
        let arrived_on = self.by_hash(topic);
        let max_payload = arrived_on.map_or(self.largest_payload(), |t| t.max_payload);
        Envelope::validate(data, max_payload, author, &self.specs, arrived_on).map_err(|e| {
            let detail = e.to_string();
            match e {
                _ if !e.is_misbehaviour() => None,
                GossipError::Malformed(_) => Some(Misbehaviour::MalformedGossip { detail }),
                _ => Some(Misbehaviour::ForgedGossip { detail }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn topic(tag: u8, name: &'static str) -> TopicSpec {
        TopicSpec {
            tag,
            name,
            max_payload: 64 * 1024,
        }
    }
    const CAPACITY: TopicSpec = topic(1, "/strata/capacity/1");
    const RECEIPTS: TopicSpec = topic(2, "/strata/receipts/1");
    const VERSIONS: TopicSpec = topic(3, "/strata/versions/1");
    const OWN: TopicSpec = topic(4, "/strata/distribution/1");
    const ALL: [TopicSpec; 4] = [CAPACITY, RECEIPTS, VERSIONS, OWN];

    #[test]
    fn signed_envelope_validates() {
        let id = NodeIdentity::generate();
        let env = Envelope::sign(&id, &RECEIPTS, b"hello".to_vec());
        let bytes = env.encode();
        let (topic, back) =
            Envelope::validate(&bytes, 1024, Some(id.node_id()), &ALL, Some(&RECEIPTS)).unwrap();
        assert_eq!(topic, RECEIPTS);
        assert_eq!(back, env);
    }

    #[test]
    fn forged_and_mismatched_envelopes_are_refused() {
        let id = NodeIdentity::generate();
        let other = NodeIdentity::generate();
        let mut env = Envelope::sign(&id, &CAPACITY, b"cap".to_vec());
        // Someone else relabels it as theirs.
        let mut forged = env.clone();
        forged.sender = other.node_id().0;
        assert_eq!(
            Envelope::validate(&forged.encode(), 1024, None, &ALL, None).unwrap_err(),
            GossipError::BadSignature
        );
        // Valid signature, but published by another author.
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, Some(other.node_id()), &ALL, None).unwrap_err(),
            GossipError::SenderMismatch
        );
        // Wrong topic.
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, None, &ALL, Some(&RECEIPTS)).unwrap_err(),
            GossipError::WrongTopic
        );
        // Tampered payload.
        env.payload[0] ^= 1;
        assert_eq!(
            Envelope::validate(&env.encode(), 1024, None, &ALL, None).unwrap_err(),
            GossipError::BadSignature
        );
    }

    #[test]
    fn unknown_version_is_dropped_not_penalised() {
        let id = NodeIdentity::generate();
        let mut env = Envelope::sign(&id, &VERSIONS, vec![]);
        env.version = 99;
        let err = Envelope::validate(&env.encode(), 1024, None, &ALL, None).unwrap_err();
        assert_eq!(err, GossipError::UnknownVersion(99));
        assert!(!err.is_misbehaviour());
    }

    #[test]
    fn unregistered_tag_is_dropped_not_penalised() {
        let id = NodeIdentity::generate();
        let env = Envelope::sign(&id, &topic(9, "/other/1"), b"x".to_vec());
        let err = Envelope::validate(&env.encode(), 1024, None, &ALL, None).unwrap_err();
        assert_eq!(err, GossipError::UnknownTag(9));
        assert!(!err.is_misbehaviour());
    }

    #[test]
    fn oversized_payload_is_refused() {
        let id = NodeIdentity::generate();
        let env = Envelope::sign(&id, &VERSIONS, vec![0; 2000]);
        assert!(matches!(
            Envelope::validate(&env.encode(), 1024, None, &ALL, None),
            Err(GossipError::Malformed(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn registration_refusals() {
        let refused = |app: &[TopicSpec]| match Topics::new(app, &[OWN]) {
            Err(P2pError::Registration(why)) => why,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("{app:?} was accepted"),
        };
        let why = refused(&[CAPACITY, topic(1, "/strata/other/1")]);
        assert!(why.contains("tag 1 is registered twice"), "{why}");
        let why = refused(&[CAPACITY, topic(7, CAPACITY.name)]);
        assert!(
            why.contains("/strata/capacity/1 is registered twice"),
            "{why}"
        );
        let why = refused(&[topic(4, "/strata/mine/1")]);
        assert!(why.contains("collides with the p2p layer's own"), "{why}");
        let why = refused(&[topic(8, OWN.name)]);
        assert!(why.contains("collides with the p2p layer's own"), "{why}");

        let topics = Topics::new(&[CAPACITY, RECEIPTS, VERSIONS], &[OWN]).unwrap();
        assert_eq!(topics.all(), &ALL[..]);
        assert_eq!(topics.by_name(RECEIPTS.name), Some(RECEIPTS));
        assert_eq!(topics.by_name("/strata/none/1"), None);
        assert_eq!(topics.largest_payload(), 64 * 1024);
    }

    #[test]
    fn checks_name_the_misbehaviour() {
        let topics = Topics::new(&[CAPACITY, RECEIPTS], &[OWN]).unwrap();
        let id = NodeIdentity::generate();
        let hash = |t: &TopicSpec| IdentTopic::new(t.name).hash();
        let env = Envelope::sign(&id, &CAPACITY, b"cap".to_vec()).encode();
        let (t, _) = topics
            .check(&env, &hash(&CAPACITY), Some(id.node_id()))
            .unwrap();
        assert_eq!(t, CAPACITY);
        assert_eq!(
            topics.check(&env, &hash(&CAPACITY), None).unwrap_err(),
            Some(Misbehaviour::AnonymousGossip)
        );
        assert!(matches!(
            topics.check(&env, &hash(&RECEIPTS), Some(id.node_id())),
            Err(Some(Misbehaviour::ForgedGossip { .. }))
        ));
        assert!(matches!(
            topics.check(&env[..10], &hash(&CAPACITY), Some(id.node_id())),
            Err(Some(Misbehaviour::MalformedGossip { .. }))
        ));
        let versions = Envelope::sign(&id, &VERSIONS, vec![]).encode();
        assert_eq!(
            topics
                .check(&versions, &hash(&CAPACITY), Some(id.node_id()))
                .unwrap_err(),
            None,
            "a tag we did not register is not the sender's fault"
        );
    }

    proptest! {
        #[test]
        fn envelope_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..512), tag in 1u8..=4) {
            let id = NodeIdentity::generate();
            let topic = ALL[usize::from(tag) - 1];
            let env = Envelope::sign(&id, &topic, payload);
            let (t, back) = Envelope::validate(&env.encode(), 512, Some(id.node_id()), &ALL, Some(&topic)).unwrap();
            prop_assert_eq!(t, topic);
            prop_assert_eq!(back, env);
        }

        #[test]
        fn envelope_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::validate(&bytes, 256, None, &ALL, None);
        }
    }
}
