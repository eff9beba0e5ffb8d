//! Policy updates for RL on the network: a trainer's signed announcement
//! that version `v` of its policy (a LoRA adapter file over a named base
//! model) can be fetched through the p2p layer's chunked distribution, on
//! the [`POLICY`](crate::protocols::POLICY) gossip topic.
//!
//! The gossip envelope is signed by whichever node published it; this
//! announcement is signed again by the trainer's own key, over
//! [`POLICY_DOMAIN`] and the SHA-256 of its fields, so that what a node
//! loads is bound to the trainer it follows and not to the peer that passed
//! the message on. The announcement names the file twice on purpose: its
//! distribution root (what to download, chunk-verified in transit) and the
//! SHA-256 of its bytes (the adapter's identity, what the trainer and the
//! engine call it).
//!
//! What a follower does with it (trusted trainers only, no replay of older
//! versions, base model check, download, digest check) is the node's.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use strata_chain::Keypair;

use crate::WireError;

/// Largest encoded announcement accepted (it is about 230 bytes).
pub const MAX_POLICY_ANNOUNCEMENT_BYTES: usize = 512;
/// Largest adapter file an announcement may name: refused before anything
/// is downloaded. A rank-8 LoRA of SmolLM2-135M is about 10 MB; rank 64 on
/// a 1B model stays well under this.
pub const MAX_ADAPTER_BYTES: u64 = 512 << 20;
/// Domain tag of a trainer's announcement signature.
pub const POLICY_DOMAIN: &[u8; 8] = b"STRPOLC1";
/// Version of the announcement's layout this code writes and accepts.
pub const POLICY_FORMAT: u8 = 1;

/// A trainer's signed announcement of one policy version.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PolicyAnnouncement {
    /// Layout version ([`POLICY_FORMAT`]).
    pub format: u8,
    /// The trainer's ed25519 public key, which signed this.
    pub trainer: [u8; 32],
    /// SHA-256 of the base model file the adapter applies to.
    pub base_model: [u8; 32],
    /// Policy version; a trainer's versions only go up.
    pub version: u64,
    /// SHA-256 of the adapter file's bytes.
    pub adapter_sha256: [u8; 32],
    /// The file's root in the p2p distribution (`strata_p2p::FileRoot`),
    /// which is what a follower downloads.
    pub file_root: [u8; 32],
    /// The file's size in bytes (at most [`MAX_ADAPTER_BYTES`]).
    pub size: u64,
    /// When the trainer published it, Unix milliseconds (trainer clock;
    /// informational, ordering is by `version`).
    pub published_at_ms: u64,
    /// The trainer's signature over [`PolicyAnnouncement::signed_bytes`].
    pub signature: [u8; 64],
}

/// What a trainer states about a version, before it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyUpdate {
    /// SHA-256 of the base model file.
    pub base_model: [u8; 32],
    /// Policy version.
    pub version: u64,
    /// SHA-256 of the adapter file's bytes.
    pub adapter_sha256: [u8; 32],
    /// The file's distribution root.
    pub file_root: [u8; 32],
    /// The file's size in bytes.
    pub size: u64,
    /// Publication time, Unix milliseconds.
    pub published_at_ms: u64,
}

impl PolicyAnnouncement {
    /// Signs `update` with the trainer's key.
    pub fn sign(trainer: &Keypair, update: PolicyUpdate) -> Self {
        let key = SigningKey::from_bytes(trainer.secret_bytes());
        let mut a = Self {
            format: POLICY_FORMAT,
            trainer: key.verifying_key().to_bytes(),
            base_model: update.base_model,
            version: update.version,
            adapter_sha256: update.adapter_sha256,
            file_root: update.file_root,
            size: update.size,
            published_at_ms: update.published_at_ms,
            signature: [0; 64],
        };
        a.signature = key.sign(&a.signed_bytes()).to_bytes();
        a
    }

    /// The bytes signed: [`POLICY_DOMAIN`] followed by the SHA-256 of the
    /// Borsh encoding of every field but the signature, so a signature made
    /// for any other Strata message can never pass for one of these.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let fields = (
            self.format,
            self.trainer,
            self.base_model,
            self.version,
            self.adapter_sha256,
            self.file_root,
            self.size,
            self.published_at_ms,
        );
        let digest: [u8; 32] = Sha256::digest(crate::encode(&fields)).into();
        [POLICY_DOMAIN.as_slice(), digest.as_slice()].concat()
    }

    /// Checks the trainer's signature.
    pub fn verify(&self) -> Result<(), WireError> {
        let key = VerifyingKey::from_bytes(&self.trainer)
            .map_err(|_| WireError::Invalid("trainer key is not a valid ed25519 point".into()))?;
        key.verify_strict(
            &self.signed_bytes(),
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .map_err(|_| {
            WireError::Invalid("policy announcement signature does not match its trainer".into())
        })
    }

    /// Canonical bytes, as published.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode(self)
    }

    /// Decodes an announcement from the network (size-limited, no trailing
    /// bytes) and checks its layout version and that the file it names is
    /// non-empty and at most [`MAX_ADAPTER_BYTES`]. The signature is
    /// [`verify`](Self::verify)'s.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let a: Self = crate::decode(bytes, MAX_POLICY_ANNOUNCEMENT_BYTES)?;
        if a.format != POLICY_FORMAT {
            return Err(WireError::Invalid(format!(
                "unknown policy announcement format {}",
                a.format
            )));
        }
        if a.size == 0 || a.size > MAX_ADAPTER_BYTES {
            return Err(WireError::Invalid(format!(
                "adapter of {} bytes (1 to {MAX_ADAPTER_BYTES})",
                a.size
            )));
        }
        Ok(a)
    }

    /// [`decode`](Self::decode) then [`verify`](Self::verify).
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, WireError> {
        let a = Self::decode(bytes)?;
        a.verify()?;
        Ok(a)
    }
}
