//! HTTP routes: `/v1/models`, `/v1/chat/completions` and `/v1/completions`
//! (both with `stream: true` as server-sent events), `/v1/stats` and
//! `/health`. Every refusal is an OpenAI-style error object with a fitting
//! status: 400 malformed, 401 bad key, 402 deposit exhausted, 404 unknown
//! model, 413 body too large, 500 the gateway's own failure (the chain out of
//! reach), 502 node failure, 503 no capacity.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use strata_wire::task::{ChatTurn, Finish, PositionLogprobs, Prompt, Sampling};

use crate::openai::{
    chat_logprobs, completion_logprobs, error_body, ChatRequest, Common, CompletionRequest, Usage,
    DEFAULT_MAX_TOKENS, MAX_BODY_BYTES, MAX_CHAT_TOP_LOGPROBS, MAX_COMPLETION_LOGPROBS,
};
use crate::runner::{self, Event, Outcome, TaskInput};
use crate::{GatewayError, Inner};

/// Counters over completed tasks (what `/v1/stats` reports).
#[derive(Debug, Default)]
pub struct Stats {
    /// Tasks completed and paid.
    pub tasks: AtomicU64,
    /// Tokens billed.
    pub tokens: AtomicU64,
    /// Sum of start-to-last-token times, µs.
    pub generation_us: AtomicU64,
    /// Sum of start-to-receipt times, µs.
    pub total_us: AtomicU64,
}

impl Stats {
    pub(crate) fn record(&self, o: &Outcome) {
        self.tasks.fetch_add(1, Ordering::Relaxed);
        self.tokens.fetch_add(
            u64::from(o.usage.prompt_tokens) + u64::from(o.usage.completion_tokens),
            Ordering::Relaxed,
        );
        self.generation_us
            .fetch_add(o.generation.as_micros() as u64, Ordering::Relaxed);
        self.total_us
            .fetch_add(o.total.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The gateway's routes.
pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/models", get(models))
        .route("/v1/stats", get(stats))
        .route("/v1/workers", get(workers))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .route("/v1/rollouts", post(crate::rollouts::rollouts))
        .merge(crate::batches::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(inner)
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            GatewayError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            GatewayError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error"),
            GatewayError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid_request_error"),
            GatewayError::PaymentRequired(_) => {
                (StatusCode::PAYMENT_REQUIRED, "insufficient_quota")
            }
            GatewayError::UnknownModel(_) | GatewayError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "invalid_request_error")
            }
            GatewayError::Busy(_)
            | GatewayError::NoCapacity(_)
            | GatewayError::ChainUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_error")
            }
            GatewayError::Node(_) => (StatusCode::BAD_GATEWAY, "server_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let body = error_body(&self.to_string(), kind, self.code());
        // When to come back: a slot frees within about a second under
        // load, an RPC outage lasts longer. Clients that honour it (the
        // official ones do) queue instead of flooding a full gateway, which
        // the load campaign's 200 clients did at one retry a second.
        let retry_after = match &self {
            GatewayError::Busy(_) | GatewayError::NoCapacity(_) => Some("1"),
            GatewayError::ChainUnavailable(_) => Some("5"),
            _ => None,
        };
        match retry_after {
            Some(secs) => (status, [(header::RETRY_AFTER, secs)], Json(body)).into_response(),
            None => (status, Json(body)).into_response(),
        }
    }
}

async fn models(State(gw): State<Arc<Inner>>) -> Json<Value> {
    let data: Vec<Value> = gw
        .router
        .models()
        .into_iter()
        .map(|m| json!({ "id": m, "object": "model", "created": 0, "owned_by": "strata" }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

async fn stats(State(gw): State<Arc<Inner>>) -> Json<Value> {
    let s = &gw.stats;
    Json(json!({
        "nodes": gw.router.len(),
        "tasks": s.tasks.load(Ordering::Relaxed),
        "tokens": s.tokens.load(Ordering::Relaxed),
        "generation_us": s.generation_us.load(Ordering::Relaxed),
        "total_us": s.total_us.load(Ordering::Relaxed),
    }))
}

/// `GET /v1/workers?model=M&policy_version=V`: the fresh nodes serving that
/// model (and version) with what they announced: price, one sequence's
/// speed, slots and load, versions held. A trainer picks its rollout
/// workers from this (`strata-trainer workers`); it is the capacity gossip
/// every peer hears anyway, so it needs no key.
async fn workers(
    State(gw): State<Arc<Inner>>,
    axum::extract::Query(q): axum::extract::Query<WorkersQuery>,
) -> Json<Value> {
    let list: Vec<Value> = gw
        .router
        .candidates(&q.model, q.policy_version.unwrap_or(0), &[])
        .into_iter()
        .map(|(id, c)| {
            json!({
                "node": strata_chain::Pubkey::from(id.0).to_string(),
                "price_per_token": c.price_per_token,
                "tokens_per_sec": c.tokens_per_sec,
                "max_concurrent": c.max_concurrent,
                "active": c.active,
                "policy_versions": c.policies.iter().map(|p| p.version).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": list }))
}

/// The query of `GET /v1/workers`.
#[derive(Debug, serde::Deserialize)]
struct WorkersQuery {
    model: String,
    policy_version: Option<u64>,
}

pub(crate) fn api_key(headers: &HeaderMap) -> Result<String, GatewayError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string())
        .ok_or(GatewayError::Unauthorized)
}

/// The request body, or why it could not be read: over the size limit (413,
/// checked before anything is buffered) or cut short.
pub(crate) fn body(read: Result<Bytes, BytesRejection>) -> Result<Bytes, GatewayError> {
    read.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::TooLarge(format!("request body over {MAX_BODY_BYTES} bytes"))
        } else {
            GatewayError::BadRequest(r.body_text())
        }
    })
}

/// The JSON body as `T`, or a 400 saying why not.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, GatewayError> {
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Checks the shared fields and turns them into the task's settings.
fn settings(c: &Common) -> Result<(u32, Sampling, Vec<String>), GatewayError> {
    if c.n.unwrap_or(1) != 1 {
        return Err(GatewayError::BadRequest("only n = 1 is supported".into()));
    }
    let max_tokens = c
        .max_completion_tokens
        .or(c.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(GatewayError::BadRequest(
            "max_tokens must be at least 1".into(),
        ));
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(GatewayError::BadRequest(
            "temperature must be between 0 and 2".into(),
        ));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(GatewayError::BadRequest("top_p must be in (0, 1]".into()));
    }
    let stop = c.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 64) {
        return Err(GatewayError::BadRequest(
            "stop: at most 4 non-empty sequences of up to 64 bytes".into(),
        ));
    }
    let sampling = Sampling {
        temperature,
        top_p,
        top_k: c.top_k.unwrap_or(0),
        seed: c.seed.unwrap_or_else(rand::random),
    };
    Ok((max_tokens, sampling, stop))
}

async fn chat(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body(read)?;
        let key = api_key(&headers)?;
        let c = checked_chat(parse(&body)?)?;
        serve(gw.clone(), key, c.common, c.prompt, c.kind, c.logprobs).await
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    gw.metrics.http("chat", response.status().as_u16());
    response
}

/// A request body checked as its endpoint checks it, with what the runner
/// needs of it (what a batch line is checked with too).
pub(crate) struct Checked {
    /// Model, sampling and length fields.
    pub(crate) common: Common,
    /// The prompt.
    pub(crate) prompt: Prompt,
    /// Which endpoint's shape the answer takes.
    pub(crate) kind: Kind,
    /// Log-probabilities asked for.
    pub(crate) logprobs: Option<u8>,
}

/// Checks a chat body's own fields (the shared ones are checked by
/// [`task_input`]).
pub(crate) fn checked_chat(req: ChatRequest) -> Result<Checked, GatewayError> {
    if req.messages.is_empty() {
        return Err(GatewayError::BadRequest(
            "messages must not be empty".into(),
        ));
    }
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(GatewayError::BadRequest(
                "top_logprobs requires logprobs: true".into(),
            ))
        }
        (true, top) => Some(logprob_count(
            top.unwrap_or(0),
            MAX_CHAT_TOP_LOGPROBS,
            "top_logprobs",
        )?),
    };
    let prompt = Prompt::Chat(
        req.messages
            .into_iter()
            .map(|m| ChatTurn {
                role: m.role,
                content: m.content,
            })
            .collect(),
    );
    Ok(Checked {
        common: req.common,
        prompt,
        kind: Kind::Chat,
        logprobs,
    })
}

async fn completions(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body(read)?;
        let key = api_key(&headers)?;
        let c = checked_completion(parse(&body)?)?;
        serve(gw.clone(), key, c.common, c.prompt, c.kind, c.logprobs).await
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    gw.metrics.http("completions", response.status().as_u16());
    response
}

/// Checks a completion body's own fields (the shared ones are checked by
/// [`task_input`]).
pub(crate) fn checked_completion(req: CompletionRequest) -> Result<Checked, GatewayError> {
    if req.prompt.is_empty() {
        return Err(GatewayError::BadRequest("prompt must not be empty".into()));
    }
    let logprobs = req
        .logprobs
        .map(|n| logprob_count(n, MAX_COMPLETION_LOGPROBS, "logprobs"))
        .transpose()?;
    Ok(Checked {
        common: req.common,
        prompt: Prompt::Text(req.prompt),
        kind: Kind::Text,
        logprobs,
    })
}

/// Checks a requested number of alternatives per token against `0..=max`.
fn logprob_count(n: i64, max: i64, field: &str) -> Result<u8, GatewayError> {
    if (0..=max).contains(&n) {
        u8::try_from(n).map_err(|_| GatewayError::BadRequest(format!("{field} out of range")))
    } else {
        Err(GatewayError::BadRequest(format!(
            "{field} must be between 0 and {max}"
        )))
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(gw): State<Arc<Inner>>) -> Response {
    let peers = gw.p2p.stats().await.unwrap_or_default();
    let text = gw.metrics.render(gw.router.len(), &peers);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Which endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Text,
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::Cancelled => "stop",
        Finish::Length => "length",
    }
}

fn usage(o: &Outcome) -> Usage {
    Usage {
        prompt_tokens: o.usage.prompt_tokens,
        completion_tokens: o.usage.completion_tokens,
        total_tokens: o.usage.prompt_tokens + o.usage.completion_tokens,
    }
}

/// The Strata extension on every final object: who served it, what it cost, and the receipt.
fn strata(o: &Outcome) -> Value {
    let mut v = json!({
        "task_id": hex::encode(o.task_id),
        "node": strata_chain::Pubkey::from(o.node.0).to_string(),
        "price": o.usage.price,
        "voucher_cumulative": o.receipt.body.voucher.cumulative,
        "receipt": hex::encode(o.receipt.encode()),
    });
    if !o.hops.is_empty() {
        // A pipelined task: every hop's part, receipt and voucher.
        v["hops"] = o
            .hops
            .iter()
            .map(|r| {
                let h = r.body.hop.as_ref();
                json!({
                    "node": strata_chain::Pubkey::from(r.body.node).to_string(),
                    "blocks": h.map(|h| [h.start, h.end]),
                    "segment": h.map(|h| h.segment),
                    "cells": h.map(|h| h.cells),
                    "price": r.body.price,
                    "voucher_cumulative": r.body.voucher.cumulative,
                    "receipt": hex::encode(r.encode()),
                })
            })
            .collect();
    }
    v
}

/// The task a checked request asks for, once its shared fields are checked.
pub(crate) fn task_input(
    api_key: String,
    common: &Common,
    prompt: Prompt,
    logprobs: Option<u8>,
) -> Result<TaskInput, GatewayError> {
    let (max_tokens, sampling, stop) = settings(common)?;
    Ok(TaskInput {
        api_key,
        model: common.model.clone(),
        prompt,
        max_tokens,
        sampling,
        stop,
        stream: common.stream,
        logprobs,
        // The chat and completions endpoints serve the base model.
        policy_version: 0,
    })
}

/// A finished task's answer as the endpoint returns it unstreamed (a batch
/// output line's `response.body` too); `positions`: the logprobs asked for.
pub(crate) fn final_body(
    kind: Kind,
    model: &str,
    created: u64,
    text: &str,
    positions: Option<&[PositionLogprobs]>,
    o: &Outcome,
) -> Value {
    let id = hex::encode(&o.task_id[..12]);
    let lp = match (kind, positions) {
        (_, None) => Value::Null,
        (Kind::Chat, Some(p)) => chat_logprobs(p),
        (Kind::Text, Some(p)) => completion_logprobs(p, &mut 0),
    };
    match kind {
        Kind::Chat => json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion",
            "created": created, "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
                          "logprobs": lp, "finish_reason": finish_reason(o.finish) }],
            "usage": usage(o), "strata": strata(o),
        }),
        Kind::Text => json!({
            "id": format!("cmpl-{id}"), "object": "text_completion",
            "created": created, "model": model,
            "choices": [{ "index": 0, "text": text, "logprobs": lp,
                          "finish_reason": finish_reason(o.finish) }],
            "usage": usage(o), "strata": strata(o),
        }),
    }
}

async fn serve(
    gw: Arc<Inner>,
    api_key: String,
    common: Common,
    prompt: Prompt,
    kind: Kind,
    logprobs: Option<u8>,
) -> Result<Response, GatewayError> {
    if gw.accounts.get(&api_key).is_none() {
        return Err(GatewayError::Unauthorized);
    }
    let input = task_input(api_key, &common, prompt, logprobs)?;
    if !gw.router.is_empty() && !gw.router.models().contains(&common.model) {
        return Err(GatewayError::UnknownModel(common.model));
    }
    let model = common.model.clone();
    let mut rx = runner::spawn(gw.clone(), input);
    let wants_logprobs = logprobs.is_some();
    // OpenAI's `created` is in Unix seconds.
    let created = strata_service::now_ms() / 1000;
    if !common.stream {
        let mut text = String::new();
        let mut positions = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Text(t, p) => {
                    text.push_str(&t);
                    positions.extend(p);
                }
                Event::Done(done) => {
                    let o = (*done)?;
                    gw.stats.record(&o);
                    let lp = wants_logprobs.then_some(positions.as_slice());
                    let body = final_body(kind, &model, created, &text, lp, &o);
                    return Ok(Json(body).into_response());
                }
            }
        }
        return Err(GatewayError::Internal(
            "task ended without an outcome".into(),
        ));
    }

    // Streaming: wait for the first event so that refusals (402, 503, ...)
    // still get their status instead of a 200 stream carrying an error.
    let first = match rx.recv().await {
        Some(Event::Done(done)) => Event::Done(Box::new(Ok((*done)?))),
        Some(ev) => ev,
        None => {
            return Err(GatewayError::Internal(
                "task ended without an outcome".into(),
            ))
        }
    };
    let include_usage = common
        .stream_options
        .map(|o| o.include_usage)
        .unwrap_or(false);
    let id = format!("strata-{:016x}", rand::random::<u64>());
    let chunk = move |delta: Value,
                      logprobs: Value,
                      finish: Option<&str>,
                      extra: Option<(&str, Value)>|
          -> Value {
        let choice = match kind {
            Kind::Chat => {
                json!({ "index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish })
            }
            Kind::Text => {
                json!({ "index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                                   "logprobs": logprobs, "finish_reason": finish })
            }
        };
        let object = match kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        let mut v = json!({ "id": id, "object": object, "created": created, "model": model, "choices": [choice] });
        if let Some((k, x)) = extra {
            v[k] = x;
        }
        v
    };
    let opening = match kind {
        Kind::Chat => vec![chunk(
            json!({ "role": "assistant", "content": "" }),
            Value::Null,
            None,
            None,
        )],
        Kind::Text => vec![],
    };
    let rest =
        stream::once(async move { first }).chain(tokio_stream::wrappers::ReceiverStream::new(rx));
    let stats = gw.clone();
    // Completions' text offsets run on over the chunks.
    let mut offset = 0usize;
    let events = rest.flat_map(move |ev| {
        let out: Vec<Value> = match ev {
            Event::Text(t, p) => {
                let lp = match kind {
                    _ if !wants_logprobs => Value::Null,
                    Kind::Chat => chat_logprobs(&p),
                    Kind::Text => completion_logprobs(&p, &mut offset),
                };
                vec![chunk(json!({ "content": t }), lp, None, None)]
            }
            Event::Done(done) => match *done {
                Ok(o) => {
                    stats.stats.record(&o);
                    let mut v = vec![chunk(
                        json!({}),
                        Value::Null,
                        Some(finish_reason(o.finish)),
                        Some(("strata", strata(&o))),
                    )];
                    if include_usage {
                        let mut u = chunk(
                            json!({}),
                            Value::Null,
                            None,
                            Some(("usage", json!(usage(&o)))),
                        );
                        u["choices"] = json!([]);
                        v.push(u);
                    }
                    v
                }
                Err(e) => vec![error_body(&e.to_string(), "server_error", "task_failed")],
            },
        };
        stream::iter(out)
    });
    let sse = stream::iter(opening)
        .chain(events)
        .map(|v| Ok::<_, Infallible>(SseEvent::default().data(v.to_string())))
        .chain(stream::once(async {
            Ok(SseEvent::default().data("[DONE]"))
        }));
    Ok(Sse::new(sse)
        .keep_alive(KeepAlive::default())
        .into_response())
}
