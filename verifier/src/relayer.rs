//! What the verifier reads from and sends to the relayer's HTTP API, and
//! the checks that make the relayer's answers safe to act on.
//!
//! The relayer is not trusted: a batch's receipt list counts only if its
//! leaves make the on-chain batch root ([`verify_batch`]), and a receipt
//! named by a challenge only if its proof leads to that root
//! ([`verify_challenged_receipt`]).

use std::time::Duration;

use strata_chain::accounts::{Batch, Challenge};
use strata_chain::merkle::{self, domains::Ledger, MerkleTree};
use strata_chain::pda;
use strata_wire::api::{AuditSubmission, BatchReceiptsView, ReceiptView};
use strata_wire::{parse_hex32, Receipt};

/// Longest one HTTP call to the relayer may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a relayer call or its answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    /// The relayer could not be reached, or failed on its side (5xx).
    #[error("relayer at {url} unavailable: {message}")]
    Unavailable {
        /// The URL called.
        url: String,
        /// What happened.
        message: String,
    },
    /// The relayer refused the request (4xx): retrying will not help.
    #[error("relayer at {url} refused ({status}): {message}")]
    Refused {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// The answer is not what the API promises (bad JSON, hex or receipt).
    #[error("malformed answer from the relayer: {0}")]
    Malformed(String),
    /// The answer is well-formed but disagrees with the chain.
    #[error("the relayer's answer disagrees with the chain: {0}")]
    Mismatch(String),
}

/// A receipt of a batch, checked against the on-chain root.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReceipt {
    /// Its leaf index.
    pub leaf_index: u32,
    /// The receipt (signature and voucher checked).
    pub receipt: Receipt,
    /// Its leaf.
    pub leaf: [u8; 32],
    /// Its Merkle proof against the batch root.
    pub proof: Vec<[u8; 32]>,
}

/// Decodes a batch's receipts and checks that they are exactly the leaves
/// of the on-chain `batch`: one per leaf index, in a tree whose root is the
/// batch's root. A relayer that leaves out, adds, reorders or alters a
/// receipt is refused. Only the raw receipts are read: the listing's other
/// fields (its root, task ids, nodes) are re-derived, never believed.
pub fn verify_batch(
    batch: &Batch,
    view: &BatchReceiptsView,
) -> Result<Vec<BatchReceipt>, RelayerError> {
    if view.batch_id != batch.id {
        return Err(RelayerError::Mismatch(format!(
            "asked for batch {}, got batch {}",
            batch.id, view.batch_id
        )));
    }
    if view.receipts.len() != batch.task_count as usize {
        return Err(RelayerError::Mismatch(format!(
            "batch {} has {} receipts on-chain, the relayer lists {}",
            batch.id,
            batch.task_count,
            view.receipts.len()
        )));
    }
    let mut receipts = Vec::with_capacity(view.receipts.len());
    for e in &view.receipts {
        let bytes = hex::decode(e.raw.trim()).map_err(|err| {
            RelayerError::Malformed(format!("receipt at leaf {}: {err}", e.leaf_index))
        })?;
        let receipt = Receipt::decode_verified(&bytes).map_err(|err| {
            RelayerError::Malformed(format!("receipt at leaf {}: {err}", e.leaf_index))
        })?;
        receipts.push((e.leaf_index, receipt));
    }
    receipts.sort_by_key(|(i, _)| *i);
    if receipts
        .iter()
        .enumerate()
        .any(|(at, (i, _))| *i as usize != at)
    {
        return Err(RelayerError::Mismatch(format!(
            "leaf indices of batch {} are not 0..{}",
            batch.id, batch.task_count
        )));
    }
    let leaves: Vec<[u8; 32]> = receipts.iter().map(|(_, r)| r.leaf()).collect();
    let tree = MerkleTree::<Ledger>::new(leaves);
    if tree.root() != batch.root {
        return Err(RelayerError::Mismatch(format!(
            "the receipts of batch {} do not make its on-chain root",
            batch.id
        )));
    }
    receipts
        .into_iter()
        .map(|(leaf_index, receipt)| {
            let proof = tree
                .proof(leaf_index as usize)
                .ok_or_else(|| RelayerError::Mismatch(format!("no proof for leaf {leaf_index}")))?;
            Ok(BatchReceipt {
                leaf_index,
                leaf: receipt.leaf(),
                receipt,
                proof,
            })
        })
        .collect()
}

/// The receipt a challenge accuses, as the relayer serves it: where it
/// sits and its proof, checked against the on-chain batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengedReceipt {
    /// The receipt (signature and voucher checked).
    pub receipt: Receipt,
    /// Its batch.
    pub batch_id: u64,
    /// Its Merkle proof against the batch root.
    pub proof: Vec<[u8; 32]>,
}

/// The batch id the relayer says holds a challenged receipt (read before
/// the batch itself is fetched from the chain).
pub fn claimed_batch_id(view: &ReceiptView) -> Result<u64, RelayerError> {
    view.batch
        .as_ref()
        .map(|b| b.batch_id)
        .ok_or_else(|| RelayerError::Mismatch("the receipt is in no batch".into()))
}

/// Checks that `view` is the receipt `challenge` accuses: same task and
/// node, at the challenge's leaf of the challenge's batch (`batch`, read
/// from the chain), with a proof leading to that batch's root.
pub fn verify_challenged_receipt(
    challenge: &Challenge,
    batch: &Batch,
    view: &ReceiptView,
) -> Result<ChallengedReceipt, RelayerError> {
    let bytes = hex::decode(view.raw.trim())
        .map_err(|e| RelayerError::Malformed(format!("receipt: {e}")))?;
    let receipt = Receipt::decode_verified(&bytes)
        .map_err(|e| RelayerError::Malformed(format!("receipt: {e}")))?;
    let inclusion = view
        .batch
        .as_ref()
        .ok_or_else(|| RelayerError::Mismatch("the receipt is in no batch".into()))?;
    if receipt.body.task_id != challenge.task_id || receipt.body.node != challenge.node.to_bytes() {
        return Err(RelayerError::Mismatch(
            "the receipt is not for the challenged task and node".into(),
        ));
    }
    if inclusion.batch_id != batch.id
        || pda::batch(inclusion.batch_id) != challenge.batch
        || inclusion.leaf_index != challenge.leaf_index
    {
        return Err(RelayerError::Mismatch(
            "the receipt is not at the challenged leaf".into(),
        ));
    }
    let proof = inclusion
        .proof
        .iter()
        .map(|h| parse_hex32(h).map_err(|e| RelayerError::Malformed(format!("proof: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify::<Ledger>(
        &batch.root,
        receipt.leaf(),
        u64::from(challenge.leaf_index),
        u64::from(batch.task_count),
        &proof,
    )
    .map_err(|e| RelayerError::Mismatch(format!("the receipt's proof: {e}")))?;
    Ok(ChallengedReceipt {
        receipt,
        batch_id: inclusion.batch_id,
        proof,
    })
}

/// A client of one relayer's HTTP API.
#[derive(Debug, Clone)]
pub struct RelayerClient {
    http: reqwest::Client,
    base: String,
}

impl RelayerClient {
    /// A client of the relayer at `base` (e.g. `http://127.0.0.1:8788`).
    pub fn new(base: &str) -> Result<Self, RelayerError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RelayerError::Malformed(format!(
                "relayer URL {base:?} is not an http(s) URL"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| RelayerError::Unavailable {
                url: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { http, base })
    }

    /// The relayer's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every receipt of batch `id` (unchecked: see [`verify_batch`]).
    pub async fn batch_receipts(&self, id: u64) -> Result<BatchReceiptsView, RelayerError> {
        let url = format!("{}/v1/batches/{id}/receipts", self.base);
        self.get_json(&url).await
    }

    /// The receipt of `task_id` with its batch inclusion; `None` if the
    /// relayer does not know it (unchecked: see [`verify_challenged_receipt`]).
    pub async fn receipt(&self, task_id: &[u8; 32]) -> Result<Option<ReceiptView>, RelayerError> {
        let url = format!("{}/v1/receipts/{}", self.base, hex::encode(task_id));
        match self.get_json(&url).await {
            Ok(v) => Ok(Some(v)),
            Err(RelayerError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hands a signed audit report (`AuditReport::encode`) to the relayer
    /// (`POST /v1/audits`).
    pub async fn post_audit(&self, report: &[u8]) -> Result<(), RelayerError> {
        let url = format!("{}/v1/audits", self.base);
        let body = AuditSubmission {
            raw: hex::encode(report),
        };
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable(&url, e))?;
        check_status(&url, response).await.map(|_| ())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, RelayerError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(url, e))?;
        let response = check_status(url, response).await?;
        let bytes = response.bytes().await.map_err(|e| unavailable(url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| RelayerError::Malformed(format!("{url}: {e}")))
    }
}

fn unavailable(url: &str, e: reqwest::Error) -> RelayerError {
    RelayerError::Unavailable {
        url: url.to_string(),
        message: e.to_string(),
    }
}

async fn check_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, RelayerError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // The relayer answers errors as `{"error": "..."}`; show what it said.
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<strata_wire::api::ErrorResponse>(&text)
        .map(|e| e.error)
        .unwrap_or_else(|_| text.chars().take(200).collect());
    if status.is_client_error() {
        Err(RelayerError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        })
    } else {
        Err(RelayerError::Unavailable {
            url: url.to_string(),
            message: format!("{status}: {message}"),
        })
    }
}
