//! Task receipts: what a node signs after serving a task, what the relayer
//! batches into an on-chain Merkle root, and what an auditor checks.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use strata_chain::merkle::domains::Ledger;
use strata_chain::messages::receipt_signed_bytes;
use strata_chain::Keypair;

use crate::{Sampling, Voucher, WireError};

/// Version of a whole-model [`ReceiptBody`]. Version 2 added the sampling
/// settings (verifiers re-sample committed steps).
pub const RECEIPT_VERSION: u8 = 2;
/// Version of a hop's receipt: version 2's fields followed by a [`HopPart`]
/// (a version-2 receipt's bytes are unchanged by its existence).
pub const HOP_RECEIPT_VERSION: u8 = 3;
/// Version of a whole-model receipt of a task served with a policy version
/// (a LoRA adapter over the base model): version 2's fields followed by an
/// [`AdapterPart`] (version-2 and version-3 bytes are unchanged by its
/// existence). The on-chain program only sees the body's digest, so it
/// takes these as it takes every other version.
pub const ADAPTED_RECEIPT_VERSION: u8 = 4;
/// Largest encoded receipt accepted from the network (the fixed fields take 385 bytes).
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// Everything a receipt attests.
///
/// Encoded as Borsh field by field, with `hop` present exactly when
/// `version` is [`HOP_RECEIPT_VERSION`] and `adapter` exactly when it is
/// [`ADAPTED_RECEIPT_VERSION`] (written by hand below, so that a version-2
/// receipt keeps its bytes and its digest).
#[derive(Debug, Clone, PartialEq)]
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
    /// For a hop of a pipelined task ([`HOP_RECEIPT_VERSION`]): which part of
    /// the task this node ran. `None` for a whole-model receipt.
    pub hop: Option<HopPart>,
    /// For a task served with a policy version
    /// ([`ADAPTED_RECEIPT_VERSION`]): which adapter ran. `None` for the
    /// base model.
    pub adapter: Option<AdapterPart>,
}

/// The policy a task was served with, as its receipt attests it: the
/// version the task asked for and the SHA-256 of the adapter's canonical
/// bytes (`strata_engine::Adapter::digest`, which is also the adapter
/// file's SHA-256 in the trainer's announcement). An auditor re-runs the
/// audited layers with exactly that adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AdapterPart {
    /// The policy version (at least 1; 0 is the base model, which has no
    /// adapter part).
    pub policy_version: u64,
    /// SHA-256 of the adapter's canonical bytes.
    pub adapter: [u8; 32],
}

/// The part of a pipelined task one hop ran, as its receipt attests it.
///
/// The receipt's own `task_id` is [`hop_task_id`] of (`task_id`, `segment`,
/// `index`, node): every hop's receipt is its own leaf, keyed apart from the
/// others', and `task_id` here names the task they share. The node is in the
/// id so that nobody can file a receipt under an honest hop's id first and
/// keep that hop's own receipt from being stored and paid. The hops of one
/// segment link up: hop k+1's `input_states` is hop k's `output_states`,
/// and `prev`/`next` name the neighbours. Only the first hop saw the prompt
/// and only the last sampled, so the body's `input_hash` is the first hop's
/// and `output_hash` the last hop's (zeros elsewhere), and its token counts
/// are the task's as that hop knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HopPart {
    /// The pipelined task.
    pub task_id: [u8; 32],
    /// Route segment (0, then one more per failover).
    pub segment: u8,
    /// This hop's place in the route.
    pub index: u8,
    /// Hops in the route.
    pub count: u8,
    /// First block run.
    pub start: u16,
    /// One past the last block run.
    pub end: u16,
    /// The model's block count.
    pub n_layers: u16,
    /// Positions (rows) this hop ran.
    pub positions: u32,
    /// Cells billed (tokens × layers, `strata_pipeline::billing`): the
    /// price is the node's per-token price × `cells / n_layers`.
    pub cells: u64,
    /// Tokens sampled on earlier segments (the last hop's sampler started there).
    pub sample_offset: u32,
    /// Hash of the states it received (its first commitment entry).
    pub input_states: [u8; 32],
    /// Hash of the states it handed on (its exit commitment entry).
    pub output_states: [u8; 32],
    /// The previous hop's node (zeros for the first hop).
    pub prev: [u8; 32],
    /// The next hop's node (zeros for the last hop).
    pub next: [u8; 32],
}

/// The receipt id of hop `index` of segment `segment` of task `task_id`,
/// served by `node`.
pub fn hop_task_id(task_id: &[u8; 32], segment: u8, index: u8, node: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"strata-hop-task-v1");
    h.update(task_id);
    h.update([segment, index]);
    h.update(node);
    h.finalize().into()
}

impl HopPart {
    /// Checks what a hop part can prove by itself, given its receipt's id.
    fn check(&self, receipt_task_id: &[u8; 32], node: &[u8; 32]) -> Result<(), WireError> {
        let bad = |why: &str| Err(WireError::Invalid(format!("hop receipt: {why}")));
        if hop_task_id(&self.task_id, self.segment, self.index, node) != *receipt_task_id {
            return bad("its id is not the hop's id of its task");
        }
        if self.count == 0 || self.index >= self.count {
            return bad("its index is outside the route");
        }
        if self.start >= self.end || self.end > self.n_layers {
            return bad("its blocks are empty or outside the model");
        }
        if (self.index == 0) != (self.start == 0)
            || (self.index + 1 == self.count) != (self.end == self.n_layers)
        {
            return bad("its blocks do not fit its place in the route");
        }
        let most = (u64::from(self.positions) + 1) * u64::from(self.end - self.start);
        if self.cells > most {
            return bad("it bills more cells than it ran");
        }
        Ok(())
    }
}

impl BorshSerialize for ReceiptBody {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        // A body whose `hop` disagrees with its version encodes to bytes
        // that do not decode; `Receipt::sign` refuses to sign one.
        self.version.serialize(w)?;
        self.task_id.serialize(w)?;
        self.node.serialize(w)?;
        self.model_hash.serialize(w)?;
        self.input_hash.serialize(w)?;
        self.output_hash.serialize(w)?;
        self.prompt_tokens.serialize(w)?;
        self.completion_tokens.serialize(w)?;
        self.commitment_root.serialize(w)?;
        self.sampling.serialize(w)?;
        self.price.serialize(w)?;
        self.voucher.serialize(w)?;
        self.finished_at_ms.serialize(w)?;
        if let Some(hop) = &self.hop {
            hop.serialize(w)?;
        }
        if let Some(adapter) = &self.adapter {
            adapter.serialize(w)?;
        }
        Ok(())
    }
}

impl BorshDeserialize for ReceiptBody {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let version = u8::deserialize_reader(r)?;
        Ok(Self {
            version,
            task_id: BorshDeserialize::deserialize_reader(r)?,
            node: BorshDeserialize::deserialize_reader(r)?,
            model_hash: BorshDeserialize::deserialize_reader(r)?,
            input_hash: BorshDeserialize::deserialize_reader(r)?,
            output_hash: BorshDeserialize::deserialize_reader(r)?,
            prompt_tokens: BorshDeserialize::deserialize_reader(r)?,
            completion_tokens: BorshDeserialize::deserialize_reader(r)?,
            commitment_root: BorshDeserialize::deserialize_reader(r)?,
            sampling: BorshDeserialize::deserialize_reader(r)?,
            price: BorshDeserialize::deserialize_reader(r)?,
            voucher: BorshDeserialize::deserialize_reader(r)?,
            finished_at_ms: BorshDeserialize::deserialize_reader(r)?,
            hop: if version == HOP_RECEIPT_VERSION {
                Some(HopPart::deserialize_reader(r)?)
            } else {
                None
            },
            adapter: if version == ADAPTED_RECEIPT_VERSION {
                Some(AdapterPart::deserialize_reader(r)?)
            } else {
                None
            },
        })
    }
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

    /// The task's work units: tokens billed (prompt plus completion) for a
    /// whole-model receipt, a hop's cells over the model's blocks (its share
    /// of whole-model tokens, rounded down) for a hop's.
    pub fn work_units(&self) -> u64 {
        match &self.hop {
            Some(hop) => hop.cells / u64::from(hop.n_layers.max(1)),
            None => u64::from(self.prompt_tokens) + u64::from(self.completion_tokens),
        }
    }
}

impl Receipt {
    /// Signs `body` with the node's key (which must be `body.node`).
    pub fn sign(node: &Keypair, body: ReceiptBody) -> Result<Self, WireError> {
        if (body.version == HOP_RECEIPT_VERSION) != body.hop.is_some() {
            return Err(WireError::Invalid(
                "a receipt carries a hop part exactly when its version is 3".into(),
            ));
        }
        if (body.version == ADAPTED_RECEIPT_VERSION) != body.adapter.is_some() {
            return Err(WireError::Invalid(
                "a receipt carries an adapter part exactly when its version is 4".into(),
            ));
        }
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
    /// node and covers at least this task's price, a hop part's own
    /// consistency (its id, its place in the route, its cells) and an
    /// adapter part's version (above 0).
    pub fn verify(&self) -> Result<(), WireError> {
        let b = &self.body;
        match (b.version, &b.hop, &b.adapter) {
            (RECEIPT_VERSION, None, None) => {}
            (HOP_RECEIPT_VERSION, Some(hop), None) => hop.check(&b.task_id, &b.node)?,
            (ADAPTED_RECEIPT_VERSION, None, Some(a)) => {
                if a.policy_version == 0 {
                    return Err(WireError::Invalid(
                        "an adapted receipt names policy version 0, the base model".into(),
                    ));
                }
            }
            _ => {
                return Err(WireError::Invalid(format!(
                    "unknown receipt version {}",
                    b.version
                )))
            }
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
