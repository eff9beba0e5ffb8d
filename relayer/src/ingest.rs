//! Validating and storing receipts, whichever way they arrive (HTTP, gossip,
//! p2p request). A receipt is acknowledged only after it is committed.

use std::sync::Arc;

use strata_wire::{hex32, Receipt, WireError};

use crate::now_ms;
use crate::store::{InsertOutcome, Store, StoreError};

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Oversized, malformed, or failing a signature or consistency check.
    #[error("invalid receipt: {0}")]
    Invalid(#[from] WireError),
    /// A different receipt with this task id is already stored.
    #[error("task {0} already has a different receipt")]
    ConflictingTask(String),
    /// A different receipt holds this hop receipt's id (hop `index` of
    /// segment `segment` of `task`); this one is listed with the task's hops
    /// as a conflicting claim when `listed`.
    #[error("hop {index} of segment {segment} of task {task} already has a different receipt; this one is {}", claim_fate(.listed))]
    ConflictingHop {
        /// The pipelined task (hex).
        task: String,
        /// Route segment.
        segment: u8,
        /// Place in the route.
        index: u8,
        /// Whether it is listed with the task's hops.
        listed: bool,
    },
    /// The voucher was already attached to another task.
    #[error(
        "replayed voucher: this voucher (cumulative {cumulative}) already paid for task {other}"
    )]
    ReplayedVoucher {
        /// The voucher's cumulative amount.
        cumulative: u64,
        /// The task it came with first.
        other: String,
    },
    /// The receipt claims more work units than the program accepts per
    /// receipt; a batch holding it would be refused on-chain.
    #[error("receipt claims {0} work units, more than {max} per task", max = strata_chain::limits::MAX_WORK_UNITS_PER_TASK)]
    TooMuchWork(u64),
    /// The store failed; the receipt was not stored.
    #[error("could not store the receipt: {0}")]
    Store(#[from] StoreError),
}

fn claim_fate(listed: &bool) -> &'static str {
    if *listed {
        "listed as a conflicting claim with the task's hops (GET /v1/tasks/TASK)"
    } else {
        "not kept: the hop already has the most conflicting claims listed"
    }
}

impl IngestError {
    /// Whether the sender is at fault (as opposed to the relayer).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, IngestError::Store(_))
    }
}

/// What happened to an accepted receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Newly stored.
    Stored,
    /// Already stored, byte for byte.
    Duplicate,
}

/// Decodes, verifies and durably stores one encoded receipt.
pub async fn ingest(
    store: &Arc<Store>,
    bytes: Vec<u8>,
) -> Result<(Receipt, Accepted), IngestError> {
    let receipt = Receipt::decode_verified(&bytes)?;
    let work = receipt.body.work_units();
    if work > strata_chain::limits::MAX_WORK_UNITS_PER_TASK {
        return Err(IngestError::TooMuchWork(work));
    }
    let store = Arc::clone(store);
    // redb commits fsync: keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let outcome = store.insert_receipt(&receipt, &bytes, now_ms())?;
        let accepted = match outcome {
            InsertOutcome::Stored => Accepted::Stored,
            InsertOutcome::Duplicate => Accepted::Duplicate,
            InsertOutcome::ConflictingTask => {
                return Err(IngestError::ConflictingTask(hex32(&receipt.body.task_id)))
            }
            InsertOutcome::ConflictingHop(listed) => {
                let hop = receipt.body.hop.as_ref();
                return Err(IngestError::ConflictingHop {
                    task: hop.map(|h| hex32(&h.task_id)).unwrap_or_default(),
                    segment: hop.map_or(0, |h| h.segment),
                    index: hop.map_or(0, |h| h.index),
                    listed,
                });
            }
            InsertOutcome::ReplayedVoucher(other) => {
                return Err(IngestError::ReplayedVoucher {
                    cumulative: receipt.body.voucher.cumulative,
                    other: hex32(&other),
                })
            }
        };
        // A pipelined task's hops log under the task, not their hop ids.
        let task = receipt
            .body
            .hop
            .as_ref()
            .map_or(receipt.body.task_id, |h| h.task_id);
        strata_service::task_span(&task).in_scope(|| {
            tracing::debug!(
                node = %hex32(&receipt.body.node),
                ?accepted,
                "receipt stored"
            )
        });
        Ok((receipt, accepted))
    })
    .await
    .map_err(|e| {
        IngestError::Store(StoreError::Corrupt(if e.is_panic() {
            "panic while storing"
        } else {
            "store task cancelled"
        }))
    })?
}
