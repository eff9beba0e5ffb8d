//! The relayer's HTTP API (axum): receipts in, receipts with their proofs
//! out, a pipelined task's hop receipts and their links, and what the relayer did (batches, settlements, epochs, stats); a
//! batch's receipts for verifiers, their audit reports in and out, and the
//! challenges indexed from the chain.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::Pubkey;
use strata_wire::api::{
    BatchInclusion, BatchView, EpochView, ErrorResponse, IngestResponse, MinuteBucket,
    ReceiptSummaryView, ReceiptView, RewardLeafView, RewardProofView, SettlementView, StatsView,
};
use strata_wire::audit::MAX_AUDIT_REPORT_BYTES;
use strata_wire::{hex32, parse_hex32};

use crate::ingest::{ingest, Accepted};

mod metrics;
mod tasks;
mod verification;
use crate::now_ms;
use crate::store::{BatchStatus, EpochStatus, Store, StoreError};
pub use tasks::{link_problems, task_view, HopView, LinkView, SegmentView, TaskView};
pub use verification::{
    audit_view, batch_receipts_view, challenge_view, check_name, AuditQuery, ChallengeQuery,
};
use verification::{get_audits, get_batch_receipts, get_challenges, post_audit};

/// Largest request body accepted.
pub const MAX_BODY: usize = 4 * 1024;
/// Largest `POST /v1/audits` body: a maximal report in hex, in its JSON object.
pub const MAX_AUDIT_BODY: usize = 2 * MAX_AUDIT_REPORT_BYTES + 64;
/// Reports `GET /v1/audits` lists when no `limit` is given.
pub const DEFAULT_AUDIT_LIMIT: usize = 50;
/// Most reports `GET /v1/audits` lists.
pub const MAX_AUDIT_LIMIT: usize = 500;
/// Receipts `GET /v1/receipts` lists when no `limit` is given.
pub const DEFAULT_RECEIPT_LIMIT: usize = 50;
/// Most receipts `GET /v1/receipts` lists.
pub const MAX_RECEIPT_LIMIT: usize = 500;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorResponse {
            error: message.into(),
        }),
    )
        .into_response()
}

pub(crate) fn internal(e: StoreError) -> Response {
    tracing::error!(error = %e, "store read failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("relayer store: {e}"),
    )
}

/// What the handlers share: the store, and the chain that audit reports
/// are judged against.
#[derive(Clone)]
pub(crate) struct Api {
    store: Arc<Store>,
    judge: Arc<crate::audits::Judge>,
}

impl FromRef<Api> for Arc<Store> {
    fn from_ref(api: &Api) -> Self {
        api.store.clone()
    }
}

/// The router over a store; `chain` is read to judge audit reports.
pub fn router(store: Arc<Store>, chain: ChainClient) -> Router {
    Router::new()
        .route("/v1/receipts", post(post_receipt).get(get_receipt_list))
        .route("/v1/receipts/{task_id}", get(get_receipt))
        .route("/v1/tasks/{task_id}", get(tasks::get_task))
        .route("/v1/rewards/{operator}", get(get_rewards))
        .route("/v1/batches", get(get_batches))
        .route("/v1/batches/{id}/receipts", get(get_batch_receipts))
        .route(
            "/v1/audits",
            // A report in hex is larger than the other bodies: this route's
            // own limit replaces the router's.
            post(post_audit)
                .get(get_audits)
                .layer(DefaultBodyLimit::max(MAX_AUDIT_BODY)),
        )
        .route("/v1/challenges", get(get_challenges))
        .route("/v1/settlements", get(get_settlements))
        .route("/v1/epochs", get(get_epochs))
        .route("/v1/stats", get(get_stats))
        .route("/metrics", get(metrics::get_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api {
            store,
            judge: Arc::new(crate::audits::Judge::new(chain)),
        })
}

async fn post_receipt(
    State(store): State<Arc<Store>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read_body(body, "receipt", MAX_BODY) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match ingest(&store, body.to_vec()).await {
        Ok((receipt, accepted)) => Json(IngestResponse {
            task_id: hex32(&receipt.body.task_id),
            status: match accepted {
                Accepted::Stored => "stored",
                Accepted::Duplicate => "duplicate",
            }
            .into(),
        })
        .into_response(),
        Err(e) if e.is_bad_input() => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A posted body, or why it is refused (a 400): too large for the route's
/// `limit`, or unreadable.
pub(crate) fn read_body(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    limit: usize,
) -> Result<Bytes, String> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!("invalid {what}: body exceeds the {limit}-byte limit")
        } else {
            format!("unreadable body: {e}")
        }
    })
}

/// The view of one stored receipt, with its batch inclusion.
pub fn receipt_view(store: &Store, task_id: &[u8; 32]) -> Result<Option<ReceiptView>, StoreError> {
    let Some((stored, place)) = store.receipt(task_id)? else {
        return Ok(None);
    };
    let r = stored.receipt()?;
    let batch = match place {
        Some((batch_id, leaf_index)) => store.batch(batch_id)?.map(|batch| BatchInclusion {
            batch_id,
            status: batch_status(batch.status).into(),
            leaf_index,
            leaf_count: u32::try_from(batch.leaves.len()).unwrap_or(u32::MAX),
            proof: merkle::proof::<Ledger>(&batch.leaves, leaf_index as usize)
                .unwrap_or_default()
                .iter()
                .map(hex32)
                .collect(),
            root: hex32(&batch.root),
            post_signature: batch.signature,
        }),
        None => None,
    };
    Ok(Some(ReceiptView::new(&r, stored.received_ms, batch)))
}

/// The `limit` most recent receipts, newest first, in their compact view.
pub fn receipt_list_view(
    store: &Store,
    limit: usize,
) -> Result<Vec<ReceiptSummaryView>, StoreError> {
    let mut out = Vec::new();
    for (stored, place) in store.recent_receipts(limit)? {
        let b = stored.receipt()?.body;
        out.push(ReceiptSummaryView {
            task_id: hex32(&b.task_id),
            node: Pubkey::from(b.node).to_string(),
            client: Pubkey::from(b.voucher.client).to_string(),
            prompt_tokens: b.prompt_tokens,
            completion_tokens: b.completion_tokens,
            price: b.price,
            received_at_ms: stored.received_ms,
            batch_id: place.map(|(batch_id, _)| batch_id),
        });
    }
    Ok(out)
}

/// Query of `GET /v1/receipts`.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    /// How many receipts (default [`DEFAULT_RECEIPT_LIMIT`], at most [`MAX_RECEIPT_LIMIT`]).
    pub limit: Option<String>,
}

async fn get_receipt_list(
    State(store): State<Arc<Store>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let limit = match query.map(|q| q.0.limit) {
        Ok(None) => DEFAULT_RECEIPT_LIMIT,
        Ok(Some(text)) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_RECEIPT_LIMIT).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {MAX_RECEIPT_LIMIT}"),
                )
            }
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
    };
    match receipt_list_view(&store, limit) {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(e),
    }
}

fn batch_status(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Planned => "planned",
        BatchStatus::Posted => "posted",
    }
}

async fn get_receipt(State(store): State<Arc<Store>>, Path(task_id): Path<String>) -> Response {
    let Ok(id) = parse_hex32(&task_id) else {
        return error(StatusCode::BAD_REQUEST, "task id must be 64 hex characters");
    };
    match receipt_view(&store, &id) {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no receipt for task {task_id}"),
        ),
        Err(e) => internal(e),
    }
}

/// The latest published reward proof for `operator`.
pub fn reward_view(
    store: &Store,
    operator: &Pubkey,
) -> Result<Option<RewardProofView>, StoreError> {
    let key = operator.to_bytes();
    for epoch in store.epochs()?.into_iter().rev() {
        if epoch.status != EpochStatus::Published {
            continue;
        }
        let Some(index) = epoch.leaves.iter().position(|(op, _)| *op == key) else {
            continue;
        };
        let leaves = epoch.leaf_hashes();
        return Ok(Some(RewardProofView {
            operator: operator.to_string(),
            epoch: epoch.epoch,
            cumulative: epoch.leaves[index].1,
            leaf_index: u32::try_from(index).unwrap_or(u32::MAX),
            leaf_count: u32::try_from(leaves.len()).unwrap_or(u32::MAX),
            proof: merkle::proof::<Ledger>(&leaves, index)
                .unwrap_or_default()
                .iter()
                .map(hex32)
                .collect(),
            root: hex32(&epoch.root),
        }));
    }
    Ok(None)
}

async fn get_rewards(State(store): State<Arc<Store>>, Path(operator): Path<String>) -> Response {
    let Ok(key) = operator.parse::<Pubkey>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{operator:?} is not a base58 public key"),
        );
    };
    match reward_view(&store, &key) {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no published rewards for {operator} yet"),
        ),
        Err(e) => internal(e),
    }
}

async fn get_batches(State(store): State<Arc<Store>>) -> Response {
    match store.batches() {
        Ok(list) => Json(
            list.into_iter()
                .rev()
                .map(|b| BatchView {
                    id: b.id,
                    status: batch_status(b.status).into(),
                    root: hex32(&b.root),
                    task_count: u32::try_from(b.task_ids.len()).unwrap_or(u32::MAX),
                    work_units: b.work_units,
                    epoch: b.epoch,
                    signature: b.signature,
                    planned_at_ms: b.planned_ms,
                    task_ids: b.task_ids.iter().map(hex32).collect(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn get_settlements(State(store): State<Arc<Store>>) -> Response {
    match store.settlements() {
        Ok(list) => Json(
            list.into_iter()
                .rev()
                .map(|s| SettlementView {
                    signature: s.signature,
                    client: Pubkey::from(s.client).to_string(),
                    node: Pubkey::from(s.node).to_string(),
                    cumulative: s.cumulative,
                    amount: s.amount,
                    paid: s.paid,
                    fee: s.fee,
                    at_ms: s.at_ms,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn get_epochs(State(store): State<Arc<Store>>) -> Response {
    match store.epochs() {
        Ok(list) => Json(
            list.into_iter()
                .rev()
                .map(|e| EpochView {
                    epoch: e.epoch,
                    status: match e.status {
                        EpochStatus::Planned => "planned",
                        EpochStatus::Published => "published",
                    }
                    .into(),
                    root: hex32(&e.root),
                    declared: e.declared,
                    signature: e.signature,
                    leaves: e
                        .leaves
                        .iter()
                        .map(|(op, cumulative)| RewardLeafView {
                            operator: Pubkey::from(*op).to_string(),
                            cumulative: *cumulative,
                        })
                        .collect(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

/// Counts and the per-minute chart.
pub fn stats_view(store: &Store, now: u64) -> Result<StatsView, StoreError> {
    const MINUTE: u64 = 60_000;
    const MINUTES: u64 = 60;
    let counts = store.counts()?;
    let batches = store.batches()?;
    let settlements = store.settlements()?;
    let epochs = store.epochs()?;
    let this_minute = now - now % MINUTE;
    let first = this_minute.saturating_sub((MINUTES - 1) * MINUTE);
    let mut buckets: Vec<MinuteBucket> = (0..MINUTES)
        .map(|i| MinuteBucket {
            minute_ms: first + i * MINUTE,
            tasks: 0,
        })
        .collect();
    for at in store.arrivals_since(first)? {
        let i = ((at.saturating_sub(first)) / MINUTE) as usize;
        if let Some(b) = buckets.get_mut(i) {
            b.tasks += 1;
        }
    }
    Ok(StatsView {
        receipts: counts.receipts,
        batched: counts.batched,
        batches: batches
            .iter()
            .filter(|b| b.status == BatchStatus::Posted)
            .count() as u64,
        settlements: settlements.len() as u64,
        settled_paid: settlements.iter().map(|s| s.paid).sum(),
        settled_fee: settlements.iter().map(|s| s.fee).sum(),
        epochs: epochs
            .iter()
            .filter(|e| e.status == EpochStatus::Published)
            .count() as u64,
        tasks_per_minute: buckets,
    })
}

async fn get_stats(State(store): State<Arc<Store>>) -> Response {
    match stats_view(&store, now_ms()) {
        Ok(view) => Json(view).into_response(),
        Err(e) => internal(e),
    }
}
