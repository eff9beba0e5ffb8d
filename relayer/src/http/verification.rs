//! The verification network's side of the API: a batch's receipts for
//! verifiers, their signed audit reports in and out, and the challenges
//! indexed from the chain.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use strata_chain::Pubkey;
use strata_wire::api::{
    AuditAccepted, AuditSubmission, AuditView, BatchReceiptView, BatchReceiptsView, ChallengeView,
};
use strata_wire::audit::{AuditOutcome, FailedCheck};
use strata_wire::{hex32, parse_hex32};

use crate::store::{ChallengeRecord, Store, StoreError, StoredAudit};

use super::{
    batch_status, error, internal, Api, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_BODY, MAX_AUDIT_LIMIT,
};

pub(super) async fn get_batch_receipts(
    State(store): State<Arc<Store>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(batch_id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a batch id (a whole number)"),
        );
    };
    match batch_receipts_view(&store, batch_id) {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no batch {batch_id}")),
        Err(e) => internal(e),
    }
}

/// Every receipt of batch `batch_id`, in leaf order.
pub fn batch_receipts_view(
    store: &Store,
    batch_id: u64,
) -> Result<Option<BatchReceiptsView>, StoreError> {
    let Some(batch) = store.batch(batch_id)? else {
        return Ok(None);
    };
    let mut receipts = Vec::with_capacity(batch.task_ids.len());
    for (index, task) in batch.task_ids.iter().enumerate() {
        let (stored, _) = store.receipt(task)?.ok_or(StoreError::Corrupt("batches"))?;
        let node = stored.receipt()?.body.node;
        receipts.push(BatchReceiptView {
            leaf_index: u32::try_from(index).map_err(|_| StoreError::Corrupt("batch size"))?,
            task_id: hex32(task),
            node: Pubkey::from(node).to_string(),
            raw: hex::encode(&stored.raw),
        });
    }
    Ok(Some(BatchReceiptsView {
        batch_id,
        status: batch_status(batch.status).into(),
        root: hex32(&batch.root),
        receipts,
    }))
}

pub(super) async fn post_audit(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match super::read_body(body, "audit report", MAX_AUDIT_BODY) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let submission: AuditSubmission = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid audit report: expected JSON {{\"raw\": \"<hex>\"}}: {e}"),
            )
        }
    };
    let Ok(raw) = hex::decode(submission.raw.trim()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid audit report: raw is not a hex string",
        );
    };
    match crate::audits::submit(&api.store, &api.judge, raw).await {
        Ok(accepted) => {
            let b = &accepted.report.body;
            tracing::info!(
                task = %hex32(&b.task_id),
                verifier = %Pubkey::from(b.verifier),
                role = accepted.role.name(),
                flagged = accepted.flagged,
                duplicate = accepted.duplicate,
                "audit report accepted"
            );
            Json(AuditAccepted {
                task_id: hex32(&b.task_id),
                verifier: Pubkey::from(b.verifier).to_string(),
                status: if accepted.duplicate {
                    "duplicate"
                } else {
                    "stored"
                }
                .into(),
                role: accepted.role.name().into(),
                flagged: accepted.flagged,
            })
            .into_response()
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::warn!(error = %e, "audit report not judged");
            }
            error(status, e.to_string())
        }
    }
}

/// Query of `GET /v1/audits`.
#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    /// Only the reports on this task (hex).
    pub task: Option<String>,
    /// How many of the most recent reports (default [`DEFAULT_AUDIT_LIMIT`],
    /// at most [`MAX_AUDIT_LIMIT`]).
    pub limit: Option<String>,
}

pub(super) async fn get_audits(
    State(store): State<Arc<Store>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
    };
    let listed = match (query.task, query.limit) {
        (Some(task), _) => {
            let Ok(task) = parse_hex32(&task) else {
                return error(StatusCode::BAD_REQUEST, "task must be 64 hex characters");
            };
            store.audits_for_task(&task)
        }
        (None, limit) => {
            let limit = match limit.map(|l| l.parse::<usize>()) {
                None => DEFAULT_AUDIT_LIMIT,
                Some(Ok(n)) if (1..=MAX_AUDIT_LIMIT).contains(&n) => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}"),
                    )
                }
            };
            store.recent_audits(limit)
        }
    };
    let views = listed.and_then(|list| list.iter().map(audit_view).collect::<Result<Vec<_>, _>>());
    match views {
        Ok(list) => Json(list).into_response(),
        Err(e) => internal(e),
    }
}

/// A failed check as the API names it.
pub fn check_name(check: &FailedCheck) -> String {
    match check {
        FailedCheck::Withheld => "withheld".into(),
        FailedCheck::Opening => "opening".into(),
        FailedCheck::Tokens => "tokens".into(),
        FailedCheck::Embedding => "embedding".into(),
        FailedCheck::Layer(l) => format!("layer {l}"),
        FailedCheck::Sampling(s) => format!("sampling {s}"),
        FailedCheck::UnknownModel => "unknown model".into(),
        FailedCheck::Adapter => "adapter".into(),
    }
}

/// The view of one stored report.
pub fn audit_view(audit: &StoredAudit) -> Result<AuditView, StoreError> {
    let b = audit.report()?.body;
    let (outcome, check, detail) = match &b.outcome {
        AuditOutcome::Passed => ("passed", None, None),
        AuditOutcome::Failed { check, detail } => {
            ("failed", Some(check_name(check)), Some(detail.clone()))
        }
    };
    Ok(AuditView {
        task_id: hex32(&b.task_id),
        batch_id: b.batch_id,
        leaf_index: b.leaf_index,
        node: Pubkey::from(b.node).to_string(),
        verifier: Pubkey::from(b.verifier).to_string(),
        role: audit.role.name().into(),
        outcome: outcome.into(),
        check,
        detail,
        layers: b.layers,
        steps: b.steps,
        work_digest: hex32(&b.work_digest),
        max_rel_dev: b.max_rel_dev,
        cpu_micros: b.cpu_micros,
        finished_at_ms: b.finished_at_ms,
        received_at_ms: audit.received_ms,
        work_units: audit.work_units,
        flagged: audit.flag.is_some(),
        flag: audit.flag.clone(),
        raw: hex::encode(&audit.raw),
    })
}

/// Query of `GET /v1/challenges`.
#[derive(Debug, serde::Deserialize)]
pub struct ChallengeQuery {
    /// Only the challenges against this task (hex).
    pub task: Option<String>,
}

pub(super) async fn get_challenges(
    State(store): State<Arc<Store>>,
    query: Result<Query<ChallengeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let task = match query {
        Ok(Query(ChallengeQuery { task: None })) => None,
        Ok(Query(ChallengeQuery { task: Some(t) })) => match parse_hex32(&t) {
            Ok(t) => Some(t),
            Err(_) => return error(StatusCode::BAD_REQUEST, "task must be 64 hex characters"),
        },
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
    };
    match store.challenges() {
        Ok(mut list) => {
            list.retain(|c| task.is_none_or(|t| c.task_id == t));
            // Newest first.
            list.sort_by(|a, b| {
                b.opened_at
                    .cmp(&a.opened_at)
                    .then(b.opened_slot.cmp(&a.opened_slot))
            });
            Json(list.iter().map(challenge_view).collect::<Vec<_>>()).into_response()
        }
        Err(e) => internal(e),
    }
}

/// The view of one challenge record.
pub fn challenge_view(c: &ChallengeRecord) -> ChallengeView {
    let keys = |list: &[[u8; 32]]| -> Vec<String> {
        list.iter().map(|k| Pubkey::from(*k).to_string()).collect()
    };
    ChallengeView {
        address: Pubkey::from(c.address).to_string(),
        accused: Pubkey::from(c.accused).to_string(),
        challenger: Pubkey::from(c.challenger).to_string(),
        task_id: hex32(&c.task_id),
        batch_id: c.batch_id,
        leaf_index: c.leaf_index,
        status: c.state.name().into(),
        bond: c.bond,
        opened_at: c.opened_at,
        deadline: c.deadline,
        seed_drawn: c.seed != [0; 32],
        committee: keys(&c.committee),
        voters: keys(&c.voters),
        slashed: c.slashed,
        to_challenger: c.to_challenger,
        signature: c.signature.clone(),
    }
}
