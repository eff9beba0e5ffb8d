//! `GET /v1/tasks/{task_id}`: a pipelined task's hop receipts, by segment
//! and route order, each with its batch inclusion as `/v1/receipts` gives
//! it, and whether consecutive hops link up (hop k's input states are hop
//! k−1's output states, each names the other as its neighbour, the blocks
//! continue). Hop receipts that conflict (two receipts claiming one hop) are
//! all listed; links are judged between the stored ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use strata_wire::api::BatchInclusion;
use strata_wire::{hex32, parse_hex32, HopPart, Receipt};

use crate::store::{HopClaim, HopEntry, Store, StoreError};

use super::{error, internal, receipt_view};

/// `GET /v1/tasks/{task_id}`: a pipelined task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The pipelined task (hex).
    pub task_id: String,
    /// Its route segments (one more per failover), in order.
    pub segments: Vec<SegmentView>,
    /// Whether the task has more hop receipts than one listing reads.
    pub truncated: bool,
}

/// One route segment of a pipelined task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    /// Segment number.
    pub segment: u8,
    /// Hops in its route (the largest count its receipts state).
    pub count: u8,
    /// `linked` (every hop's receipt is here and every link holds),
    /// `broken` (a link fails: see `broken_at`) or `incomplete` (a hop's
    /// receipt has not arrived; no link fails among those here).
    pub status: String,
    /// The first hop whose link to the hop before it fails.
    pub broken_at: Option<u8>,
    /// Hops of the route with no stored receipt.
    pub missing: Vec<u8>,
    /// Hops claimed by more than one receipt.
    pub conflicts: Vec<u8>,
    /// Every receipt of the segment, in route order (a hop's stored receipt
    /// first, then any conflicting claims).
    pub hops: Vec<HopView>,
    /// The links between consecutive hops: hop `to − 1` → hop `to`.
    pub links: Vec<LinkView>,
}

/// One hop's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopView {
    /// Place in the route.
    pub index: u8,
    /// Hops in the route, as this receipt states it.
    pub count: u8,
    /// `stored` (the receipt under this hop's id: batched, paid) or
    /// `conflicting` (a valid receipt for a hop whose id held another one
    /// first: listed only).
    pub claim: String,
    /// The receipt's own id (hex): `/v1/receipts/{receipt_id}` for a stored one.
    pub receipt_id: String,
    /// Serving node (hex of its ed25519 key).
    pub node: String,
    /// First block run.
    pub start: u16,
    /// One past the last block run.
    pub end: u16,
    /// The model's block count.
    pub n_layers: u16,
    /// Positions run.
    pub positions: u32,
    /// Cells billed.
    pub cells: u64,
    /// Price (base units).
    pub price: u64,
    /// Work units (cells over the model's blocks).
    pub work_units: u64,
    /// Hash of the states it received (hex).
    pub input_states: String,
    /// Hash of the states it handed on (hex).
    pub output_states: String,
    /// Previous hop's node (hex; zeros for the first).
    pub prev: String,
    /// Next hop's node (hex; zeros for the last).
    pub next: String,
    /// SHA-256 of the receipt body (hex).
    pub digest: String,
    /// The receipt's Merkle leaf (hex).
    pub leaf: String,
    /// The encoded receipt (hex), to check it independently.
    pub raw: String,
    /// When the relayer stored it (Unix ms); `None` for a conflicting claim.
    pub received_at_ms: Option<u64>,
    /// Batch inclusion, once batched (as `/v1/receipts/{id}` gives it).
    pub batch: Option<BatchInclusion>,
}

/// The link between hop `to − 1` and hop `to` of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    /// The hop the link enters.
    pub to: u8,
    /// `linked`, `broken`, or `incomplete` (either receipt is missing).
    pub status: String,
    /// Why it is broken (empty otherwise).
    pub problems: Vec<String>,
}

/// Why hop receipt `next` does not follow hop receipt `prev` in a route
/// (empty when it does). Both must carry a hop part.
pub fn link_problems(prev: &Receipt, next: &Receipt) -> Vec<String> {
    let (Some(a), Some(b)) = (&prev.body.hop, &next.body.hop) else {
        return vec!["not both hop receipts".into()];
    };
    let (k, j) = (a.index, b.index);
    let mut out = Vec::new();
    if a.task_id != b.task_id || a.segment != b.segment || a.index.checked_add(1) != Some(b.index) {
        out.push(format!(
            "hop {j} is not the hop after hop {k} of the same task and segment"
        ));
    }
    if b.input_states != a.output_states {
        out.push(format!(
            "hop {j}'s input states {} are not hop {k}'s output states {}",
            hex32(&b.input_states),
            hex32(&a.output_states)
        ));
    }
    if b.prev != prev.body.node {
        out.push(format!(
            "hop {j} names {} as its previous hop, not hop {k}'s node {}",
            hex32(&b.prev),
            hex32(&prev.body.node)
        ));
    }
    if a.next != next.body.node {
        out.push(format!(
            "hop {k} names {} as its next hop, not hop {j}'s node {}",
            hex32(&a.next),
            hex32(&next.body.node)
        ));
    }
    if b.start != a.end {
        out.push(format!(
            "hop {j} starts at block {} but hop {k} ended at block {}",
            b.start, a.end
        ));
    }
    if a.count != b.count || a.n_layers != b.n_layers {
        out.push(format!(
            "hops {k} and {j} disagree on the route ({} vs {} hops) or the model ({} vs {} blocks)",
            a.count, b.count, a.n_layers, b.n_layers
        ));
    }
    if prev.body.model_hash != next.body.model_hash {
        out.push(format!("hops {k} and {j} ran different models"));
    }
    out
}

fn hop_view(store: &Store, e: &HopEntry) -> Result<HopView, StoreError> {
    let hop = e.hop()?;
    let b = &e.receipt.body;
    let (received_at_ms, batch) = match (e.claim, e.stored) {
        (HopClaim::Stored, Some((received, _))) => {
            let view = receipt_view(store, &b.task_id)?;
            (Some(received), view.and_then(|v| v.batch))
        }
        _ => (None, None),
    };
    Ok(HopView {
        index: hop.index,
        count: hop.count,
        claim: match e.claim {
            HopClaim::Stored => "stored",
            HopClaim::Conflicting => "conflicting",
        }
        .into(),
        receipt_id: hex32(&b.task_id),
        node: hex32(&b.node),
        start: hop.start,
        end: hop.end,
        n_layers: hop.n_layers,
        positions: hop.positions,
        cells: hop.cells,
        price: b.price,
        work_units: b.work_units(),
        input_states: hex32(&hop.input_states),
        output_states: hex32(&hop.output_states),
        prev: hex32(&hop.prev),
        next: hex32(&hop.next),
        digest: hex32(&b.digest()),
        leaf: hex32(&e.receipt.leaf()),
        raw: hex::encode(&e.raw),
        received_at_ms,
        batch,
    })
}

/// The segment's hops with their links judged.
fn segment_view(
    store: &Store,
    segment: u8,
    entries: &[&HopEntry],
) -> Result<SegmentView, StoreError> {
    let mut all_stored: BTreeMap<u8, Vec<&HopEntry>> = BTreeMap::new();
    let mut claims: BTreeMap<u8, usize> = BTreeMap::new();
    let mut count = 0u8;
    for e in entries {
        let hop = e.hop()?;
        *claims.entry(hop.index).or_default() += 1;
        if e.claim == HopClaim::Stored {
            all_stored.entry(hop.index).or_default().push(e);
            count = count.max(hop.count);
        }
    }
    // Several nodes may claim one hop (each receipt is its own leaf): the
    // one its neighbours name is the route's; the others show as conflicts.
    let named = |index: u8, node: &[u8; 32]| {
        let by = |i: Option<u8>, pick: fn(&HopPart) -> [u8; 32]| {
            i.and_then(|i| all_stored.get(&i)).is_some_and(|v| {
                v.iter().any(|e| {
                    e.receipt
                        .body
                        .hop
                        .as_ref()
                        .is_some_and(|h| pick(h) == *node)
                })
            })
        };
        by(index.checked_sub(1), |h| h.next) || by(index.checked_add(1), |h| h.prev)
    };
    let stored: BTreeMap<u8, &HopEntry> = all_stored
        .iter()
        .filter_map(|(&index, v)| {
            let pick = v
                .iter()
                .find(|e| named(index, &e.receipt.body.node))
                .or(v.first())?;
            Some((index, *pick))
        })
        .collect();
    if stored.is_empty() {
        // Only conflicting claims: their route as they state it.
        for e in entries {
            count = count.max(e.hop()?.count);
        }
    }
    let missing: Vec<u8> = (0..count).filter(|i| !stored.contains_key(i)).collect();
    let conflicts: Vec<u8> = claims
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    let mut links = Vec::new();
    let mut broken_at = None;
    for to in 1..count {
        let (status, problems) = match (stored.get(&(to - 1)), stored.get(&to)) {
            (Some(a), Some(b)) => {
                let problems = link_problems(&a.receipt, &b.receipt);
                if problems.is_empty() {
                    ("linked", problems)
                } else {
                    broken_at.get_or_insert(to);
                    ("broken", problems)
                }
            }
            _ => ("incomplete", Vec::new()),
        };
        links.push(LinkView {
            to,
            status: status.into(),
            problems,
        });
    }
    let status = if broken_at.is_some() {
        "broken"
    } else if !missing.is_empty() {
        "incomplete"
    } else {
        "linked"
    };
    let mut hops = Vec::with_capacity(entries.len());
    for e in entries {
        hops.push(hop_view(store, e)?);
    }
    Ok(SegmentView {
        segment,
        count,
        status: status.into(),
        broken_at,
        missing,
        conflicts,
        hops,
        links,
    })
}

/// The view of pipelined task `task_id`; `None` when no hop receipt names it.
pub fn task_view(store: &Store, task_id: &[u8; 32]) -> Result<Option<TaskView>, StoreError> {
    let listing = store.task_hops(task_id)?;
    if listing.entries.is_empty() {
        return Ok(None);
    }
    let mut by_segment: BTreeMap<u8, Vec<&HopEntry>> = BTreeMap::new();
    for e in &listing.entries {
        by_segment.entry(e.hop()?.segment).or_default().push(e);
    }
    let mut segments = Vec::with_capacity(by_segment.len());
    for (segment, entries) in by_segment {
        segments.push(segment_view(store, segment, &entries)?);
    }
    Ok(Some(TaskView {
        task_id: hex32(task_id),
        segments,
        truncated: listing.truncated,
    }))
}

pub(super) async fn get_task(
    State(store): State<Arc<Store>>,
    Path(task_id): Path<String>,
) -> Response {
    let Ok(id) = parse_hex32(&task_id) else {
        return error(StatusCode::BAD_REQUEST, "task id must be 64 hex characters");
    };
    // The read decodes up to a listing's worth of receipts: off the async workers.
    let read = tokio::task::spawn_blocking(move || task_view(&store, &id)).await;
    match read {
        Ok(Ok(Some(view))) => Json(view).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no hop receipts for task {task_id} (a task served by one node has its receipt at /v1/receipts/{task_id})"
            ),
        ),
        Ok(Err(e)) => internal(e),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the task listing failed",
        ),
    }
}
