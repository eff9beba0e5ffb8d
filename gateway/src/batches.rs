//! Deferred jobs: OpenAI's Batch API (`/v1/batches`) over files uploaded
//! to `/v1/files`, run in capacity that interactive traffic leaves idle.
//!
//! Creating a batch checks every line of its input file before answering:
//! a line that is not JSON, lacks a `custom_id`, repeats one, names another
//! method or URL, or carries a body its endpoint would refuse is recorded
//! as failed with its line number and reason (in `errors.data` and the
//! error file); every other line is queued. The batch and all its requests
//! are in the store (`crate::batch_store`) before the answer leaves, so a
//! gateway restart loses no accepted job: the runner queues again every
//! request with no recorded result, the ones that were running included.
//!
//! **When batch work runs.** The runner starts a queued request only when
//! (1) no interactive request is waiting for a node at this gateway
//! (`Router::interactive_waiting`), (2) some fresh node serving its model
//! has more than [`BATCH_RESERVE_SLOTS`] of its announced slots free,
//! counting its announced active tasks and every task this gateway sent it
//! since (`routing::batch_room`), and (3) fewer than
//! [`MAX_BATCH_IN_FLIGHT`] batch requests are running. Interactive tasks
//! never queue behind batch work: they are never in this queue, they are
//! sent at once to the least loaded node, and batch work leaves every
//! node's reserve free for them.
//!
//! **At a lower price.** Nodes set their prices and are paid from the
//! client's own escrow by vouchers the gateway signs for it, so the gateway
//! has no books of its own on which to charge less. What it can do is
//! choose: a batch request goes only to a node announcing a price at or
//! below the batch's cap (`metadata.strata_max_price_per_token`, none if
//! absent), cheapest first, where interactive
//! requests go to the least loaded node at any price. The cap and what the
//! batch has cost so far are in the batch object's `strata` field, each
//! request's price in its output line.
//!
//! **Rollout jobs** (endpoint `/v1/rollouts`) use the same queue: a
//! line's body is an RL rollout job, checked at create time as
//! `POST /v1/rollouts` checks one (`crate::rollouts::check`; its sampling
//! seed, drawn then if absent, is pinned in the stored line), and run by
//! that endpoint's runner (`crate::rollouts::run_job`), so its result body
//! is what the endpoint answers. Each of the job's completions is one batch
//! task under the rule above: the line holds one of the
//! [`MAX_BATCH_IN_FLIGHT`] places, and runs its completions one after
//! another, each on a node with idle room under the cap (and holding the
//! job's policy version) found when the previous one ends, waiting while
//! an interactive request waits. The line's price is the sum of its
//! completions'.
//!
//! **What a restart costs.** A request whose task was paid but whose
//! result was not yet recorded when the gateway died runs again and is
//! paid twice (the window is the few milliseconds between the node's
//! receipt and the store's commit). A rollout line is recorded whole, so
//! one cut short by a restart runs again from its first completion (with
//! the same seeds), and the completions it had finished are paid twice.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_p2p::NodeId;
use strata_wire::Capacity;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::batch_store::{
    BatchRecord, BatchStatus, BatchStore, FileRecord, LineError, RequestRecord, RequestState,
    MAX_SHOWN_ERRORS,
};
use crate::files::{self, authorized, new_id, owned_file};
use crate::http::{checked_chat, checked_completion, final_body, task_input, Checked, Kind};
use crate::openai::error_body;
use crate::rollouts;
use crate::routing::BATCH_RESERVE_SLOTS;
use crate::runner::TaskInput;
use crate::{GatewayError, Inner};

/// Batch requests running at once, at most.
pub const MAX_BATCH_IN_FLIGHT: usize = 4;
/// Lines in one input file, at most (OpenAI's limit).
pub const MAX_REQUESTS: usize = 50_000;
/// Longest `custom_id`.
pub const MAX_CUSTOM_ID: usize = 512;
/// The only completion window offered.
pub const COMPLETION_WINDOW: &str = "24h";
const WINDOW_SECS: u64 = 24 * 3600;
/// The endpoints a batch may target.
pub const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", ROLLOUTS];
/// The endpoint of rollout jobs.
pub const ROLLOUTS: &str = "/v1/rollouts";
/// How often the runner looks again when nothing woke it.
const TICK: Duration = Duration::from_millis(200);
/// Queued entries looked at per pick (the queue is FIFO, but one model
/// without room should not hold back another's requests forever).
const SCAN: usize = 64;
/// Node failures a request survives before it is failed.
const MAX_NODE_FAILURES: u32 = 3;

/// A request waiting to run.
#[derive(Debug, Clone)]
struct Queued {
    batch_id: String,
    index: u32,
    model: String,
    /// A rollout job's policy version (0 otherwise): only nodes holding it
    /// may take the request.
    policy_version: u64,
    max_price: Option<u64>,
    /// The batch's window ends (Unix seconds): then it is picked at once,
    /// to be recorded as expired.
    expires_at: u64,
    not_before: Instant,
}

/// The batch queue and its store.
pub(crate) struct Batches {
    /// Files, batches and requests.
    pub(crate) store: BatchStore,
    queue: Mutex<VecDeque<Queued>>,
    /// Serialises read-modify-write of batch records (counters, status).
    books: Mutex<()>,
    wake: Notify,
    stopped: AtomicBool,
}

impl Batches {
    /// Opens the store in `state_dir` and queues every request a previous
    /// run left without a result.
    pub(crate) fn open(state_dir: &std::path::Path) -> Result<Self, GatewayError> {
        let store = BatchStore::open_dir(state_dir)?;
        let mut queue = VecDeque::new();
        let now = Instant::now();
        for (batch_id, index) in store.unfinished()? {
            let (Some(b), Some(r)) = (store.batch(&batch_id)?, store.request(&batch_id, index)?)
            else {
                continue;
            };
            queue.push_back(Queued {
                model: model_of(&r.body),
                policy_version: version_of(&r.body),
                max_price: b.max_price_per_token,
                expires_at: b.expires_at,
                batch_id,
                index,
                not_before: now,
            });
        }
        if !queue.is_empty() {
            tracing::info!(
                requests = queue.len(),
                "batch requests resumed from the store"
            );
        }
        Ok(Self {
            store,
            queue: Mutex::new(queue),
            books: Mutex::new(()),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// Stops the runner (running requests are abandoned: with no result
    /// recorded, they run again after a restart) and closes the store.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_books(&self) -> std::sync::MutexGuard<'_, ()> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next queued request that may start now, by the rule in the
    /// module's doc (the interactive check is the caller's), with the node
    /// it goes to, its slot there held (None when it will fail without one:
    /// a model no node serves, or a window that has passed).
    fn take_ready(&self, gw: &Arc<Inner>) -> Option<(Queued, Option<Slot>)> {
        let now = Instant::now();
        let unix = now_s();
        let models = gw.router.models();
        let mut q = self.lock_queue();
        let mut found = None;
        for (i, e) in q.iter().take(SCAN).enumerate() {
            if e.not_before > now {
                continue;
            }
            if unix > e.expires_at || (!models.is_empty() && !models.contains(&e.model)) {
                found = Some((i, None));
                break;
            }
            let pick = batch_pick(gw, &e.model, e.policy_version, e.max_price);
            if pick.is_some() {
                found = Some((i, pick));
                break;
            }
        }
        let (i, pick) = found?;
        // Held under the queue's lock, before any other pick looks at the
        // node's room.
        let slot = pick.map(|p| {
            let held = Reservation::hold(gw, p.0);
            (p, held)
        });
        Some((q.remove(i)?, slot))
    }
}

/// The node a batch task may go to now (idle room under the cap, holding
/// the policy version), if any.
fn batch_pick(
    gw: &Inner,
    model: &str,
    policy_version: u64,
    max_price: Option<u64>,
) -> Option<(NodeId, Capacity)> {
    gw.router
        .batch_candidates(model, &[], max_price)
        .into_iter()
        .find(|(_, c)| c.holds_policy(policy_version))
}

/// A node picked for a batch task, and its slot there, held.
type Slot = ((NodeId, Capacity), Reservation);

/// Waits, as the runner does for a request, until no interactive request
/// waits and a node has idle room under `max_price` for one more task of
/// `model` at `policy_version`, and holds a slot there. An error when the
/// runner stops, the model is served no more, or the window passes.
async fn next_slot(
    gw: &Arc<Inner>,
    model: &str,
    policy_version: u64,
    max_price: Option<u64>,
    expires_at: u64,
) -> Result<Slot, GatewayError> {
    loop {
        if gw.batches.stopped.load(Ordering::SeqCst) {
            return Err(GatewayError::Internal("the batch runner stopped".into()));
        }
        if now_s() > expires_at {
            return Err(GatewayError::NoCapacity(
                "the completion window passed".into(),
            ));
        }
        let models = gw.router.models();
        if !models.is_empty() && !models.contains(&model.to_string()) {
            return Err(GatewayError::UnknownModel(model.to_string()));
        }
        if gw.router.interactive_waiting() == 0 {
            let _q = gw.batches.lock_queue();
            if let Some(p) = batch_pick(gw, model, policy_version, max_price) {
                let held = Reservation::hold(gw, p.0);
                return Ok((p, held));
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// A slot of a node held for one batch request, from the moment the runner
/// picks it (so that the next pick counts it) until the request ends or is
/// abandoned.
struct Reservation {
    gw: Arc<Inner>,
    node: NodeId,
}

impl Reservation {
    fn hold(gw: &Arc<Inner>, node: NodeId) -> Self {
        gw.router.track(&node, 1);
        Self {
            gw: gw.clone(),
            node,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gw.router.track(&self.node, -1);
    }
}

fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A rollout job's policy version (0 for any other body).
fn version_of(body: &Value) -> u64 {
    body.get("policy_version")
        .and_then(|v| rollouts::policy_version(v).ok())
        .unwrap_or(0)
}

fn now_s() -> u64 {
    strata_service::now_ms() / 1000
}

/// The routes of `/v1/files` and `/v1/batches`.
pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(
            "/v1/files",
            post(files::upload).layer(DefaultBodyLimit::max(files::MAX_UPLOAD_BODY)),
        )
        .route("/v1/files/{id}", get(files::retrieve))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(create).get(list))
        .route("/v1/batches/{id}", get(retrieve))
        .route("/v1/batches/{id}/cancel", post(cancel))
}

/// OpenAI's batch object, with the gateway's `strata` extension.
fn batch_object(b: &BatchRecord) -> Value {
    let errors = if b.errors.is_empty() {
        Value::Null
    } else {
        json!({ "object": "list", "data": b.errors.iter().map(|e| json!({
            "code": e.code, "message": e.message, "param": null, "line": e.line,
        })).collect::<Vec<_>>() })
    };
    json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": errors,
        "input_file_id": b.input_file_id, "completion_window": b.completion_window,
        "status": b.status, "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id, "created_at": b.created_at,
        "in_progress_at": b.in_progress_at, "expires_at": b.expires_at,
        "finalizing_at": b.finalizing_at, "completed_at": b.completed_at,
        "failed_at": b.failed_at, "expired_at": b.expired_at,
        "cancelling_at": b.cancelling_at, "cancelled_at": b.cancelled_at,
        "request_counts": { "total": b.total, "completed": b.completed, "failed": b.failed },
        "metadata": b.metadata,
        "strata": {
            "max_price_per_token": b.max_price_per_token,
            "cost": b.cost,
            "reserve_slots": BATCH_RESERVE_SLOTS,
        },
    })
}

/// `POST /v1/batches` body.
#[derive(Debug, Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

/// A refused line's record: `Done`, failed, with OpenAI's per-line error.
fn refused_line(
    line: u32,
    custom_id: Option<String>,
    code: &str,
    message: String,
) -> (RequestRecord, LineError) {
    let output = json!({
        "id": new_id("batch_req_"), "custom_id": custom_id, "response": null,
        "error": { "code": code, "message": message, "line": line },
    });
    (
        RequestRecord {
            custom_id,
            line,
            body: Value::Null,
            state: RequestState::Done { ok: false, output },
            attempts: 0,
        },
        LineError {
            code: code.into(),
            message,
            line,
        },
    )
}

/// Checks a line's body as `endpoint` would check it.
fn check_body(endpoint: &str, body: &Value) -> Result<Checked, GatewayError> {
    let invalid = |e: serde_json::Error| GatewayError::BadRequest(format!("invalid body: {e}"));
    let c = if endpoint == ENDPOINTS[0] {
        checked_chat(serde_json::from_value(body.clone()).map_err(invalid)?)?
    } else {
        checked_completion(serde_json::from_value(body.clone()).map_err(invalid)?)?
    };
    if c.common.stream {
        return Err(GatewayError::BadRequest(
            "stream is not available in a batch".into(),
        ));
    }
    task_input(String::new(), &c.common, c.prompt.clone(), c.logprobs)?;
    Ok(c)
}

/// Every line of `content`: the requests to queue, and the refused ones,
/// in line order (blank lines are skipped).
fn check_lines(
    endpoint: &str,
    content: &[u8],
) -> Result<(Vec<RequestRecord>, Vec<LineError>), GatewayError> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (n, raw) in content.split(|b| *b == b'\n').enumerate() {
        let line = u32::try_from(n + 1).unwrap_or(u32::MAX);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if records.len() == MAX_REQUESTS {
            return Err(GatewayError::BadRequest(format!(
                "the input file has more than {MAX_REQUESTS} requests"
            )));
        }
        let mut refuse = |custom_id: Option<String>, code: &str, message: String| {
            let (r, e) = refused_line(line, custom_id, code, message);
            records.push(r);
            errors.push(e);
        };
        let v: Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => {
                refuse(None, "invalid_json", format!("line {line}: not JSON: {e}"));
                continue;
            }
        };
        let custom_id = match v.get("custom_id").and_then(Value::as_str) {
            Some(c) if !c.is_empty() && c.len() <= MAX_CUSTOM_ID => c.to_string(),
            _ => {
                refuse(
                    None,
                    "missing_custom_id",
                    format!(
                        "line {line}: custom_id must be a string of 1 to {MAX_CUSTOM_ID} bytes"
                    ),
                );
                continue;
            }
        };
        let id = Some(custom_id.clone());
        if v.get("method").and_then(Value::as_str) != Some("POST") {
            refuse(
                id,
                "invalid_method",
                format!("line {line}: method must be POST"),
            );
            continue;
        }
        if v.get("url").and_then(Value::as_str) != Some(endpoint) {
            refuse(
                id,
                "invalid_url",
                format!("line {line}: url must be the batch's endpoint {endpoint}"),
            );
            continue;
        }
        let body = v.get("body").cloned().unwrap_or(Value::Null);
        let checked = if endpoint == ROLLOUTS {
            rollouts::check(&body).map(|(_, pinned)| pinned)
        } else {
            check_body(endpoint, &body).map(|_| body)
        };
        let body = match checked {
            Ok(body) => body,
            Err(e) => {
                refuse(id, "invalid_request", format!("line {line}: {e}"));
                continue;
            }
        };
        if !seen.insert(custom_id.clone()) {
            refuse(
                id,
                "duplicate_custom_id",
                format!("line {line}: custom_id `{custom_id}` is used by an earlier line"),
            );
            continue;
        }
        records.push(RequestRecord {
            custom_id: id,
            line,
            body,
            state: RequestState::Queued,
            attempts: 0,
        });
    }
    Ok((records, errors))
}

/// The batch's price cap: the metadata's `strata_max_price_per_token`
/// (a string, as OpenAI's metadata values are; a number is taken too).
fn price_cap(
    metadata: Option<&serde_json::Map<String, Value>>,
) -> Result<Option<u64>, GatewayError> {
    let Some(v) = metadata.and_then(|m| m.get("strata_max_price_per_token")) else {
        return Ok(None);
    };
    v.as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| v.as_u64())
        .map(Some)
        .ok_or_else(|| {
            GatewayError::BadRequest(
                "metadata.strata_max_price_per_token must be a whole number of base units".into(),
            )
        })
}

async fn create(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = read.map_err(|r| GatewayError::BadRequest(r.body_text()))?;
        let (owner, _) = authorized(&gw, &headers)?;
        let req: CreateBatch = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))?;
        if !ENDPOINTS.contains(&req.endpoint.as_str()) {
            return Err(GatewayError::BadRequest(format!(
                "endpoint `{}` is not supported; use one of {}",
                req.endpoint,
                ENDPOINTS.join(", ")
            )));
        }
        if req.completion_window != COMPLETION_WINDOW {
            return Err(GatewayError::BadRequest(format!(
                "completion_window must be `{COMPLETION_WINDOW}`"
            )));
        }
        if let Some(m) = &req.metadata {
            if m.len() > 16 {
                return Err(GatewayError::BadRequest(
                    "metadata: at most 16 keys".into(),
                ));
            }
        }
        let cap = price_cap(req.metadata.as_ref())?;
        let file = owned_file(&gw, &owner, &req.input_file_id)?;
        if file.purpose != "batch" {
            return Err(GatewayError::BadRequest(format!(
                "file `{}` has purpose `{}`; a batch's input must have purpose `batch`",
                file.id, file.purpose
            )));
        }
        let content = gw
            .batches
            .store
            .file_content(&file.id)?
            .ok_or_else(|| GatewayError::State(format!("file {} has no content", file.id)))?;
        let endpoint = req.endpoint.clone();
        let (records, errors) =
            tokio::task::spawn_blocking(move || check_lines(&endpoint, &content))
                .await
                .map_err(|e| GatewayError::Internal(e.to_string()))??;
        if records.is_empty() {
            return Err(GatewayError::BadRequest(
                "the input file holds no requests".into(),
            ));
        }
        let now_ms = strata_service::now_ms();
        let now = now_ms / 1000;
        let valid = records.len() - errors.len();
        let batch = BatchRecord {
            id: new_id("batch_"),
            owner,
            endpoint: req.endpoint,
            input_file_id: file.id,
            completion_window: req.completion_window,
            status: BatchStatus::InProgress,
            created_at: now,
            created_ms: now_ms,
            in_progress_at: Some(now),
            expires_at: now + WINDOW_SECS,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            output_file_id: None,
            error_file_id: None,
            total: u32::try_from(records.len()).unwrap_or(u32::MAX),
            completed: 0,
            failed: u32::try_from(errors.len()).unwrap_or(u32::MAX),
            errors: errors.into_iter().take(MAX_SHOWN_ERRORS).collect(),
            metadata: req.metadata.map(Value::Object),
            max_price_per_token: cap,
            cost: 0,
        };
        let batch = {
            let _books = gw.batches.lock_books();
            gw.batches.store.create_batch(&batch, &records)?;
            if valid == 0 {
                // Nothing to run: the batch failed validation whole.
                finalize(&gw, batch, BatchStatus::Failed)?
            } else {
                batch
            }
        };
        let mut q = gw.batches.lock_queue();
        for (i, r) in records.iter().enumerate() {
            if r.state == RequestState::Queued {
                q.push_back(Queued {
                    batch_id: batch.id.clone(),
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    model: model_of(&r.body),
                    policy_version: version_of(&r.body),
                    max_price: cap,
                    expires_at: batch.expires_at,
                    not_before: Instant::now(),
                });
            }
        }
        drop(q);
        gw.batches.wake.notify_one();
        tracing::info!(batch = %batch.id, requests = valid, refused = batch.failed, "batch accepted");
        Ok(Json(batch_object(&batch)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A batch of `owner`'s, or 404.
fn owned_batch(gw: &Inner, owner: &str, id: &str) -> Result<BatchRecord, GatewayError> {
    gw.batches
        .store
        .batch(id)?
        .filter(|b| b.owner == owner)
        .ok_or_else(|| GatewayError::NotFound(format!("no batch with id `{id}`")))
}

async fn retrieve(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let (owner, _) = authorized(&gw, &headers)?;
        Ok::<_, GatewayError>(Json(batch_object(&owned_batch(&gw, &owner, &id)?)).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/batches` query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = (|| {
        let (owner, _) = authorized(&gw, &headers)?;
        let limit = q.limit.unwrap_or(20).clamp(1, 100);
        let mut all: Vec<BatchRecord> = gw
            .batches
            .store
            .batches()?
            .into_iter()
            .filter(|b| b.owner == owner)
            .collect();
        // Newest first, as OpenAI lists them.
        all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        let start = match &q.after {
            Some(after) => all
                .iter()
                .position(|b| &b.id == after)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(batch_object)
            .collect();
        let has_more = all.len() > start + page.len();
        Ok::<_, GatewayError>(
            Json(json!({
                "object": "list", "data": page,
                "first_id": page.first().map(|b| b["id"].clone()),
                "last_id": page.last().map(|b| b["id"].clone()),
                "has_more": has_more,
            }))
            .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn cancel(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let (owner, _) = authorized(&gw, &headers)?;
        let _books = gw.batches.lock_books();
        let mut b = owned_batch(&gw, &owner, &id)?;
        if b.status.is_final() {
            return Err(GatewayError::BadRequest(format!(
                "batch `{id}` is already {}",
                serde_json::to_value(b.status)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("final")
            )));
        }
        if b.status != BatchStatus::Cancelling {
            b.status = BatchStatus::Cancelling;
            b.cancelling_at = Some(now_s());
        }
        let removed: Vec<Queued> = {
            let mut q = gw.batches.lock_queue();
            let (gone, kept): (Vec<Queued>, Vec<Queued>) =
                q.drain(..).partition(|e| e.batch_id == id);
            q.extend(kept);
            gone
        };
        gw.batches.store.put_batch(&b)?;
        for e in removed {
            b = skip(
                &gw,
                b,
                e.index,
                "batch_cancelled",
                "the batch was cancelled before this request ran",
            )?;
        }
        if b.completed + b.failed >= b.total {
            b = finalize(&gw, b, BatchStatus::Cancelled)?;
        }
        Ok(Json(batch_object(&b)).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Records a request that will not run (cancelled, expired) as failed
/// with `code`; the caller holds the books.
fn skip(
    gw: &Inner,
    mut b: BatchRecord,
    index: u32,
    code: &str,
    message: &str,
) -> Result<BatchRecord, GatewayError> {
    let Some(mut r) = gw.batches.store.request(&b.id, index)? else {
        return Ok(b);
    };
    if matches!(r.state, RequestState::Done { .. }) {
        return Ok(b);
    }
    r.state = RequestState::Done {
        ok: false,
        output: json!({
            "id": new_id("batch_req_"), "custom_id": r.custom_id, "response": null,
            "error": { "code": code, "message": message },
        }),
    };
    b.failed = b.failed.saturating_add(1);
    gw.batches
        .store
        .put_request(Some(&b), &b.id.clone(), index, &r)?;
    Ok(b)
}

/// Writes the output and error files and the batch's final status; the
/// caller holds the books.
fn finalize(
    gw: &Inner,
    mut b: BatchRecord,
    status: BatchStatus,
) -> Result<BatchRecord, GatewayError> {
    let now = now_s();
    b.finalizing_at.get_or_insert(now);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for r in gw.batches.store.requests(&b.id)? {
        if let RequestState::Done { ok, output } = r.state {
            let to = if ok { &mut out } else { &mut err };
            to.extend_from_slice(output.to_string().as_bytes());
            to.push(b'\n');
        }
    }
    let mut files = Vec::new();
    for (data, which) in [(out, "output"), (err, "errors")] {
        if data.is_empty() {
            continue;
        }
        let f = FileRecord {
            id: new_id("file-"),
            owner: b.owner.clone(),
            purpose: "batch_output".into(),
            filename: format!("{}_{which}.jsonl", b.id),
            bytes: data.len() as u64,
            created_at: now,
        };
        if which == "output" {
            b.output_file_id = Some(f.id.clone());
        } else {
            b.error_file_id = Some(f.id.clone());
        }
        files.push((f, data));
    }
    b.status = status;
    match status {
        BatchStatus::Failed => b.failed_at = Some(now),
        BatchStatus::Cancelled => b.cancelled_at = Some(now),
        BatchStatus::Expired => b.expired_at = Some(now),
        _ => b.completed_at = Some(now),
    }
    gw.batches.store.finish_batch(&b, &files)?;
    tracing::info!(batch = %b.id, status = ?b.status, completed = b.completed, failed = b.failed, cost = b.cost, "batch finished");
    Ok(b)
}

/// The final status of a batch whose every request has a result.
fn final_status(b: &BatchRecord) -> BatchStatus {
    match b.status {
        BatchStatus::Cancelling => BatchStatus::Cancelled,
        _ if b.expired_at.is_some() || now_s() > b.expires_at => BatchStatus::Expired,
        _ => BatchStatus::Completed,
    }
}

/// The batch runner: starts queued requests while capacity is idle (see
/// the module's doc), until [`Batches::stop`].
pub(crate) async fn run_queue(gw: Arc<Inner>) {
    // Batches every request of which had a result when the gateway last
    // stopped, but were not finalized yet.
    if let Err(e) = finish_leftovers(&gw) {
        tracing::warn!("finishing batches left over: {e}");
    }
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if gw.batches.stopped.load(Ordering::SeqCst) {
            running.shutdown().await;
            gw.batches.store.close();
            return;
        }
        while running.len() < MAX_BATCH_IN_FLIGHT && gw.router.interactive_waiting() == 0 {
            let Some((job, slot)) = gw.batches.take_ready(&gw) else {
                break;
            };
            let gw = gw.clone();
            running.spawn(async move {
                let (batch_id, index) = (job.batch_id.clone(), job.index);
                let result = run_one(&gw, job, slot).await;
                if let Err(e) = result {
                    tracing::warn!(batch = %batch_id, index, "batch request: {e}");
                }
            });
        }
        tokio::select! {
            _ = gw.batches.wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn finish_leftovers(gw: &Inner) -> Result<(), GatewayError> {
    let _books = gw.batches.lock_books();
    for b in gw.batches.store.batches()? {
        if !b.status.is_final() && b.completed + b.failed >= b.total {
            let status = final_status(&b);
            finalize(gw, b, status)?;
        }
    }
    Ok(())
}

/// The account key whose blake3 is `owner`.
fn key_of(gw: &Inner, owner: &str) -> Option<String> {
    gw.accounts
        .api_keys()
        .find(|k| files::owner_of(k) == owner)
        .map(str::to_string)
}

/// Whether a failure is worth another try later, and how long to wait.
fn retry_after(e: &GatewayError, attempts: u32) -> Option<Duration> {
    let wait = Duration::from_millis(500u64.saturating_mul(1 << attempts.min(6)));
    match e {
        GatewayError::NoCapacity(_) | GatewayError::Busy(_) | GatewayError::ChainUnavailable(_) => {
            Some(wait)
        }
        GatewayError::Node(_) if attempts < MAX_NODE_FAILURES => Some(wait),
        _ => None,
    }
}

/// Runs a rollout line's job (see the module's doc): its first completion
/// on the runner's pick, each next one on the next idle slot. Its result
/// body, as `POST /v1/rollouts` answers.
async fn run_rollout_line(
    gw: &Arc<Inner>,
    b: &BatchRecord,
    body: &Value,
    job: &Queued,
    slot: Option<Slot>,
) -> Result<Value, GatewayError> {
    let (rollout, _) = rollouts::check(body)?;
    let key = key_of(gw, &b.owner).ok_or(GatewayError::Unauthorized)?;
    let first = Mutex::new(Some(slot));
    let run = |input: TaskInput| {
        let first = first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let gw = gw.clone();
        let (max_price, expires_at) = (job.max_price, b.expires_at);
        async move {
            let (pick, held) = match first {
                Some(Some((pick, held))) => (Some(pick), Some(held)),
                // No node for the line's start: the runner says why.
                Some(None) => (None, None),
                None => {
                    let (pick, held) = next_slot(
                        &gw,
                        &input.model,
                        input.policy_version,
                        max_price,
                        expires_at,
                    )
                    .await?;
                    (Some(pick), Some(held))
                }
            };
            let (text, positions, done) = crate::runner::run_batch(&gw, input, pick).await;
            drop(held);
            done.map(|o| (text, positions, o))
        }
    };
    // One completion at a time: the line holds one batch place.
    rollouts::run_job(key, rollout, 1, run).await
}

/// Runs one queued request and records its result.
async fn run_one(gw: &Arc<Inner>, job: Queued, slot: Option<Slot>) -> Result<(), GatewayError> {
    let store = &gw.batches.store;
    let (Some(b), Some(mut r)) = (
        store.batch(&job.batch_id)?,
        store.request(&job.batch_id, job.index)?,
    ) else {
        return Ok(());
    };
    if matches!(r.state, RequestState::Done { .. }) {
        return Ok(());
    }
    if b.status == BatchStatus::Cancelling || b.status.is_final() || now_s() > b.expires_at {
        let _books = gw.batches.lock_books();
        let (code, why) = if b.status == BatchStatus::Cancelling {
            (
                "batch_cancelled",
                "the batch was cancelled before this request ran",
            )
        } else {
            (
                "batch_expired",
                "the completion window passed before this request ran",
            )
        };
        let mut b = store.batch(&job.batch_id)?.unwrap_or(b);
        if b.status.is_final() {
            return Ok(());
        }
        if code == "batch_expired" {
            b.expired_at.get_or_insert(now_s());
        }
        let b = skip(gw, b, job.index, code, why)?;
        if b.completed + b.failed >= b.total {
            let status = final_status(&b);
            finalize(gw, b, status)?;
        }
        return Ok(());
    }
    r.state = RequestState::Running;
    store.put_request(None, &job.batch_id, job.index, &r)?;

    // (price, request id, response body)
    let result = if b.endpoint == ROLLOUTS {
        run_rollout_line(gw, &b, &r.body, &job, slot)
            .await
            .map(|body| {
                let price = body["usage"]["price"].as_u64().unwrap_or(0);
                let id = body["id"].as_str().unwrap_or_default().to_string();
                (price, id, body)
            })
    } else {
        let kind = if b.endpoint == ENDPOINTS[0] {
            Kind::Chat
        } else {
            Kind::Text
        };
        let prepared = check_body(&b.endpoint, &r.body).and_then(|c| {
            let key = key_of(gw, &b.owner).ok_or(GatewayError::Unauthorized)?;
            let wants = c.logprobs.is_some();
            Ok((task_input(key, &c.common, c.prompt, c.logprobs)?, wants))
        });
        let (pick, held) = match slot {
            Some((pick, held)) => (Some(pick), Some(held)),
            None => (None, None),
        };
        let result = match prepared {
            Ok((input, wants_logprobs)) => {
                let model = input.model.clone();
                let (text, positions, done) = crate::runner::run_batch(gw, input, pick).await;
                done.map(|o| {
                    gw.stats.record(&o);
                    let lp = wants_logprobs.then_some(positions.as_slice());
                    let body = final_body(kind, &model, now_s(), &text, lp, &o);
                    (o.usage.price, hex::encode(o.task_id), body)
                })
            }
            Err(e) => Err(e),
        };
        drop(held);
        result
    };

    let _books = gw.batches.lock_books();
    let mut b = store.batch(&job.batch_id)?.unwrap_or(b);
    if b.status.is_final() {
        return Ok(());
    }
    match result {
        Ok((price, request_id, body)) => {
            b.completed = b.completed.saturating_add(1);
            b.cost = b.cost.saturating_add(price);
            r.state = RequestState::Done {
                ok: true,
                output: json!({
                    "id": new_id("batch_req_"), "custom_id": r.custom_id,
                    "response": { "status_code": 200, "request_id": request_id, "body": body },
                    "error": null,
                }),
            };
        }
        Err(e) => {
            if let Some(wait) = retry_after(&e, r.attempts) {
                if b.status != BatchStatus::Cancelling {
                    r.attempts = r.attempts.saturating_add(1);
                    r.state = RequestState::Queued;
                    store.put_request(None, &job.batch_id, job.index, &r)?;
                    tracing::debug!(batch = %b.id, index = job.index, "batch request waits: {e}");
                    gw.batches.lock_queue().push_back(Queued {
                        not_before: Instant::now() + wait,
                        ..job
                    });
                    return Ok(());
                }
            }
            let message = e.to_string();
            let code = e.code();
            let status = e.into_response().status();
            let kind = match status.as_u16() {
                402 => "insufficient_quota",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            b.failed = b.failed.saturating_add(1);
            r.state = RequestState::Done {
                ok: false,
                output: json!({
                    "id": new_id("batch_req_"), "custom_id": r.custom_id,
                    "response": { "status_code": status.as_u16(), "request_id": null,
                                  "body": error_body(&message, kind, code) },
                    "error": null,
                }),
            };
        }
    }
    store.put_request(Some(&b), &job.batch_id, job.index, &r)?;
    if b.completed + b.failed >= b.total {
        let status = final_status(&b);
        finalize(gw, b, status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(custom_id: &str, body: Value) -> String {
        json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
            .to_string()
    }

    /// Each bad line is refused with its number and reason; the rest are
    /// queued in order; blank lines are skipped but counted.
    #[test]
    fn lines_are_checked_one_by_one() {
        let ok =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
        let file = [
            line("a", ok.clone()),
            "{not json".to_string(),
            String::new(),
            line("b", json!({"model": "m", "messages": []})),
            line("a", ok.clone()),
            json!({"method": "POST", "url": "/v1/chat/completions", "body": ok}).to_string(),
            json!({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": ok}).to_string(),
            json!({"custom_id": "d", "method": "POST", "url": "/v1/completions", "body": ok}).to_string(),
            line("e", json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true})),
            line("f", json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 7})),
            line("g", ok.clone()),
        ]
        .join("\n");
        let (records, errors) = check_lines("/v1/chat/completions", file.as_bytes()).unwrap();
        let queued: Vec<(u32, Option<&str>)> = records
            .iter()
            .filter(|r| r.state == RequestState::Queued)
            .map(|r| (r.line, r.custom_id.as_deref()))
            .collect();
        assert_eq!(queued, vec![(1, Some("a")), (11, Some("g"))]);
        let refused: Vec<(u32, &str)> = errors.iter().map(|e| (e.line, e.code.as_str())).collect();
        assert_eq!(
            refused,
            vec![
                (2, "invalid_json"),
                (4, "invalid_request"),
                (5, "duplicate_custom_id"),
                (6, "missing_custom_id"),
                (7, "invalid_method"),
                (8, "invalid_url"),
                (9, "invalid_request"),
                (10, "invalid_request"),
            ]
        );
        assert!(errors
            .iter()
            .all(|e| e.message.starts_with(&format!("line {}:", e.line))));
        assert_eq!(records.len(), 10);
        // Not UTF-8 at all: a refused line, not a panic.
        let (r, e) = check_lines("/v1/completions", b"\xff\xfe\n").unwrap();
        assert_eq!((r.len(), e[0].line), (1, 1));
    }

    #[test]
    fn price_cap_comes_from_metadata() {
        let m = |v: Value| v.as_object().cloned();
        let cap = |v: Value| price_cap(m(v).as_ref());
        assert_eq!(
            cap(json!({"strata_max_price_per_token": "5"})).unwrap(),
            Some(5)
        );
        assert_eq!(
            cap(json!({"strata_max_price_per_token": 7})).unwrap(),
            Some(7)
        );
        assert_eq!(cap(json!({"other": "x"})).unwrap(), None);
        assert_eq!(price_cap(None).unwrap(), None);
        assert!(cap(json!({"strata_max_price_per_token": "cheap"})).is_err());
        assert!(cap(json!({"strata_max_price_per_token": -1})).is_err());
    }
}
