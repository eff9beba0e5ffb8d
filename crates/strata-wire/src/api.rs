//! The relayer's HTTP API as JSON types, shared by the relayer (which
//! serves them) and the `strata` CLI (which reads them). Every hash, key and
//! signature is a lowercase hex string, except operators and clients in the
//! rewards and settlement views, which are base58 like every Solana key the
//! CLI prints; amounts are integers of token base units.

use serde::{Deserialize, Serialize};

use crate::hex32;
use crate::receipt::Receipt;

/// Answer to `POST /v1/receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// The receipt's task id (hex).
    pub task_id: String,
    /// `stored` (new) or `duplicate` (the same bytes were already stored).
    pub status: String,
}

/// Every error answer: one readable line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What was wrong.
    pub error: String,
}

/// Where a receipt sits in an on-chain batch, with its Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInclusion {
    /// Batch id (the on-chain Batch account's seed).
    pub batch_id: u64,
    /// `planned` (root written locally, not yet confirmed on-chain) or `posted`.
    pub status: String,
    /// Index of the receipt's leaf.
    pub leaf_index: u32,
    /// Leaves in the batch.
    pub leaf_count: u32,
    /// Sibling hashes from the leaf up (hex).
    pub proof: Vec<String>,
    /// The batch's Merkle root (hex).
    pub root: String,
    /// Signature of the `post_batch` transaction (base58), when known.
    pub post_signature: Option<String>,
}

/// `GET /v1/receipts/{task_id}`: a stored receipt, every field readable, the
/// raw bytes to re-check it, and its batch inclusion once batched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptView {
    /// Task id (hex).
    pub task_id: String,
    /// Serving node (hex of its ed25519 key).
    pub node: String,
    /// Paying client (hex).
    pub client: String,
    /// Receipt version.
    pub version: u8,
    /// SHA-256 of the model file (hex).
    pub model_hash: String,
    /// Hash of the prompt tokens (hex).
    pub input_hash: String,
    /// Hash of the generated tokens (hex).
    pub output_hash: String,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Work units (prompt plus completion tokens).
    pub work_units: u64,
    /// Engine commitment root (hex).
    pub commitment_root: String,
    /// Price of the task (base units).
    pub price: u64,
    /// The voucher's cumulative amount (base units).
    pub voucher_cumulative: u64,
    /// The client's voucher signature (hex).
    pub voucher_signature: String,
    /// The node's receipt signature (hex).
    pub signature: String,
    /// When the task finished (Unix ms, node clock).
    pub finished_at_ms: u64,
    /// When the relayer stored it (Unix ms).
    pub received_at_ms: u64,
    /// SHA-256 of the receipt body (hex).
    pub digest: String,
    /// The on-chain receipt leaf (hex).
    pub leaf: String,
    /// The canonical encoded receipt (hex), for checking it independently.
    pub raw: String,
    /// Batch inclusion, once the receipt is in a batch.
    pub batch: Option<BatchInclusion>,
}

impl ReceiptView {
    /// The view of `r`, stored at `received_at_ms`, with its batch inclusion
    /// when batched. `raw` is `r.encode()`: receipts are canonical, so it is
    /// the exact bytes the relayer received.
    pub fn new(r: &Receipt, received_at_ms: u64, batch: Option<BatchInclusion>) -> Self {
        let b = &r.body;
        Self {
            task_id: hex32(&b.task_id),
            node: hex32(&b.node),
            client: hex32(&b.voucher.client),
            version: b.version,
            model_hash: hex32(&b.model_hash),
            input_hash: hex32(&b.input_hash),
            output_hash: hex32(&b.output_hash),
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
            work_units: b.work_units(),
            commitment_root: hex32(&b.commitment_root),
            price: b.price,
            voucher_cumulative: b.voucher.cumulative,
            voucher_signature: hex::encode(b.voucher.signature),
            signature: hex::encode(r.signature),
            finished_at_ms: b.finished_at_ms,
            received_at_ms,
            digest: hex32(&b.digest()),
            leaf: hex32(&r.leaf()),
            raw: hex::encode(r.encode()),
            batch,
        }
    }
}

/// `GET /v1/rewards/{operator}`: the operator's latest reward leaf and proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardProofView {
    /// Operator (base58).
    pub operator: String,
    /// Epoch whose on-chain root the proof is against.
    pub epoch: i64,
    /// Cumulative rewards since genesis (base units).
    pub cumulative: u64,
    /// Index of the operator's leaf.
    pub leaf_index: u32,
    /// Leaves in the epoch's tree.
    pub leaf_count: u32,
    /// Sibling hashes from the leaf up (hex).
    pub proof: Vec<String>,
    /// The epoch's root (hex).
    pub root: String,
}

/// One batch in `GET /v1/batches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
    /// Batch id.
    pub id: u64,
    /// `planned` or `posted`.
    pub status: String,
    /// Merkle root (hex).
    pub root: String,
    /// Receipts in the batch.
    pub task_count: u32,
    /// Work units the receipts add up to.
    pub work_units: u64,
    /// Reward epoch the batch was posted in.
    pub epoch: i64,
    /// `post_batch` signature (base58), when known.
    pub signature: Option<String>,
    /// When it was planned (Unix ms).
    pub planned_at_ms: u64,
    /// Task ids in leaf order (hex).
    pub task_ids: Vec<String>,
}

/// One voucher redemption in `GET /v1/settlements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementView {
    /// `redeem_vouchers` signature (base58); `None` when the relayer found the
    /// redemption on-chain after a crash without having recorded its transaction.
    pub signature: Option<String>,
    /// Paying client (base58).
    pub client: String,
    /// Paid node (base58).
    pub node: String,
    /// The channel's redeemed cumulative after this settlement.
    pub cumulative: u64,
    /// Moved out of escrow by this settlement (paid + fee).
    pub amount: u64,
    /// Paid to the node.
    pub paid: u64,
    /// Protocol fee (to the reward pool).
    pub fee: u64,
    /// When recorded (Unix ms).
    pub at_ms: u64,
}

/// One operator's line in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardLeafView {
    /// Operator (base58).
    pub operator: String,
    /// Cumulative rewards since genesis.
    pub cumulative: u64,
}

/// One reward epoch in `GET /v1/epochs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochView {
    /// Epoch number.
    pub epoch: i64,
    /// `planned` or `published`.
    pub status: String,
    /// Root (hex).
    pub root: String,
    /// What claims against this root may pay in total.
    pub declared: u64,
    /// `publish_rewards` signature (base58), when known.
    pub signature: Option<String>,
    /// Leaves, sorted by operator.
    pub leaves: Vec<RewardLeafView>,
}

/// Tasks received in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteBucket {
    /// Start of the minute (Unix ms).
    pub minute_ms: u64,
    /// Receipts received in it.
    pub tasks: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// Receipts stored.
    pub receipts: u64,
    /// Receipts in a posted batch.
    pub batched: u64,
    /// Batches posted.
    pub batches: u64,
    /// Voucher redemptions recorded.
    pub settlements: u64,
    /// Tokens paid to nodes by those redemptions.
    pub settled_paid: u64,
    /// Protocol fees taken by those redemptions.
    pub settled_fee: u64,
    /// Reward epochs published.
    pub epochs: u64,
    /// Receipts per minute over the last hour, oldest first.
    pub tasks_per_minute: Vec<MinuteBucket>,
}

/// One receipt in `GET /v1/receipts?limit=N` (newest first): enough to list
/// it; `GET /v1/receipts/{task_id}` has the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptSummaryView {
    /// Task id (hex).
    pub task_id: String,
    /// Serving node (base58).
    pub node: String,
    /// Paying client (base58).
    pub client: String,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Price of the task (base units).
    pub price: u64,
    /// When the relayer stored it (Unix ms).
    pub received_at_ms: u64,
    /// The batch it is in, once batched.
    pub batch_id: Option<u64>,
}

/// One node in `GET /v1/nodes`: its on-chain record (when registered), what it
/// claimed, and what the relayer saw it serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Operator key (base58).
    pub operator: String,
    /// Whether a Node account exists on-chain for it.
    pub registered: bool,
    /// Role names: `compute`, `verifier`.
    pub roles: Vec<String>,
    /// Bonded stake (base units).
    pub stake: u64,
    /// Stake waiting out its unbonding period (base units).
    pub unbonding: u64,
    /// When the unbonding stake may leave (Unix seconds; 0 if none).
    pub unbonding_ends: i64,
    /// Everything ever slashed from it (base units).
    pub slashed_total: u64,
    /// Declared memory for weights and KV cache, MiB.
    pub memory_mb: u32,
    /// Declared decode throughput as stored on-chain: tokens per second × 100.
    pub compute_score: u32,
    /// Declared decode throughput, tokens per second (the on-chain score / 100).
    pub tokens_per_second: f64,
    /// Declared bandwidth, Mbit/s.
    pub bandwidth_mbps: u32,
    /// Where peers dial it.
    pub multiaddrs: Vec<String>,
    /// Rewards claimed so far, from its ClaimRecord (base units).
    pub claimed: u64,
    /// Latest epoch it claimed against (0 if never).
    pub last_claim_epoch: i64,
    /// Receipts the relayer holds for it.
    pub tasks: u64,
    /// Work units of those receipts.
    pub work_units: u64,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesView {
    /// Registered nodes and every node seen in a receipt, by stake (largest first).
    pub nodes: Vec<NodeView>,
    /// When the chain was read (Unix ms); answers are cached for about two seconds.
    pub read_at_ms: u64,
    /// Why the chain could not be read, if it could not (the list then holds
    /// only what the relayer saw, with zero stake).
    pub chain_error: Option<String>,
}

/// `GET /v1/config`: where the relayer's chain is, so that a page or an
/// auditor can read the chain itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The Solana JSON-RPC URL the relayer uses.
    pub rpc_url: String,
    /// The Strata program id (base58).
    pub program_id: String,
    /// The token mint (base58), when the chain's config could be read.
    pub mint: Option<String>,
    /// Decimals of the token: amounts are base units, one token is 10^decimals.
    pub token_decimals: u8,
    /// The relayer's key (base58).
    pub relayer: String,
    /// Milliseconds between batching and redemption rounds.
    pub batch_interval_ms: u64,
    /// Milliseconds between reward-epoch checks.
    pub reward_interval_ms: u64,
}

/// One receipt of `GET /v1/batches/{id}/receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceiptView {
    /// Index of its leaf in the batch.
    pub leaf_index: u32,
    /// Task id (hex).
    pub task_id: String,
    /// Serving node (base58).
    pub node: String,
    /// The canonical encoded receipt (hex of `Receipt::encode`).
    pub raw: String,
}

/// `GET /v1/batches/{id}/receipts`: every receipt of a batch in leaf order,
/// so that a verifier can recompute the root and check it against the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceiptsView {
    /// Batch id.
    pub batch_id: u64,
    /// `planned` or `posted`.
    pub status: String,
    /// The Merkle root the relayer computed over the receipts (hex).
    pub root: String,
    /// The receipts, in leaf order.
    pub receipts: Vec<BatchReceiptView>,
}

/// Body of `POST /v1/audits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSubmission {
    /// Hex of the verifier-signed `AuditReport::encode`.
    pub raw: String,
}

/// Answer to `POST /v1/audits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAccepted {
    /// The audited task (hex).
    pub task_id: String,
    /// The reporting verifier (base58).
    pub verifier: String,
    /// `stored` (new) or `duplicate` (the same report was already stored).
    pub status: String,
    /// Why the verifier may report: `assigned` (the audit rules name it) or
    /// `committee` (it sits on the committee of a challenge against the receipt).
    pub role: String,
    /// Whether the report is flagged (see [`AuditView::flag`]).
    pub flagged: bool,
}

/// One stored audit report in `GET /v1/audits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    /// The audited task (hex).
    pub task_id: String,
    /// Batch of its receipt.
    pub batch_id: u64,
    /// Leaf index of its receipt.
    pub leaf_index: u32,
    /// The serving node (base58).
    pub node: String,
    /// The reporting verifier (base58).
    pub verifier: String,
    /// `assigned` or `committee`.
    pub role: String,
    /// `passed` or `failed`.
    pub outcome: String,
    /// The failed check, when failed: `withheld`, `opening`, `tokens`,
    /// `embedding`, `layer N`, `sampling N` or `unknown model`.
    pub check: Option<String>,
    /// What the verifier saw, when failed.
    pub detail: Option<String>,
    /// Layers re-run.
    pub layers: Vec<u32>,
    /// Output steps whose sampling was re-checked.
    pub steps: Vec<u32>,
    /// The verifier's work digest (hex).
    pub work_digest: String,
    /// Largest relative deviation seen over the re-run layers.
    pub max_rel_dev: f32,
    /// CPU time the verifier spent, microseconds.
    pub cpu_micros: u64,
    /// When the verifier finished (Unix ms, verifier clock).
    pub finished_at_ms: u64,
    /// When the relayer stored it (Unix ms).
    pub received_at_ms: u64,
    /// Work units of the audited task.
    pub work_units: u64,
    /// Whether the report is flagged and earns nothing.
    pub flagged: bool,
    /// Why it is flagged (e.g. the two assigned verifiers' work digests disagree).
    pub flag: Option<String>,
    /// The signed report (hex of `AuditReport::encode`), to check independently.
    pub raw: String,
}

/// One challenge in `GET /v1/challenges`, as the relayer indexed it from the
/// chain (closed accounts keep what was last seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeView {
    /// The challenge account (base58).
    pub address: String,
    /// The accused node (base58).
    pub accused: String,
    /// Who opened it (base58).
    pub challenger: String,
    /// The challenged task (hex).
    pub task_id: String,
    /// Its batch id, when known.
    pub batch_id: Option<u64>,
    /// Leaf index of the receipt in the batch.
    pub leaf_index: u32,
    /// `open`, `upheld`, `rejected` or `expired`.
    pub status: String,
    /// Bond locked by the challenger.
    pub bond: u64,
    /// When it opened (Unix seconds, chain clock).
    pub opened_at: i64,
    /// Verdicts are accepted until then (Unix seconds).
    pub deadline: i64,
    /// Whether the committee seed is drawn.
    pub seed_drawn: bool,
    /// Members of the committee whose votes count (base58).
    pub committee: Vec<String>,
    /// Members whose signatures made the verdict (base58).
    pub voters: Vec<String>,
    /// Slashed from the accused (base units).
    pub slashed: u64,
    /// Paid to the challenger: bond back plus its share (base units).
    pub to_challenger: u64,
    /// The resolving or expiring transaction (base58), when found.
    pub signature: Option<String>,
}
