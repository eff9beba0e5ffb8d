//! The node's side of the task protocol (see `strata_wire::task`): admit,
//! stream by long poll, settle against a voucher, sign and hand off the
//! receipt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_chain::{Keypair, Pubkey, Signer};
use strata_engine::{ChatMessage, Engine, GenerateRequest};
use strata_p2p::IncomingRequest;
use strata_wire::task::{
    Finish, Prompt, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec, Usage, MAX_PROMPT_BYTES,
    MAX_TASK_MESSAGE_BYTES,
};
use strata_wire::{decode, encode, tokens_hash, Receipt, ReceiptBody, Voucher};
use tokio::sync::watch;

use crate::archive::{Archive, TaskRecord};
use crate::cheat::Cheat;
use crate::openings::sampling_params;
use crate::outbox::Outbox;
use crate::worker::{Job, Progress, TaskId, Worker};

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
}

#[derive(Default)]
struct Ledger {
    /// Per client: the largest voucher total accepted (what it owes us in all).
    owed: HashMap<[u8; 32], u64>,
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
    key: Keypair,
    ledger: Mutex<Ledger>,
    outbox: Outbox,
    archive: Arc<Archive>,
    chain: Option<strata_chain::rpc::ChainClient>,
    draining: std::sync::atomic::AtomicBool,
}

impl Service {
    /// A service over a running engine thread. With `chain`, the first task
    /// of an unknown client starts its ledger at what the chain has redeemed.
    pub fn new(
        config: ServiceConfig,
        engine: Arc<Engine>,
        worker: Worker,
        key: Keypair,
        outbox: Outbox,
        archive: Arc<Archive>,
        chain: Option<strata_chain::rpc::ChainClient>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                engine,
                worker,
                key,
                ledger: Mutex::new(Ledger::default()),
                outbox,
                archive,
                chain,
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
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
            Ok(r) => self.answer(r).await,
            Err(e) => error(TaskErrorKind::BadRequest, e.to_string()),
        };
        if req.respond(encode(&resp)).is_err() {
            tracing::debug!("could not answer a task request: p2p is shutting down");
        }
    }

    /// Answers a decoded request (also used directly by tests).
    pub async fn answer(&self, req: TaskRequest) -> TaskResponse {
        match req {
            TaskRequest::Start(spec) => self.start(spec).await,
            TaskRequest::Poll {
                task_id,
                from_byte,
                to_end,
            } => self.poll(task_id, from_byte, to_end).await,
            TaskRequest::Settle { task_id, voucher } => self.settle(task_id, voucher),
            TaskRequest::Cancel { task_id } => {
                self.inner.worker.submit(Job::Cancel(task_id));
                TaskResponse::Cancelled
            }
        }
    }

    async fn start(&self, spec: TaskSpec) -> TaskResponse {
        let c = &self.inner.config;
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
        self.ensure_client(spec.client).await;
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
                },
            );
        }
        let mut stop_tokens: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| engine.tokenizer.token_id(t))
            .collect();
        stop_tokens.extend(engine.tokenizer.eos());
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
        };
        let prompt_tokens = prompt.len() as u32;
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

    /// Starts a client's ledger at what the chain already redeemed, so a
    /// restarted node expects vouchers above that.
    async fn ensure_client(&self, client: [u8; 32]) {
        if self.lock().owed.contains_key(&client) {
            return;
        }
        let mut redeemed = 0;
        if let Some(chain) = &self.inner.chain {
            let channel =
                strata_chain::pda::channel(&Pubkey::from(client), &self.inner.key.pubkey());
            match chain
                .account::<strata_chain::accounts::Channel>(&channel, "channel")
                .await
            {
                Ok(Some(c)) => redeemed = c.redeemed,
                Ok(None) => {}
                Err(e) => tracing::warn!("reading channel {channel}: {e}"),
            }
        }
        self.lock().owed.entry(client).or_insert(redeemed);
    }

    async fn poll(&self, task_id: TaskId, from_byte: u64, to_end: bool) -> TaskResponse {
        let Some(mut rx) = self.lock().tasks.get(&task_id).map(|t| t.progress.clone()) else {
            return error(TaskErrorKind::UnknownTask, "unknown task".into());
        };
        let from = usize::try_from(from_byte).unwrap_or(usize::MAX);
        let ready = |p: &Progress| p.done.is_some() || (!to_end && p.text.len() > from);
        // Ignore a timeout: the caller just polls again.
        let _ = tokio::time::timeout(POLL_WAIT, rx.wait_for(ready)).await;
        let p = rx.borrow().clone();
        let text = p.text.get(from..).unwrap_or_default().to_string();
        let Some(done) = p.done else {
            return TaskResponse::Output {
                text,
                finished: None,
            };
        };
        if let Some(e) = done.error {
            self.lock().tasks.remove(&task_id);
            return error(TaskErrorKind::Internal, e);
        }
        let usage = self.usage(&task_id, p.tokens.len());
        let finish = if done.cancelled {
            Finish::Cancelled
        } else if done.stopped {
            Finish::Stop
        } else {
            Finish::Length
        };
        TaskResponse::Output {
            text,
            finished: Some((finish, usage)),
        }
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
        let price = (u64::from(prompt_tokens) + u64::from(completion_tokens))
            .saturating_mul(self.inner.config.price_per_token);
        l.unsettled.entry(client).or_default().insert(*task_id);
        let owed = l.owed.get(&client).copied().unwrap_or(0);
        Usage {
            prompt_tokens,
            completion_tokens,
            price,
            expected_cumulative: owed.saturating_add(price),
        }
    }

    fn settle(&self, task_id: TaskId, voucher: Voucher) -> TaskResponse {
        let me = self.inner.key.pubkey();
        let (client, prompt, sampling, progress) = {
            let l = self.lock();
            let Some(t) = l.tasks.get(&task_id) else {
                return error(TaskErrorKind::UnknownTask, "unknown task".into());
            };
            let progress = t.progress.borrow().clone();
            (t.client, t.prompt_tokens.clone(), t.sampling, progress)
        };
        let Some(done) = progress.done.filter(|d| d.error.is_none()) else {
            return error(TaskErrorKind::BadRequest, "task has not finished".into());
        };
        if voucher.client != client {
            return error(
                TaskErrorKind::Payment,
                "voucher is not from the task's client".into(),
            );
        }
        if voucher.node != me.to_bytes() {
            return error(TaskErrorKind::Payment, "voucher pays another node".into());
        }
        if let Err(e) = voucher.verify() {
            return error(TaskErrorKind::Payment, e.to_string());
        }
        let usage = self.usage(&task_id, progress.tokens.len());
        if voucher.cumulative < usage.expected_cumulative {
            return error(
                TaskErrorKind::Payment,
                format!(
                    "voucher total {} is below the {} owed",
                    voucher.cumulative, usage.expected_cumulative
                ),
            );
        }
        let body = ReceiptBody {
            version: strata_wire::receipt::RECEIPT_VERSION,
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
        };
        let receipt = match Receipt::sign(&self.inner.key, body) {
            Ok(r) => r,
            Err(e) => return error(TaskErrorKind::Internal, e.to_string()),
        };
        {
            let mut l = self.lock();
            l.owed.insert(client, voucher.cumulative);
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
        TaskResponse::Settled(Box::new(receipt))
    }
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
