//! The verification network's messages: a verifier asking a node to open an
//! audited task ([`OpeningRequest`] / [`OpeningResponse`] over the `OPENING`
//! protocol), its signed [`AuditReport`] to the relayer, and committee
//! members' [`VerdictVote`]s on the `VERDICTS` gossip topic.
//!
//! Openings and hidden states travel in the engine's own encodings
//! (`strata_engine::Opening::encode`, `HiddenStates::encode` with f32), as
//! bytes here: this crate does not depend on the engine, and a verifier
//! decodes them with their own size limits after this message's.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use strata_chain::Keypair;

use crate::WireError;

/// Largest encoded opening request.
pub const MAX_OPENING_REQUEST_BYTES: usize = 4 << 10;
/// Largest encoded opening response (the `OPENING` protocol's response limit).
pub const MAX_OPENING_RESPONSE_BYTES: usize = 64 << 20;
/// Most layers one request may ask to open.
pub const MAX_OPENED_LAYERS: usize = 64;
/// Largest encoded audit report.
pub const MAX_AUDIT_REPORT_BYTES: usize = 4 << 10;
/// Largest encoded verdict vote.
pub const MAX_VOTE_BYTES: usize = 256;
/// Domain tag of a verifier's audit-report signature.
pub const AUDIT_DOMAIN: &[u8; 8] = b"STRAUDT1";
/// Version of [`AuditBody`] this code writes and accepts.
pub const AUDIT_VERSION: u8 = 1;

/// Which receipt to open and which layers. The node answers only the verifier
/// the audit assignment names, or a member of the committee of an open
/// challenge against this receipt (it checks both against the chain).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct OpeningRequest {
    /// The task.
    pub task_id: [u8; 32],
    /// The batch whose root holds the receipt.
    pub batch_id: u64,
    /// The receipt's leaf index in that batch.
    pub leaf_index: u32,
    /// The receipt leaf's Merkle proof against the batch root: the node
    /// checks it, so an asker cannot pick another batch's seed to make a
    /// task look audited.
    pub proof: Vec<[u8; 32]>,
    /// Layers to re-run (each opens entries `l` and `l + 1` with states).
    pub layers: Vec<u32>,
}

impl OpeningRequest {
    /// Decodes a request from the network and checks its bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = crate::decode(bytes, MAX_OPENING_REQUEST_BYTES)?;
        if r.layers.is_empty() || r.layers.len() > MAX_OPENED_LAYERS {
            return Err(WireError::Invalid(format!(
                "asks for {} layers (1 to {MAX_OPENED_LAYERS})",
                r.layers.len()
            )));
        }
        if r.proof.len() > strata_chain::limits::MAX_PROOF_LEN {
            return Err(WireError::Invalid("Merkle proof too long".into()));
        }
        Ok(r)
    }
}

/// One opened commitment entry.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct OpenedEntry {
    /// Entry index (the layer whose input it commits; `n_layers` = final states).
    pub index: u32,
    /// The entry with its Merkle proof (`strata_engine::Opening::encode`).
    pub opening: Vec<u8>,
    /// The entry's input states (`strata_engine::HiddenStates::encode`, f32),
    /// when the check needs them.
    pub states: Option<Vec<u8>>,
}

/// Everything a verifier needs to check a task: its tokens (the prompt and
/// output hashes in the receipt are over these), entry 0 (checked against
/// the embedding of the tokens), the requested layers' inputs and outputs,
/// and the final states (checked against the sampled tokens).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TaskOpening {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Generated token ids.
    pub output: Vec<u32>,
    /// Opened entries, ascending by index, each at most once.
    pub entries: Vec<OpenedEntry>,
}

/// A node's answer to an opening request.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum OpeningResponse {
    /// The openings.
    Opened(Box<TaskOpening>),
    /// Not given, and why (an unauthorised asker, an unknown task).
    Refused(String),
}

impl OpeningResponse {
    /// Decodes a response from the network (size-limited).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        crate::decode(bytes, MAX_OPENING_RESPONSE_BYTES)
    }
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum AuditOutcome {
    /// Every check passed.
    Passed,
    /// A check failed: the node served the task dishonestly.
    Failed {
        /// Which check.
        check: FailedCheck,
        /// What was seen, for people.
        detail: String,
    },
}

/// The check an audit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum FailedCheck {
    /// The node did not answer in time, or refused.
    Withheld,
    /// An opening does not lead to the receipt's root, or a state does not
    /// hash to its entry.
    Opening,
    /// The tokens do not hash to the receipt's prompt or output hash, or the
    /// committed positions do not match their count.
    Tokens,
    /// Layer 0's input is not the embedding of the tokens.
    Embedding,
    /// A re-run layer is outside the tolerance.
    Layer(u32),
    /// A token does not follow from the final states and the sampling.
    Sampling(u32),
    /// The receipt names a model the verifier does not serve.
    UnknownModel,
    /// The receipt names, for its policy version, an adapter other than the
    /// one the followed trainer published as that version: the node claims
    /// work with weights nobody can audit (appended: earlier variants keep
    /// their bytes).
    Adapter,
}

/// An audit's result, as the verifier signs it.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct AuditBody {
    /// [`AUDIT_VERSION`].
    pub version: u8,
    /// The task.
    pub task_id: [u8; 32],
    /// Its batch.
    pub batch_id: u64,
    /// Its leaf index.
    pub leaf_index: u32,
    /// The serving node.
    pub node: [u8; 32],
    /// The auditing verifier (the signer).
    pub verifier: [u8; 32],
    /// Layers re-run.
    pub layers: Vec<u32>,
    /// Output steps whose sampling was re-checked.
    pub steps: Vec<u32>,
    /// The outcome.
    pub outcome: AuditOutcome,
    /// blake3 over the re-run layers' work digests, in layer order: only
    /// someone who re-ran them can produce it.
    pub work_digest: [u8; 32],
    /// Largest relative deviation seen over the re-run layers.
    pub max_rel_dev: f32,
    /// CPU time the verifier spent, microseconds.
    pub cpu_micros: u64,
    /// When it finished, Unix milliseconds (verifier clock).
    pub finished_at_ms: u64,
}

/// A verifier-signed audit report.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct AuditReport {
    /// What is reported.
    pub body: AuditBody,
    /// The verifier's ed25519 signature over `AUDIT_DOMAIN || sha256(body)`.
    pub signature: [u8; 64],
}

impl AuditReport {
    /// Signs `body` with the verifier's key (which must be `body.verifier`).
    pub fn sign(verifier: &Keypair, body: AuditBody) -> Result<Self, WireError> {
        let key = SigningKey::from_bytes(verifier.secret_bytes());
        if key.verifying_key().to_bytes() != body.verifier {
            return Err(WireError::Invalid(
                "an audit report must be signed by its verifier".into(),
            ));
        }
        let signature = key.sign(&audit_signed_bytes(&body)).to_bytes();
        Ok(Self { body, signature })
    }

    /// Decodes a report from the network (size-limited) and checks its
    /// version and signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = crate::decode(bytes, MAX_AUDIT_REPORT_BYTES)?;
        if r.body.version != AUDIT_VERSION {
            return Err(WireError::Invalid(format!(
                "unknown audit report version {}",
                r.body.version
            )));
        }
        let key = VerifyingKey::from_bytes(&r.body.verifier)
            .map_err(|_| WireError::Invalid("verifier key is not a valid ed25519 point".into()))?;
        key.verify_strict(
            &audit_signed_bytes(&r.body),
            &ed25519_dalek::Signature::from_bytes(&r.signature),
        )
        .map_err(|_| {
            WireError::Invalid("audit report signature does not match its verifier".into())
        })?;
        Ok(r)
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode(self)
    }
}

fn audit_signed_bytes(body: &AuditBody) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(crate::encode(body)).into();
    [AUDIT_DOMAIN.as_slice(), digest.as_slice()].concat()
}

/// A committee member's signed verdict on a challenge: exactly the ed25519
/// signature the program's `resolve_challenge` checks through the precompile,
/// so any party holding a quorum of votes can submit the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VerdictVote {
    /// The challenge account.
    pub challenge: [u8; 32],
    /// Whether the accused cheated.
    pub upheld: bool,
    /// The voting verifier.
    pub voter: [u8; 32],
    /// Its signature over `strata_primitives::messages::verdict_message`.
    pub signature: [u8; 64],
}

impl VerdictVote {
    /// Signs a vote with the verifier's key.
    pub fn sign(verifier: &Keypair, challenge: [u8; 32], upheld: bool) -> Self {
        let key = SigningKey::from_bytes(verifier.secret_bytes());
        let message = Self::message(&challenge, upheld);
        Self {
            challenge,
            upheld,
            voter: key.verifying_key().to_bytes(),
            signature: key.sign(&message).to_bytes(),
        }
    }

    /// The bytes signed: the program's verdict message.
    pub fn message(challenge: &[u8; 32], upheld: bool) -> Vec<u8> {
        strata_chain::messages::verdict_message(
            strata_chain::PROGRAM_ID.as_array(),
            challenge,
            upheld,
        )
        .to_vec()
    }

    /// Decodes a vote from the network (size-limited) and checks its signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, WireError> {
        let v: Self = crate::decode(bytes, MAX_VOTE_BYTES)?;
        let key = VerifyingKey::from_bytes(&v.voter)
            .map_err(|_| WireError::Invalid("voter key is not a valid ed25519 point".into()))?;
        key.verify_strict(
            &Self::message(&v.challenge, v.upheld),
            &ed25519_dalek::Signature::from_bytes(&v.signature),
        )
        .map_err(|_| WireError::Invalid("vote signature does not match its voter".into()))?;
        Ok(v)
    }
}
