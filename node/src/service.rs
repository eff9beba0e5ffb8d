//! The node's side of the task protocol (see `strata_wire::task`): admit,
//! stream by long poll, settle against a voucher, sign and hand off the
//! receipt.
//!
//! A task that names a policy version ([`TaskRequest::StartPolicy`]) runs
//! with that version's adapter from the node's [`PolicyStore`], taken once
//! when the task is admitted: the engine holds the `Arc` for the whole
//! sequence, so a newer version arriving (or this one being evicted) while
//! it runs changes nothing for it; the switch happens at sequence
//! boundaries. Its receipt names the version and the adapter's digest
//! ([`AdapterPart`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_chain::{Keypair, Signer};
use strata_engine::{ChatMessage, Engine, GenerateRequest, TokenLogprobs};
use strata_p2p::{IncomingRequest, NodeId};
use strata_wire::hop::{HopErrorKind, HopOpen};
use strata_wire::task::{
    Finish, PositionLogprobs, Prompt, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec,
    TokenLogprob, Usage, MAX_LOGPROB_BYTES, MAX_PROMPT_BYTES, MAX_TASK_MESSAGE_BYTES,
    MAX_TOP_LOGPROBS,
};
use strata_wire::{decode, encode, tokens_hash, AdapterPart, Receipt, ReceiptBody, Voucher};
use tokio::sync::watch;
use tracing::Instrument;

use crate::archive::{Archive, TaskRecord};
use crate::cheat::Cheat;
use crate::hop::{HeadStart, Hops};
use crate::openings::sampling_params;
use crate::outbox::Outbox;
use crate::payments::Payments;
use crate::policy::PolicyStore;
use crate::worker::{append_text, Job, Progress, Running, TaskId, Worker};

/// How long one poll waits for new output before answering with nothing.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// Finished, unpaid tasks a client may have before it must settle: the
/// credit a node extends (work is delivered before the voucher arrives).
const MAX_UNPAID_TASKS: usize = 16;
/// How long a shutting-down node waits for callers to settle finished tasks.
pub const SETTLE_GRACE: Duration = Duration::from_secs(5);
/// Finished tasks not settled within this time are dropped (and their client
/// stays blocked until it settles or the node restarts).
const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

/// Prices and limits of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Model name served.
    pub model: String,
    /// SHA-256 of the model file.
    pub model_hash: [u8; 32],
    /// Price per billed token, base units.
    pub price_per_token: u64,
    /// Sequences admitted at once.
    pub max_concurrent: usize,
    /// Longest completion allowed per task.
    pub max_tokens: u32,
    /// Serve dishonestly this way (the testnet's cheating nodes).
    pub cheat: Option<Cheat>,
}

struct Task {
    client: [u8; 32],
    prompt_tokens: Vec<u32>,
    /// The sampling the receipt commits to.
    sampling: strata_wire::Sampling,
    progress: watch::Receiver<Progress>,
    started: std::time::Instant,
    /// Started as the first hop of a pipeline (settled per hop, not here).
    hop: bool,
    /// The policy it runs with (None: the base model).
    adapter: Option<AdapterPart>,
}

#[derive(Default)]
struct Ledger {
    /// Per client: finished tasks waiting for their vouchers.
    unsettled: HashMap<[u8; 32], HashSet<TaskId>>,
    tasks: HashMap<TaskId, Task>,
}

/// The task service; cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServiceConfig,
    engine: Arc<Engine>,
    worker: Worker,
    hops: Option<Hops>,
    key: Keypair,
    ledger: Mutex<Ledger>,
    outbox: Outbox,
    archive: Arc<Archive>,
    payments: Arc<Payments>,
    policies: Option<PolicyStore>,
    draining: std::sync::atomic::AtomicBool,
}

impl Service {
    /// A service over a running engine thread, and over the hop runtime when
    /// the node holds only part of the model (it then serves only as a
    /// pipeline hop). `payments` is the node's voucher ledger, shared with
    /// the hop runtime; `policies` the versions it holds of the trainers it
    /// follows (None: it serves the base model only).
    #[allow(clippy::too_many_arguments)] // one per part of the node it joins
    pub fn new(
        config: ServiceConfig,
        worker: Worker,
        hops: Option<Hops>,
        key: Keypair,
        outbox: Outbox,
        archive: Arc<Archive>,
        payments: Arc<Payments>,
        policies: Option<PolicyStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                engine: worker.engine().clone(),
                worker,
                hops,
                key,
                ledger: Mutex::new(Ledger::default()),
                outbox,
                archive,
                payments,
                policies,
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Receipts not yet handed to the relayer.
    pub fn receipts_pending(&self) -> usize {
        self.inner.outbox.pending()
    }

    /// Vouchers accepted (whole tasks and hops) and the base units they
    /// paid for.
    pub fn payments(&self) -> (u64, u64) {
        self.inner.payments.totals()
    }

    /// CPU time spent serving (forward passes), microseconds.
    pub fn serving_cpu_micros(&self) -> u64 {
        self.inner.worker.cpu_micros()
    }

    /// Sequences running now.
    pub fn active(&self) -> usize {
        self.lock()
            .tasks
            .values()
            .filter(|t| t.progress.borrow().done.is_none())
            .count()
    }

    /// Stops admitting tasks and waits (up to `limit`) until running tasks
    /// have finished, finished tasks have been settled (allowing callers
    /// [`SETTLE_GRACE`] for that) and every receipt has been handed off.
    /// Returns true if everything drained in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        let ran = wait_until(deadline, || self.active() == 0).await;
        let grace = (tokio::time::Instant::now() + SETTLE_GRACE).min(deadline);
        let settled = wait_until(grace, || self.lock().tasks.is_empty()).await;
        let handed = wait_until(deadline, || self.inner.outbox.pending() == 0).await;
        ran && settled && handed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half-written
        // (every update is one insert or remove), so recover from poisoning.
        self.inner.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request from the network.
    pub async fn handle(&self, req: IncomingRequest) {
        let resp = match decode::<TaskRequest>(&req.payload, MAX_TASK_MESSAGE_BYTES) {
            Ok(r) => {
                let span = strata_service::task_span(&r.task_id());
                self.answer(req.from, r).instrument(span).await
            }
            Err(e) => error(TaskErrorKind::BadRequest, e.to_string()),
        };
        if req.respond(encode(&resp)).is_err() {
            tracing::debug!("could not answer a task request: p2p is shutting down");
        }
    }

    /// Answers a decoded request from `from` (also used directly by tests).
    pub async fn answer(&self, from: NodeId, req: TaskRequest) -> TaskResponse {
        match req {
            TaskRequest::Start(spec) => self.start(spec, None, None, 0).await,
            TaskRequest::StartLogprobs { spec, top_logprobs } => {
                if top_logprobs > MAX_TOP_LOGPROBS {
                    return error(
                        TaskErrorKind::BadRequest,
                        format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
                    );
                }
                self.start(spec, None, Some(top_logprobs), 0).await
            }
            TaskRequest::StartPolicy {
                spec,
                top_logprobs,
                policy_version,
            } => {
                if top_logprobs.is_some_and(|t| t > MAX_TOP_LOGPROBS) {
                    return error(
                        TaskErrorKind::BadRequest,
                        format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
                    );
                }
                if policy_version == 0 {
                    return error(
                        TaskErrorKind::BadRequest,
                        "policy version 0 is the base model: start it without a version".into(),
                    );
                }
                self.start(spec, None, top_logprobs, policy_version).await
            }
            TaskRequest::StartHop { spec, open } => {
                self.start(spec, Some((from, open, Vec::new())), None, 0)
                    .await
            }
            TaskRequest::ResumeHop {
                spec,
                open,
                produced,
            } => {
                self.start(spec, Some((from, open, produced)), None, 0)
                    .await
            }
            TaskRequest::PollLogprobs {
                task_id,
                from_byte,
                from_token,
                to_end,
            } => {
                self.poll_logprobs(task_id, from_byte, from_token, to_end)
                    .await
            }
            TaskRequest::Poll {
                task_id,
                from_byte,
                to_end,
            } => self.poll(task_id, from_byte, to_end).await,
            TaskRequest::PollHop {
                task_id,
                from_byte,
                from_token,
            } => self.poll_hop(task_id, from_byte, from_token).await,
            TaskRequest::Settle { task_id, voucher } => self.settle(task_id, voucher),
            TaskRequest::Cancel { task_id } => {
                let on_hops = self.inner.hops.as_ref().is_some_and(|h| h.cancel(&task_id));
                if !on_hops {
                    self.inner.worker.submit(Job::Cancel(task_id));
                }
                TaskResponse::Cancelled
            }
        }
    }

    /// Admits a task: on the whole model (`hop` None), or as the first hop
    /// of the route `hop` names (opened by its caller `from`), continuing
    /// after the tokens a failed route produced (none on a first start).
    /// `logprobs` asks the engine for each token's log-probabilities (whole
    /// model only: the pipeline's last hop samples, and does not send them).
    /// `policy_version` above 0 runs the task with that version's adapter
    /// (whole model only), taken from the store now and kept for the whole
    /// sequence.
    async fn start(
        &self,
        spec: TaskSpec,
        hop: Option<(NodeId, HopOpen, Vec<u32>)>,
        logprobs: Option<u8>,
        policy_version: u64,
    ) -> TaskResponse {
        let c = &self.inner.config;
        let shard = self.inner.hops.as_ref().map(Hops::layers);
        match (&hop, &shard, &self.inner.hops) {
            (None, Some(s), _) => {
                return error(
                    TaskErrorKind::UnknownModel,
                    format!(
                        "this node holds blocks {}..{} of {} only: it serves as a pipeline hop",
                        s.start, s.end, c.model
                    ),
                )
            }
            (Some(_), _, None) => {
                return error(
                    TaskErrorKind::BadRequest,
                    "this node does not serve as a pipeline hop".into(),
                )
            }
            (Some((_, open, produced)), _, _) => {
                let k = produced.len() as u64;
                if open.index != 0
                    || open.task_id != spec.task_id
                    || open.client != spec.client
                    || open.sampling != spec.sampling
                    || k >= u64::from(spec.max_tokens)
                    || u64::from(open.sample_offset) != k
                    || u64::from(open.max_new) > u64::from(spec.max_tokens) - k
                {
                    return error(
                        TaskErrorKind::BadRequest,
                        "the route's open does not match the task (index 0, same task, client, \
                         sampling, sampling continuing after the tokens produced, at most \
                         max_tokens in all)"
                            .into(),
                    );
                }
                let vocab = self.inner.engine.model.config().vocab_size;
                if let Some(t) = produced.iter().find(|&&t| t as usize >= vocab) {
                    return error(
                        TaskErrorKind::BadRequest,
                        format!("produced token {t} is outside the vocabulary of {vocab}"),
                    );
                }
            }
            (None, None, _) => {}
        }
        if self
            .inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return error(TaskErrorKind::Busy, "node is shutting down".into());
        }
        if spec.model != c.model {
            return error(
                TaskErrorKind::UnknownModel,
                format!("this node serves {}, not {}", c.model, spec.model),
            );
        }
        if spec.prompt.text_len() > MAX_PROMPT_BYTES {
            return error(
                TaskErrorKind::PromptTooLong,
                format!("prompt exceeds {MAX_PROMPT_BYTES} bytes"),
            );
        }
        if spec.max_tokens == 0 || spec.max_tokens > c.max_tokens {
            return error(
                TaskErrorKind::BadRequest,
                format!("max_tokens must be between 1 and {}", c.max_tokens),
            );
        }
        let sampling = sampling_params(&spec.sampling);
        if let Err(e) = sampling.validate() {
            return error(TaskErrorKind::BadRequest, e.to_string());
        }
        // The version is looked up once, here: the Arc taken is what the
        // whole sequence runs with, whatever the store holds later.
        let adapter = match policy_version {
            0 => None,
            v => {
                match self.inner.policies.as_ref().and_then(|p| p.get(v)) {
                    Some(a) => {
                        // Pinned before the version is checked again: an
                        // eviction either sees the pin and keeps the file
                        // for this task's audit, or came first and the
                        // task is refused here.
                        if let Err(e) = self.inner.archive.pin(v, &a.digest()) {
                            return error(
                                TaskErrorKind::Internal,
                                format!("could not keep policy version {v} for audits: {e}"),
                            );
                        }
                        let still = self.inner.policies.as_ref().and_then(|p| p.get(v));
                        if !still.is_some_and(|b| Arc::ptr_eq(&a, &b)) {
                            return error(
                                TaskErrorKind::UnknownPolicy,
                                format!("policy version {v} was just evicted"),
                            );
                        }
                        Some(a)
                    }
                    None => {
                        let held = self
                            .inner
                            .policies
                            .as_ref()
                            .map(PolicyStore::versions)
                            .unwrap_or_default();
                        return error(
                            TaskErrorKind::UnknownPolicy,
                            if self.inner.policies.is_none() {
                                format!("this node follows no trainer: it does not serve policy version {v}")
                            } else {
                                format!("this node does not hold policy version {v} (it holds {held:?})")
                            },
                        );
                    }
                }
            }
        };
        let adapter_part = adapter.as_ref().map(|a| AdapterPart {
            policy_version,
            adapter: a.digest(),
        });
        let engine = &self.inner.engine;
        let prompt = match &spec.prompt {
            Prompt::Chat(turns) => {
                let msgs: Vec<ChatMessage> = turns
                    .iter()
                    .map(|t| ChatMessage::new(&t.role, &t.content))
                    .collect();
                engine.chat_prompt(&msgs)
            }
            Prompt::Text(t) => engine.tokenizer.encode(t, false),
        };
        let prompt = match prompt {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return error(TaskErrorKind::BadRequest, "empty prompt".into()),
            Err(e) => return error(TaskErrorKind::BadRequest, e.to_string()),
        };
        let context = engine.model.config().context_length;
        if prompt.len() + spec.max_tokens as usize > context {
            return error(
                TaskErrorKind::PromptTooLong,
                format!(
                    "prompt of {} tokens plus max_tokens {} exceeds the context of {context}",
                    prompt.len(),
                    spec.max_tokens
                ),
            );
        }
        self.inner.payments.ensure_client(spec.client).await;
        let (tx, rx) = watch::channel(Progress::default());
        {
            let mut l = self.lock();
            let unpaid = l.unsettled.get(&spec.client).map_or(0, HashSet::len);
            if unpaid >= MAX_UNPAID_TASKS {
                return error(
                    TaskErrorKind::Payment,
                    format!("{unpaid} finished tasks are not paid yet; settle them first"),
                );
            }
            if l.tasks.contains_key(&spec.task_id) {
                return error(TaskErrorKind::BadRequest, "duplicate task id".into());
            }
            let active = l
                .tasks
                .values()
                .filter(|t| t.progress.borrow().done.is_none())
                .count();
            if active >= c.max_concurrent {
                return error(
                    TaskErrorKind::Busy,
                    format!("node is at capacity ({active} tasks)"),
                );
            }
            l.tasks.insert(
                spec.task_id,
                Task {
                    client: spec.client,
                    prompt_tokens: prompt.clone(),
                    sampling: spec.sampling,
                    progress: rx,
                    started: std::time::Instant::now(),
                    hop: hop.is_some(),
                    adapter: adapter_part,
                },
            );
        }
        let prompt_tokens = prompt.len() as u32;
        if let (Some((from, open, produced)), Some(hops)) = (hop, &self.inner.hops) {
            let mut running = Running::new(spec.task_id, spec.stop, tx);
            // A continuation's earlier tokens count as streamed: their text
            // is published as the failed route's first hop published it, so
            // the caller's next poll goes on from where it stopped.
            running.tokens = produced.clone();
            if append_text(engine, &mut running) {
                self.lock().tasks.remove(&spec.task_id);
                return error(
                    TaskErrorKind::BadRequest,
                    "the produced tokens already end the task at a stop string".into(),
                );
            }
            let mut prompt = prompt;
            prompt.extend(&produced);
            let head = HeadStart { prompt, running };
            if let Err(refusal) = hops.open(from, &open, Some(head)) {
                self.lock().tasks.remove(&spec.task_id);
                let kind = match refusal.kind {
                    HopErrorKind::Busy => TaskErrorKind::Busy,
                    _ => TaskErrorKind::BadRequest,
                };
                return error(kind, refusal.detail);
            }
            return TaskResponse::Started {
                prompt_tokens,
                price_per_token: c.price_per_token,
            };
        }
        let stop_tokens = engine.end_of_turn_tokens();
        let cheat = c.cheat;
        let sampling = match cheat {
            // The receipt will claim the client's settings regardless.
            Some(cheat) => sampling_params(&cheat.sampling(spec.sampling)),
            None => sampling,
        };
        let request = GenerateRequest {
            prompt: prompt.clone(),
            max_new_tokens: spec.max_tokens as usize,
            sampling,
            stop_tokens,
            record_commitments: true,
            retain_states: false,
            tamper: cheat.and_then(|c| c.tamper(engine.model.n_layers())),
            logprobs,
            adapter,
        };
        if !self.inner.worker.submit(Job::Start {
            task: spec.task_id,
            request,
            stop: spec.stop,
            progress: tx,
        }) {
            self.lock().tasks.remove(&spec.task_id);
            return error(TaskErrorKind::Internal, "the engine has stopped".into());
        }
        TaskResponse::Started {
            prompt_tokens,
            price_per_token: c.price_per_token,
        }
    }

    async fn poll(&self, task_id: TaskId, from_byte: u64, to_end: bool) -> TaskResponse {
        let from = usize::try_from(from_byte).unwrap_or(usize::MAX);
        let ready = |p: &Progress| p.done.is_some() || (!to_end && p.text.len() > from);
        match self.wait(task_id, ready).await {
            Ok((p, finished)) => TaskResponse::Output {
                text: p.text.get(from..).unwrap_or_default().to_string(),
                finished,
            },
            Err(e) => e,
        }
    }

    /// A pipelined task's poll: the text and the token ids after what the
    /// caller has (it needs the ids to resume elsewhere if a hop fails).
    async fn poll_hop(&self, task_id: TaskId, from_byte: u64, from_token: u32) -> TaskResponse {
        let from = usize::try_from(from_byte).unwrap_or(usize::MAX);
        let from_token = from_token as usize;
        let ready =
            |p: &Progress| p.done.is_some() || p.text.len() > from || p.tokens.len() > from_token;
        match self.wait(task_id, ready).await {
            Ok((p, finished)) => TaskResponse::HopOutput {
                text: p.text.get(from..).unwrap_or_default().to_string(),
                tokens: p.tokens.get(from_token..).unwrap_or_default().to_vec(),
                finished,
            },
            Err(e) => e,
        }
    }

    /// A poll of a task started with logprobs: the text after `from_byte`
    /// and the log-probabilities of the positions after `from_token`, as
    /// many as fit in [`MAX_LOGPROB_BYTES`]; the task's end is reported only
    /// with its last position, so a caller polls until it has them all.
    async fn poll_logprobs(
        &self,
        task_id: TaskId,
        from_byte: u64,
        from_token: u32,
        to_end: bool,
    ) -> TaskResponse {
        let from = usize::try_from(from_byte).unwrap_or(usize::MAX);
        let from_token = from_token as usize;
        let ready = |p: &Progress| {
            p.done.is_some() || (!to_end && (p.text.len() > from || p.logprobs.len() > from_token))
        };
        let (p, finished) = match self.wait(task_id, ready).await {
            Ok(x) => x,
            Err(e) => return e,
        };
        let tokenizer = &self.inner.engine.tokenizer;
        let pending = p.logprobs.get(from_token..).unwrap_or_default();
        let logprobs = logprob_chunk(
            pending,
            // Special tokens as their text: the piece the model produced.
            |t| tokenizer.decode_bytes(&[t], false).unwrap_or_default(),
            MAX_LOGPROB_BYTES,
        );
        let all = logprobs.len() == pending.len();
        TaskResponse::LogprobOutput {
            text: p.text.get(from..).unwrap_or_default().to_string(),
            logprobs,
            finished: finished.filter(|_| all),
        }
    }

    /// Waits (long poll) until `ready` or the poll's time is up; returns the
    /// progress and, once the task has ended, how and its usage. A task that
    /// failed is an error (and is forgotten, unbilled).
    async fn wait(
        &self,
        task_id: TaskId,
        ready: impl Fn(&Progress) -> bool,
    ) -> Result<(Progress, Option<(Finish, Usage)>), TaskResponse> {
        let Some(mut rx) = self.lock().tasks.get(&task_id).map(|t| t.progress.clone()) else {
            return Err(error(TaskErrorKind::UnknownTask, "unknown task".into()));
        };
        // Ignore a timeout: the caller just polls again.
        let _ = tokio::time::timeout(POLL_WAIT, rx.wait_for(|p| ready(p))).await;
        let p = rx.borrow().clone();
        let Some(done) = p.done.clone() else {
            return Ok((p, None));
        };
        if let Some(e) = done.error {
            self.lock().tasks.remove(&task_id);
            return Err(error(TaskErrorKind::Internal, e));
        }
        let usage = self.usage(&task_id, p.tokens.len());
        if self.lock().tasks.get(&task_id).is_some_and(|t| t.hop) {
            // Nothing to settle here: each hop settles on the hop protocol.
            self.lock().tasks.remove(&task_id);
        }
        let finish = if done.cancelled {
            Finish::Cancelled
        } else if done.stopped {
            Finish::Stop
        } else {
            Finish::Length
        };
        Ok((p, Some((finish, usage))))
    }

    /// Usage of a finished task; also marks its client as owing a voucher.
    fn usage(&self, task_id: &TaskId, completion: usize) -> Usage {
        let mut l = self.lock();
        let Some(t) = l.tasks.get(task_id) else {
            return Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
                price: 0,
                expected_cumulative: 0,
            };
        };
        let client = t.client;
        let prompt_tokens = t.prompt_tokens.len() as u32;
        let completion_tokens = completion as u32;
        if t.hop {
            // Each hop settles its own part on the hop protocol: nothing is
            // owed here.
            let owed = self.inner.payments.owed(&client);
            return Usage {
                prompt_tokens,
                completion_tokens,
                price: 0,
                expected_cumulative: owed,
            };
        }
        let price = (u64::from(prompt_tokens) + u64::from(completion_tokens))
            .saturating_mul(self.inner.config.price_per_token);
        l.unsettled.entry(client).or_default().insert(*task_id);
        let owed = self.inner.payments.owed(&client);
        Usage {
            prompt_tokens,
            completion_tokens,
            price,
            expected_cumulative: owed.saturating_add(price),
        }
    }

    fn settle(&self, task_id: TaskId, voucher: Voucher) -> TaskResponse {
        let me = self.inner.key.pubkey();
        let (client, prompt, sampling, progress, adapter) = {
            let l = self.lock();
            let Some(t) = l.tasks.get(&task_id) else {
                return error(TaskErrorKind::UnknownTask, "unknown task".into());
            };
            let progress = t.progress.borrow().clone();
            let (prompt, sampling) = (t.prompt_tokens.clone(), t.sampling);
            (t.client, prompt, sampling, progress, t.adapter)
        };
        if self.lock().tasks.get(&task_id).is_some_and(|t| t.hop) {
            self.lock().tasks.remove(&task_id);
            return error(
                TaskErrorKind::BadRequest,
                "a pipeline task settles per hop, on the hop protocol".into(),
            );
        }
        let Some(done) = progress.done.filter(|d| d.error.is_none()) else {
            return error(TaskErrorKind::BadRequest, "task has not finished".into());
        };
        let usage = self.usage(&task_id, progress.tokens.len());
        if let Err(why) = self.inner.payments.accept(&client, &voucher, usage.price) {
            return error(TaskErrorKind::Payment, why);
        }
        let body = ReceiptBody {
            // A base-model receipt keeps version 2 and its bytes.
            version: match adapter {
                Some(_) => strata_wire::receipt::ADAPTED_RECEIPT_VERSION,
                None => strata_wire::receipt::RECEIPT_VERSION,
            },
            task_id,
            node: me.to_bytes(),
            model_hash: self.inner.config.model_hash,
            input_hash: tokens_hash(&prompt),
            output_hash: tokens_hash(&progress.tokens),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            commitment_root: match self.inner.config.cheat {
                Some(Cheat::WrongRoot) => {
                    let mut r = done.commitment_root;
                    r[0] ^= 0xff;
                    r
                }
                _ => done.commitment_root,
            },
            sampling,
            price: usage.price,
            voucher,
            finished_at_ms: strata_service::now_ms(),
            hop: None,
            adapter,
        };
        let receipt = match Receipt::sign(&self.inner.key, body) {
            Ok(r) => r,
            Err(e) => return error(TaskErrorKind::Internal, e.to_string()),
        };
        {
            let mut l = self.lock();
            if let Some(u) = l.unsettled.get_mut(&client) {
                u.remove(&task_id);
            }
            l.tasks.remove(&task_id);
            // Forget tasks whose caller never came back.
            l.tasks.retain(|_, t| t.started.elapsed() < SETTLE_DEADLINE);
        }
        // What an audit will need: without it the node could not open the
        // task and would fail the audit, so a failure here is loud.
        let record = TaskRecord {
            receipt: receipt.clone(),
            prompt,
            output: progress.tokens.clone(),
        };
        if let Err(e) = self.inner.archive.put(&record) {
            tracing::error!(task = %hex::encode(task_id), "archiving a settled task: {e}");
        }
        self.inner.outbox.push(receipt.clone());
        tracing::debug!(
            price = receipt.body.price,
            tokens = receipt.body.work_units(),
            "settled"
        );
        TaskResponse::Settled(Box::new(receipt))
    }
}

/// The wire form of the first positions of `pending` whose encoding fits
/// in `budget` bytes (at least one, so that a caller always makes
/// progress), each token with its piece's bytes.
fn logprob_chunk(
    pending: &[TokenLogprobs],
    piece: impl Fn(u32) -> Vec<u8>,
    budget: usize,
) -> Vec<PositionLogprobs> {
    let entry = |token: u32, logprob: f64| TokenLogprob {
        token,
        bytes: piece(token),
        logprob: logprob as f32,
    };
    let mut out = Vec::new();
    let mut size = 0;
    for lp in pending {
        let pos = PositionLogprobs {
            sampled: entry(lp.token, lp.logprob),
            top: lp.top.iter().map(|&(t, l)| entry(t, l)).collect(),
        };
        size += pos.encoded_len();
        if size > budget && !out.is_empty() {
            break;
        }
        out.push(pos);
    }
    out
}

/// Polls `done` until it holds (true) or `until` passes (false).
async fn wait_until(until: tokio::time::Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error(kind: TaskErrorKind, message: String) -> TaskResponse {
    TaskResponse::Error { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(token: u32, top: usize) -> TokenLogprobs {
        TokenLogprobs {
            token,
            logprob: -0.5,
            top: (0..top as u32)
                .map(|i| (token + i, -0.5 - f64::from(i)))
                .collect(),
        }
    }

    #[test]
    fn a_logprob_chunk_stops_at_its_budget_but_always_moves_on() {
        let pending: Vec<TokenLogprobs> = (0..10).map(|t| position(t * 100, 3)).collect();
        let piece = |t: u32| t.to_string().into_bytes();
        let all = logprob_chunk(&pending, piece, usize::MAX);
        assert_eq!(all.len(), 10);
        assert_eq!(all[3].sampled.bytes, b"300");
        assert_eq!(all[3].top[2].token, 302);
        let one = all[0].encoded_len();
        // Room for three and a half: three.
        let three = logprob_chunk(&pending, piece, one * 7 / 2);
        assert_eq!(three, all[..3]);
        // Room for none: still one, or a caller would poll forever.
        assert_eq!(logprob_chunk(&pending, piece, 1), all[..1]);
        assert!(logprob_chunk(&[], piece, 1).is_empty());
    }
}
