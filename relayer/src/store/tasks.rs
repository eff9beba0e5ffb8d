//! The pipelined-task index: every hop receipt (version 3) filed under the
//! task it is a part of (`hop.task_id`), so that `/v1/tasks/{id}` lists a
//! task's hops by segment and route order.
//!
//! A hop receipt's own id is derived from (task, segment, index), so the
//! receipt table holds one receipt per hop: the first one stored. Another
//! validly signed receipt for the same hop (a node claiming to be hop 0 of a
//! task it never served, or an honest hop whose id a squatter took first)
//! cannot take that place, but it is not dropped either: it is kept here as
//! a conflicting claim, so that the index shows every node claiming a hop
//! instead of letting whoever came first hide the others.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use strata_wire::{HopPart, Receipt, MAX_RECEIPT_BYTES};

use super::{decode, Placement, Store, StoreError, StoredReceipt, RECEIPTS, RECEIPT_BATCH};

/// task ‖ segment ‖ index ‖ kind ‖ node ‖ digest → empty for the stored
/// receipt (kind 0: its bytes are in `receipts` under its hop id), the raw
/// receipt for a conflicting claim (kind 1). Kind 0 sorts first, so a hop's
/// stored receipt comes before the claims against it.
pub(super) const TASK_HOPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("task_hops");

const KIND_STORED: u8 = 0;
const KIND_CLAIM: u8 = 1;
const KEY_LEN: usize = 32 + 1 + 1 + 1 + 32 + 32;

/// Most conflicting claims kept per hop (beyond its stored receipt): enough
/// to show that a hop is contested, bounded so that one hop's entries stay
/// cheap to list.
pub const MAX_HOP_CLAIMS: usize = 7;
/// Most index entries one task's listing reads: a real task has a few
/// segments of a few hops; beyond this the listing says it is truncated.
pub const MAX_TASK_ENTRIES: usize = 2048;

/// How a receipt stands in its hop's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopClaim {
    /// The receipt stored (and batched) under the hop's id.
    Stored,
    /// A valid receipt for a hop whose id already held a different one: kept
    /// to be shown, never batched or paid.
    Conflicting,
}

/// One entry of a task's hop listing.
#[derive(Debug, Clone)]
pub struct HopEntry {
    /// Stored or conflicting.
    pub claim: HopClaim,
    /// The receipt (verified when it arrived).
    pub receipt: Receipt,
    /// Its exact bytes.
    pub raw: Vec<u8>,
    /// When stored, its arrival time (Unix ms) and place in a batch.
    pub stored: Option<(u64, Option<Placement>)>,
}

impl HopEntry {
    /// The receipt's hop part (every indexed receipt has one).
    pub fn hop(&self) -> Result<&HopPart, StoreError> {
        self.receipt
            .body
            .hop
            .as_ref()
            .ok_or(StoreError::Corrupt("task_hops"))
    }
}

/// A task's hop listing.
#[derive(Debug, Clone, Default)]
pub struct TaskHops {
    /// Entries in (segment, index, stored first) order.
    pub entries: Vec<HopEntry>,
    /// Whether more entries exist than [`MAX_TASK_ENTRIES`].
    pub truncated: bool,
}

fn hop_prefix(hop: &HopPart) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_LEN);
    k.extend_from_slice(&hop.task_id);
    k.extend_from_slice(&[hop.segment, hop.index]);
    k
}

fn key(hop: &HopPart, kind: u8, receipt: &Receipt) -> Vec<u8> {
    let mut k = hop_prefix(hop);
    k.push(kind);
    k.extend_from_slice(&receipt.body.node);
    k.extend_from_slice(&receipt.body.digest());
    k
}

/// Everything from `prefix` up to the end of its range.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.resize(KEY_LEN, 0xff);
    end
}

/// Indexes a hop receipt just stored under its own id (inside the caller's
/// write transaction).
pub(super) fn index_stored(tx: &WriteTransaction, receipt: &Receipt) -> Result<(), StoreError> {
    if let Some(hop) = &receipt.body.hop {
        tx.open_table(TASK_HOPS)?
            .insert(key(hop, KIND_STORED, receipt).as_slice(), [].as_slice())?;
    }
    Ok(())
}

/// Records a hop receipt refused because its id holds a different receipt,
/// unless the hop already has [`MAX_HOP_CLAIMS`] other claims. Returns
/// whether it is listed (newly or already).
pub(super) fn record_claim(
    tx: &WriteTransaction,
    receipt: &Receipt,
    raw: &[u8],
) -> Result<bool, StoreError> {
    let Some(hop) = &receipt.body.hop else {
        return Ok(false);
    };
    let mut table = tx.open_table(TASK_HOPS)?;
    let k = key(hop, KIND_CLAIM, receipt);
    if table.get(k.as_slice())?.is_some() {
        return Ok(true);
    }
    let mut start = hop_prefix(hop);
    start.push(KIND_CLAIM);
    let end = prefix_end(&start);
    let claims = table.range(start.as_slice()..=end.as_slice())?.count();
    if claims >= MAX_HOP_CLAIMS {
        return Ok(false);
    }
    table.insert(k.as_slice(), raw)?;
    Ok(true)
}

impl Store {
    /// Every hop receipt filed under pipelined task `task_id`, stored ones
    /// and conflicting claims, in (segment, index) order.
    pub fn task_hops(&self, task_id: &[u8; 32]) -> Result<TaskHops, StoreError> {
        let tx = self.db.begin_read()?;
        let index = tx.open_table(TASK_HOPS)?;
        let receipts = tx.open_table(RECEIPTS)?;
        let places = tx.open_table(RECEIPT_BATCH)?;
        let end = prefix_end(task_id);
        let mut out = TaskHops::default();
        for entry in index.range(task_id.as_slice()..=end.as_slice())? {
            if out.entries.len() == MAX_TASK_ENTRIES {
                out.truncated = true;
                break;
            }
            let (k, v) = entry?;
            let k = k.value();
            if k.len() != KEY_LEN {
                return Err(StoreError::Corrupt("task_hops"));
            }
            let entry = match k[34] {
                KIND_STORED => {
                    let (segment, index) = (k[32], k[33]);
                    let node: [u8; 32] = k[35..67]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("task_hops"))?;
                    let id = strata_wire::hop_task_id(task_id, segment, index, &node);
                    let g = receipts
                        .get(id.as_slice())?
                        .ok_or(StoreError::Corrupt("task_hops"))?;
                    let stored: StoredReceipt = decode(g.value(), "receipts")?;
                    let place = places.get(id.as_slice())?.map(|g| g.value());
                    HopEntry {
                        claim: HopClaim::Stored,
                        receipt: stored.receipt()?,
                        stored: Some((stored.received_ms, place)),
                        raw: stored.raw,
                    }
                }
                KIND_CLAIM => {
                    let raw = v.value().to_vec();
                    HopEntry {
                        claim: HopClaim::Conflicting,
                        receipt: strata_wire::decode(&raw, MAX_RECEIPT_BYTES)
                            .map_err(|_| StoreError::Corrupt("task_hops"))?,
                        stored: None,
                        raw,
                    }
                }
                _ => return Err(StoreError::Corrupt("task_hops")),
            };
            entry.hop()?;
            out.entries.push(entry);
        }
        Ok(out)
    }
}
