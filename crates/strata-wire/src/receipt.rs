//! Task receipts: what a node signs after serving a task, what the relayer
//! batches into an on-chain Merkle root, and what an auditor checks.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use strata_chain::merkle::domains::Ledger;
use strata_chain::messages::receipt_signed_bytes;
use strata_chain::Keypair;

use crate::{Sampling, Voucher, WireError};

/// Version of [`ReceiptBody`] this code writes and accepts. Version 2 added
/// the sampling settings (verifiers re-sample committed steps).
pub const RECEIPT_VERSION: u8 = 2;
/// Largest encoded receipt accepted from the network (the fixed fields take 385 bytes).
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// Everything a receipt attests.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptBody {
    /// [`RECEIPT_VERSION`].
    pub version: u8,
    /// Unique id of the task (chosen by the gateway).
    pub task_id: [u8; 32],
    /// The serving node (signer of the receipt).
    pub node: [u8; 32],
    /// SHA-256 of the model file that ran.
    pub model_hash: [u8; 32],
    /// [`tokens_hash`] of the prompt token ids.
    pub input_hash: [u8; 32],
    /// [`tokens_hash`] of the generated token ids.
    pub output_hash: [u8; 32],
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Root of the engine's per-layer activation commitments.
    pub commitment_root: [u8; 32],
    /// How the output tokens were sampled (with the seed).
    pub sampling: Sampling,
    /// What this task cost, in token base units.
    pub price: u64,
    /// The client's voucher that pays for it (its cumulative includes `price`).
    pub voucher: Voucher,
    /// When the task finished, Unix milliseconds (node clock).
    pub finished_at_ms: u64,
}

/// A node-signed receipt.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    /// What is attested.
    pub body: ReceiptBody,
    /// The node's ed25519 signature over `RECEIPT_DOMAIN || digest`.
    pub signature: [u8; 64],
}

/// Hash of a token sequence as receipts record it.
pub fn tokens_hash(tokens: &[u32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"strata-tokens-v1");
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    h.finalize().into()
}

impl ReceiptBody {
    /// SHA-256 of the canonical encoding: the digest the node signs and the
    /// on-chain receipt leaf commits to.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(crate::encode(self)).into()
    }

    /// Tokens billed (prompt plus completion): the task's work units.
    pub fn work_units(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}

impl Receipt {
    /// Signs `body` with the node's key (which must be `body.node`).
    pub fn sign(node: &Keypair, body: ReceiptBody) -> Result<Self, WireError> {
        let key = SigningKey::from_bytes(node.secret_bytes());
        if key.verifying_key().to_bytes() != body.node {
            return Err(WireError::Invalid(
                "receipt must be signed by its node".into(),
            ));
        }
        let signature = key.sign(&receipt_signed_bytes(&body.digest())).to_bytes();
        Ok(Self { body, signature })
    }

    /// Decodes a receipt from the network (size-limited) and validates it.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Receipt = crate::decode(bytes, MAX_RECEIPT_BYTES)?;
        r.verify()?;
        Ok(r)
    }

    /// Checks everything a receipt can prove by itself: version, the node's
    /// signature, the client's voucher signature, that the voucher pays this
    /// node and covers at least this task's price.
    pub fn verify(&self) -> Result<(), WireError> {
        let b = &self.body;
        if b.version != RECEIPT_VERSION {
            return Err(WireError::Invalid(format!(
                "unknown receipt version {}",
                b.version
            )));
        }
        self.verify_signature()?;
        b.voucher.verify()?;
        if b.voucher.node != b.node {
            return Err(WireError::Invalid("the voucher pays another node".into()));
        }
        if b.voucher.cumulative < b.price {
            return Err(WireError::Invalid(
                "the voucher does not cover the task's price".into(),
            ));
        }
        Ok(())
    }

    /// Checks only the node's signature over the body's digest.
    pub fn verify_signature(&self) -> Result<(), WireError> {
        let key = VerifyingKey::from_bytes(&self.body.node)
            .map_err(|_| WireError::Invalid("node key is not a valid ed25519 point".into()))?;
        key.verify_strict(
            &receipt_signed_bytes(&self.body.digest()),
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .map_err(|_| WireError::Invalid("receipt signature does not match its node".into()))
    }

    /// The leaf of the on-chain receipt tree for this receipt.
    pub fn leaf(&self) -> [u8; 32] {
        Ledger::receipt_leaf(&self.body.task_id, &self.body.node, &self.body.digest())
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::encode(self)
    }
}
