//! `POST /v1/rollouts`: an RL rollout job. The job names the policy
//! version, the prompts (a seeded task of `strata-rl`, or explicit prompts
//! with their expected answers), a reward function, the group size and the
//! sampling; the answer gives, per prompt, the group of completions, each
//! with its token ids, per-token log-probabilities under the sampling
//! policy, the policy version that produced it, its task id, node, price
//! and receipt, and its reward.
//!
//! Every completion is an ordinary paid task (`runner`, logprobs asked
//! for): it is held against the escrow, paid with a voucher and receipted
//! like a chat completion, so a job is as auditable as inference. Group
//! members get distinct seeds derived from the job's
//! ([`strata_rl::member_seed`]), so a job is reproducible from its answer.
//! The gateway computes each reward with `strata-rl` from the text, as the
//! trainer and any auditor can: the number is data to recompute, not a
//! claim to trust.
//!
//! Policy version 0 is the base model; a version above 0 is a LoRA adapter
//! published by a trainer that nodes follow. Each completion of such a job
//! goes only to a node announcing that version (`routing`), runs with that
//! version's adapter from start to end, and its receipt names the version
//! and the adapter's digest, which the completion reports. A version no
//! fresh node announces is refused (503) before anything is paid.
//!
//! The same job may be a line of a deferred batch (`crate::batches`,
//! endpoint `/v1/rollouts`): [`check`] is this endpoint's validation and
//! [`run_job`] its runner, given how to run one completion (here at once,
//! there on a node the batch queue found idle room on), so a line's result
//! body is what this endpoint answers.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_rl::rewards::RewardFn;
use strata_wire::task::{ChatTurn, PositionLogprobs, Prompt, Sampling, MAX_PROMPT_BYTES};

use crate::http;
use crate::openai::DEFAULT_MAX_TOKENS;
use crate::runner::{self, Event, Outcome, TaskInput};
use crate::{GatewayError, Inner};

/// Largest group of completions per prompt.
pub const MAX_GROUP_SIZE: i64 = 16;
/// Most completions (prompts × group size) in one job.
pub const MAX_COMPLETIONS: usize = 256;
/// Longest completion a rollout may ask for: the nodes' default limit.
pub const MAX_ROLLOUT_TOKENS: i64 = 1024;
/// Completions of one job running at once: enough to fill a node's batch
/// without taking every slot of a small network from other clients.
const CONCURRENCY: usize = 8;

/// `POST /v1/rollouts` body. Unknown fields are refused: a misplaced
/// sampling field would otherwise be silently ignored and change the data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutRequest {
    model: String,
    /// A number or a string of one.
    policy_version: Value,
    /// A seeded task of `strata-rl`.
    task: Option<TaskRef>,
    /// Explicit prompts (instead of `task`).
    prompts: Option<Vec<ExplicitPrompt>>,
    /// The reward function; a task's own by default.
    reward: Option<String>,
    /// Signed, so that 0 or a negative size is refused by range.
    group_size: i64,
    #[serde(default)]
    sampling: SamplingRequest,
    max_tokens: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRef {
    name: String,
    seed: u64,
    /// Prompts to generate.
    count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplicitPrompt {
    prompt: String,
    /// The right answer the reward compares with (ignored by `format`).
    #[serde(default)]
    expected: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplingRequest {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    seed: Option<u64>,
}

/// A validated job.
pub(crate) struct Job {
    pub(crate) model: String,
    pub(crate) policy_version: u64,
    reward: &'static RewardFn,
    /// (prompt, expected answer), in order.
    prompts: Vec<(String, String)>,
    group_size: u64,
    max_tokens: u32,
    sampling: Sampling,
    task: Option<Value>,
}

/// `POST /v1/rollouts`.
pub(crate) async fn rollouts(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let (key, req) = read_request(&headers, read)?;
        let job = validate(req)?;
        if gw.accounts.get(&key).is_none() {
            return Err(GatewayError::Unauthorized);
        }
        if !gw.router.is_empty() && !gw.router.models().contains(&job.model) {
            return Err(GatewayError::UnknownModel(job.model));
        }
        if job.policy_version > 0 && gw.router.candidates(&job.model, job.policy_version, &[]).is_empty() {
            return Err(GatewayError::NoCapacity(format!(
                "no node serving {} holds policy version {} (versions served: {:?}); nodes fetch a version once its trainer publishes it and they follow that trainer",
                job.model,
                job.policy_version,
                gw.router.policy_versions(&job.model)
            )));
        }
        let run = |input| complete(gw.clone(), input);
        let answer = run_job(key, job, CONCURRENCY, run).await?;
        Ok(Json(answer).into_response())
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    gw.metrics.http("rollouts", response.status().as_u16());
    response
}

/// The bearer token, the body (413 over the size limit, checked before
/// anything is buffered) and the parsed request, as the chat endpoints read
/// them.
fn read_request(
    headers: &HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Result<(String, RolloutRequest), GatewayError> {
    let body = http::body(read)?;
    let key = http::api_key(headers)?;
    Ok((key, http::parse(&body)?))
}

/// A batch line's body checked as this endpoint checks one (everything
/// but the key and what the network serves, which are the queue's to meet
/// when the line runs), with the sampling seed pinned in the body when it
/// had none, so that a line run again after a restart is the same job.
pub(crate) fn check(body: &Value) -> Result<(Job, Value), GatewayError> {
    let req: RolloutRequest =
        serde_json::from_value(body.clone()).map_err(|e| bad(format!("invalid body: {e}")))?;
    let job = validate(req)?;
    let mut pinned = body.clone();
    if let Some(o) = pinned.as_object_mut() {
        let sampling = o.entry("sampling").or_insert_with(|| json!({}));
        if let Some(s) = sampling.as_object_mut() {
            s.insert("seed".into(), json!(job.sampling.seed));
        }
    }
    Ok((job, pinned))
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(message.into())
}

/// The policy version asked for (whether a node holds it is the router's).
pub(crate) fn policy_version(v: &Value) -> Result<u64, GatewayError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("policy_version must be a non-negative integer (or a string of one)"))
}

fn validate(req: RolloutRequest) -> Result<Job, GatewayError> {
    let policy_version = policy_version(&req.policy_version)?;
    if !(1..=MAX_GROUP_SIZE).contains(&req.group_size) {
        return Err(bad(format!(
            "group_size must be between 1 and {MAX_GROUP_SIZE}"
        )));
    }
    let group_size = req.group_size.unsigned_abs();
    let reward_name = |default: Option<&str>| -> Result<&'static RewardFn, GatewayError> {
        let name = req
            .reward
            .as_deref()
            .or(default)
            .ok_or_else(|| bad("reward is required with explicit prompts"))?;
        strata_rl::reward(name).map_err(|e| bad(e.to_string()))
    };
    let too_many = |prompts: u64| {
        bad(format!(
            "the job asks for {prompts} prompts × group_size {group_size} = {} completions; at most {MAX_COMPLETIONS}",
            prompts.saturating_mul(group_size)
        ))
    };
    let fits = |prompts: u64| prompts.saturating_mul(group_size) <= MAX_COMPLETIONS as u64;
    let (reward, prompts, task) = match (req.task, req.prompts) {
        (Some(t), None) => {
            if t.count < 1 {
                return Err(bad("task.count must be at least 1"));
            }
            if !fits(t.count.unsigned_abs()) {
                return Err(too_many(t.count.unsigned_abs()));
            }
            let count = usize::try_from(t.count).map_err(|_| too_many(t.count.unsigned_abs()))?;
            let generated =
                strata_rl::generate(&t.name, t.seed, count).map_err(|e| bad(e.to_string()))?;
            let own = generated.first().map(|p| p.reward);
            let reward = reward_name(own)?;
            let prompts = generated
                .into_iter()
                .map(|p| (p.prompt, p.expected))
                .collect();
            let task = json!({ "name": t.name, "seed": t.seed, "count": t.count });
            (reward, prompts, Some(task))
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(bad("prompts must not be empty"));
            }
            if !fits(list.len() as u64) {
                return Err(too_many(list.len() as u64));
            }
            let reward = reward_name(None)?;
            for (i, p) in list.iter().enumerate() {
                if p.prompt.is_empty() {
                    return Err(bad(format!("prompts[{i}].prompt is empty")));
                }
                if p.prompt.len() > MAX_PROMPT_BYTES {
                    return Err(bad(format!(
                        "prompts[{i}].prompt exceeds {MAX_PROMPT_BYTES} bytes"
                    )));
                }
                reward
                    .check_expected(&p.expected)
                    .map_err(|e| bad(format!("prompts[{i}].expected: {e}")))?;
            }
            let prompts = list.into_iter().map(|p| (p.prompt, p.expected)).collect();
            (reward, prompts, None)
        }
        _ => return Err(bad("give exactly one of task or prompts")),
    };
    let max_tokens = req.max_tokens.unwrap_or(i64::from(DEFAULT_MAX_TOKENS));
    if !(1..=MAX_ROLLOUT_TOKENS).contains(&max_tokens) {
        return Err(bad(format!(
            "max_tokens must be between 1 and {MAX_ROLLOUT_TOKENS}"
        )));
    }
    let s = req.sampling;
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad("sampling.temperature must be between 0 and 2"));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("sampling.top_p must be in (0, 1]"));
    }
    Ok(Job {
        model: req.model,
        policy_version,
        reward,
        prompts,
        group_size,
        max_tokens: u32::try_from(max_tokens).map_err(|_| bad("max_tokens out of range"))?,
        sampling: Sampling {
            temperature,
            top_p,
            top_k: s.top_k.unwrap_or(0),
            // Drawn once and returned, so the job can be replayed.
            seed: s.seed.unwrap_or_else(rand::random),
        },
        task,
    })
}

/// One completion's text and per-token log-probabilities, and its paid
/// outcome.
async fn complete(
    gw: Arc<Inner>,
    input: TaskInput,
) -> Result<(String, Vec<PositionLogprobs>, Outcome), GatewayError> {
    let mut rx = runner::spawn(gw, input);
    let (mut text, mut positions) = (String::new(), Vec::new());
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t, p) => {
                text.push_str(&t);
                positions.extend(p);
            }
            Event::Done(done) => return Ok((text, positions, (*done)?)),
        }
    }
    Err(GatewayError::Internal(
        "task ended without an outcome".into(),
    ))
}

/// A log-probability as JSON (`-inf` has no JSON number: -9999, OpenAI's
/// floor, as the chat API writes it).
fn logprob(l: f32) -> f64 {
    if l.is_finite() {
        f64::from(l).min(0.0)
    } else {
        -9999.0
    }
}

/// Runs `job`'s completions, at most `concurrency` at once, each by
/// `complete` (paid by `api_key`'s escrow), and answers as
/// `POST /v1/rollouts` does; an error when none ran (the first one's).
pub(crate) async fn run_job<F, Fut>(
    api_key: String,
    job: Job,
    concurrency: usize,
    mut complete: F,
) -> Result<Value, GatewayError>
where
    F: FnMut(TaskInput) -> Fut,
    Fut: Future<Output = Result<(String, Vec<PositionLogprobs>, Outcome), GatewayError>>,
{
    let sampling = job.sampling;
    let members: Vec<(usize, u64)> = (0..job.prompts.len())
        .flat_map(|i| (0..job.group_size).map(move |m| (i, m)))
        .collect();
    let runs = stream::iter(members.iter().copied().map(|(i, m)| {
        let seed = strata_rl::member_seed(sampling.seed, i as u64, m);
        let input = TaskInput {
            api_key: api_key.clone(),
            model: job.model.clone(),
            prompt: Prompt::Chat(vec![ChatTurn {
                role: "user".into(),
                content: job.prompts[i].0.clone(),
            }]),
            max_tokens: job.max_tokens,
            sampling: Sampling { seed, ..sampling },
            stop: Vec::new(),
            stream: false,
            // The sampled token's log-probability only: what a policy
            // gradient needs.
            logprobs: Some(0),
            policy_version: job.policy_version,
        };
        let run = complete(input);
        async move { (seed, run.await) }
    }))
    .buffered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await;

    let mut results: Vec<Value> = job
        .prompts
        .iter()
        .enumerate()
        .map(|(i, (prompt, expected))| {
            json!({ "index": i, "prompt": prompt, "expected": expected, "completions": [] })
        })
        .collect();
    let (mut paid, mut failed, mut price) = (0u64, 0u64, 0u64);
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
    let mut first_error = None;
    for (&(i, m), (seed, run)) in members.iter().zip(runs) {
        let entry = match run {
            Ok((text, positions, o)) => {
                let expected = &job.prompts[i].1;
                let reward = job
                    .reward
                    .score(expected, &text)
                    .map_err(|e| GatewayError::Internal(format!("reward: {e}")))?;
                paid += 1;
                price = price.saturating_add(o.usage.price);
                prompt_tokens += u64::from(o.usage.prompt_tokens);
                completion_tokens += u64::from(o.usage.completion_tokens);
                json!({
                    "index": m, "seed": seed, "text": text,
                    "token_ids": positions.iter().map(|p| p.sampled.token).collect::<Vec<_>>(),
                    "logprobs": positions.iter().map(|p| logprob(p.sampled.logprob)).collect::<Vec<_>>(),
                    "finish_reason": match o.finish {
                        strata_wire::task::Finish::Length => "length",
                        _ => "stop",
                    },
                    // The receipt's word (checked against the job's by the
                    // runner), with the adapter that ran.
                    "policy_version": o.receipt.body.adapter.map_or(0, |a| a.policy_version),
                    "adapter": o.receipt.body.adapter.map(|a| hex::encode(a.adapter)),
                    "task_id": hex::encode(o.task_id),
                    "node": strata_chain::Pubkey::from(o.node.0).to_string(),
                    "model_hash": hex::encode(o.receipt.body.model_hash),
                    "price": o.usage.price,
                    "voucher_cumulative": o.receipt.body.voucher.cumulative,
                    "receipt": hex::encode(o.receipt.encode()),
                    "usage": { "prompt_tokens": o.usage.prompt_tokens,
                               "completion_tokens": o.usage.completion_tokens },
                    "reward": reward,
                })
            }
            Err(e) => {
                failed += 1;
                let v = json!({ "index": m, "seed": seed,
                                "error": { "message": e.to_string(), "code": e.code() } });
                first_error.get_or_insert(e);
                v
            }
        };
        if let Some(list) = results[i]["completions"].as_array_mut() {
            list.push(entry);
        }
    }
    if paid == 0 {
        // Nothing ran: the job's refusal is its first task's (402, 503, ...).
        return Err(first_error.unwrap_or_else(|| GatewayError::Internal("empty job".into())));
    }
    let id = format!("rollout-{:016x}", rand::random::<u64>());
    Ok(json!({
        "id": id, "object": "rollout",
        "created": strata_service::now_ms() / 1000,
        "model": job.model,
        "policy_version": job.policy_version,
        "reward": { "name": job.reward.name, "version": job.reward.version },
        "task": job.task,
        "group_size": job.group_size,
        "max_tokens": job.max_tokens,
        "sampling": { "temperature": sampling.temperature, "top_p": sampling.top_p,
                      "top_k": sampling.top_k, "seed": sampling.seed },
        "results": results,
        "usage": { "completions": paid, "failed": failed, "price": price,
                   "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens },
    }))
}
