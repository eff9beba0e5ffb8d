//! The relayer's HTTP API as JSON types, shared by the relayer (which
//! serves them) and the `strata` CLI (which reads them). Every hash, key and
//! signature is a lowercase hex string, except operators and clients in the
//! rewards and settlement views, which are base58 like every Solana key the
//! CLI prints; amounts are integers of token base units.

use serde::{Deserialize, Serialize};

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
