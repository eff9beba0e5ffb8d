//! A node's part in layer-sharded pipelines: the hop protocol
//! (`strata_wire::hop`, on `HIDDEN_STATE`) over the blocks this node holds.
//!
//! A route's first hop is started by the task protocol
//! ([`strata_wire::task::TaskRequest::StartHop`], see `service.rs`): it
//! tokenizes, embeds and streams the text back to its caller. The others are
//! opened with [`HopRequest::Open`]. Each hop runs its blocks in one
//! continuous batch ([`engine`]), sends each step's rows to the next hop in
//! one message per next hop, and the last hop sends sampled tokens back to
//! the first. Every message is checked whole ([`table`]) before any of it
//! reaches the engine, and a sender that breaks the protocol is penalised on
//! the p2p layer. What a hop sends is in [`outbound`], how it moves to other
//! blocks in [`relocate`], how it is paid in
//! [`settle`].
//!
//! Each hop is paid for its part: after [`HopRequest::Finish`], its caller
//! sends [`HopRequest::Settle`] with the cells billed to it and a voucher,
//! and gets the hop's receipt (version 3, with a `HopPart` that links it to
//! its neighbours), which goes to the relayer like any receipt.

mod engine;
mod outbound;
mod relocate;
mod settle;
mod table;

use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use strata_chain::Keypair;
use strata_engine::{Engine, HiddenStates, HopFinished, HopInput, HopOptions};
use strata_p2p::{IncomingRequest, Misbehaviour, NodeId, P2pHandle, Protocol};
use strata_wire::hop::{
    CloseReason, HopErrorKind, HopOpen, HopRequest, HopResponse, HopSummary, StepEntry, TokenEntry,
    MAX_HOP_REQUEST_BYTES,
};
use strata_wire::protocols::HIDDEN_STATE;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use self::engine::{EngineEvent, HopEngine, HopJob};
use self::table::{Head, Refusal, Seq, SeqId, Table};
use crate::archive::Archive;
use crate::openings::sampling_params;
use crate::outbox::Outbox;
use crate::payments::Payments;
use crate::worker::{append_text, Done, Running};

/// A sequence nobody finished within this time is dropped (its caller went
/// away without a word).
const SEQ_DEADLINE: Duration = Duration::from_secs(600);

/// A running sequence fed nothing for this long (with no step of it in
/// the engine) is dropped: its route broke, or its opener only wanted to
/// hold one of this hop's slots. Far above any honest step time.
const SEQ_IDLE: Duration = Duration::from_secs(60);

/// Ended sequences one opener may leave unsettled before it must settle
/// (at least `max_concurrent`): the credit a hop extends, as
/// `MAX_UNPAID_TASKS` for whole tasks.
const MAX_UNSETTLED: usize = 16;

/// How long a cancelled first hop waits for the token on its way back
/// before it ends the sequence anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long a refusal's answer gets to leave before its penalty (which may
/// ban and disconnect the sender) is applied.
const PENALTY_AFTER: Duration = Duration::from_millis(100);

/// The hop runtime; cheap to clone.
#[derive(Clone)]
pub struct Hops {
    inner: Arc<Inner>,
}

/// What the hop runtime runs on and pays into.
pub(crate) struct HopSetup {
    /// The engine, holding blocks `layers` only.
    pub(crate) engine: Arc<Engine>,
    /// The blocks this node runs.
    pub(crate) layers: Range<usize>,
    /// Their profiled decode time per block and token, ms.
    pub(crate) layer_ms: f32,
    /// SHA-256 of the model file.
    pub(crate) model_hash: [u8; 32],
    /// Sequences running at once.
    pub(crate) max_concurrent: usize,
    /// Price per whole-model token; a hop bills `price × cells / n_layers`.
    pub(crate) price_per_token: u64,
    /// The node's key (signs receipts).
    pub(crate) key: Keypair,
    /// The p2p layer.
    pub(crate) p2p: P2pHandle,
    /// The node's voucher ledger (shared with the task service).
    pub(crate) payments: Arc<Payments>,
    /// Where receipts go (to the relayer).
    pub(crate) outbox: Outbox,
    /// What audits of settled hops will need.
    pub(crate) archive: Arc<Archive>,
}

/// The blocks a hop holds and the engine thread that runs them: replaced
/// whole when the node moves to other blocks ([`Hops::move_to`]).
struct Held {
    engine: Arc<Engine>,
    layers: Range<usize>,
    hop_engine: HopEngine,
    /// Profiled decode time per block and token, ms (what it announces).
    layer_ms: f32,
}

struct Inner {
    held: RwLock<Arc<Held>>,
    /// Where every engine thread, old or new, reports.
    events: mpsc::UnboundedSender<EngineEvent>,
    /// Set while the node drains before moving: new sequences are refused.
    moving: AtomicBool,
    model_hash: [u8; 32],
    max_concurrent: usize,
    price_per_token: u64,
    key: Keypair,
    p2p: P2pHandle,
    payments: Arc<Payments>,
    outbox: Outbox,
    archive: Arc<Archive>,
    table: Mutex<Table>,
    bytes_sent: AtomicU64,
}

/// What the first hop needs to start a sequence (the task service has
/// admitted and tokenized it).
pub(crate) struct HeadStart {
    pub(crate) prompt: Vec<u32>,
    pub(crate) running: Running,
}

impl Hops {
    /// Starts the runtime over `setup.engine`, which holds blocks
    /// `setup.layers` of the model whose file hashes to `setup.model_hash`.
    pub(crate) fn start(setup: HopSetup) -> Self {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let hop_engine = HopEngine::spawn(
            setup.engine.clone(),
            setup.layers.clone(),
            events_tx.clone(),
        );
        let hops = Self {
            inner: Arc::new(Inner {
                held: RwLock::new(Arc::new(Held {
                    engine: setup.engine,
                    layers: setup.layers,
                    hop_engine,
                    layer_ms: setup.layer_ms,
                })),
                events: events_tx,
                moving: AtomicBool::new(false),
                model_hash: setup.model_hash,
                max_concurrent: setup.max_concurrent,
                price_per_token: setup.price_per_token,
                key: setup.key,
                p2p: setup.p2p,
                payments: setup.payments,
                outbox: setup.outbox,
                archive: setup.archive,
                table: Mutex::new(Table::default()),
                bytes_sent: AtomicU64::new(0),
            }),
        };
        let h = hops.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                h.on_engine(ev);
            }
        });
        hops
    }

    /// The blocks this node runs.
    pub fn layers(&self) -> Range<usize> {
        self.held().layers.clone()
    }

    /// The engine holding those blocks.
    pub fn engine(&self) -> Arc<Engine> {
        self.held().engine.clone()
    }

    /// Profiled decode time per block and token of those blocks, ms.
    pub fn layer_ms(&self) -> f32 {
        self.held().layer_ms
    }

    fn held(&self) -> Arc<Held> {
        // A swap writes one whole Arc: a poisoned lock still holds a valid one.
        self.inner
            .held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sequences running here now.
    pub fn active(&self) -> usize {
        self.lock().running()
    }

    /// Hidden-state and token bytes this hop has sent to other hops.
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every update of the table is a whole insert, remove or field write.
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn me(&self) -> NodeId {
        self.inner.p2p.node_id()
    }

    /// Answers one request on `HIDDEN_STATE`, penalising a sender that broke
    /// the protocol.
    pub async fn handle(&self, req: IncomingRequest) {
        let from = req.from;
        let answer = match HopRequest::decode(&req.payload) {
            Ok(r) => match r.task_id() {
                Some(id) => {
                    let span = strata_service::task_span(&id);
                    self.answer(from, r).instrument(span).await
                }
                // Steps and tokens batch many tasks: no one span fits.
                None => self.answer(from, r).await,
            },
            Err(e) => Err(Refusal::new(HopErrorKind::BadShape, e.to_string())),
        };
        let (resp, penalty) = match answer {
            Ok(r) => (r, None),
            Err(refusal) => {
                tracing::debug!(peer = %from, kind = ?refusal.kind, "hop request refused: {}", refusal.detail);
                let penalty = refusal.severity.map(|severity| Misbehaviour::Application {
                    protocol: Protocol::App(HIDDEN_STATE.name),
                    severity,
                    detail: format!("{:?}: {}", refusal.kind, refusal.detail),
                });
                (HopResponse::error(refusal.kind, refusal.detail), penalty)
            }
        };
        if req.respond(strata_wire::encode(&resp)).is_err() {
            tracing::debug!("could not answer a hop request: p2p is shutting down");
        }
        if let Some(m) = penalty {
            // After the answer has had time to leave: a strike bans and
            // disconnects at once, and the sender should learn why.
            tokio::time::sleep(PENALTY_AFTER).await;
            let _ = self.inner.p2p.report(from, m).await;
        }
    }

    /// Answers a decoded request from `from`.
    async fn answer(&self, from: NodeId, req: HopRequest) -> Result<HopResponse, Refusal> {
        match req {
            HopRequest::Open(open) => {
                if open.index == 0 {
                    return Err(Refusal::new(
                        HopErrorKind::WrongLayer,
                        "the first hop is started with the task protocol (StartHop)",
                    ));
                }
                self.open(from, &open, None)?;
                Ok(HopResponse::Opened)
            }
            HopRequest::Step { entries, states } => self.step(from, &entries, &states),
            HopRequest::Tokens { entries } => self.tokens(from, &entries),
            HopRequest::Close {
                task_id,
                segment,
                reason,
            } => {
                let id = (task_id, segment);
                self.lock().check_opener(from, &id)?;
                self.end(&id, reason == CloseReason::Cancelled);
                self.close_in_engine(id).await;
                Ok(HopResponse::Closed)
            }
            HopRequest::Finish { task_id, segment } => {
                let id = (task_id, segment);
                self.lock().check_opener(from, &id)?;
                self.end(&id, false);
                self.close_in_engine(id).await;
                // Kept for `Settle` (or dropped at the deadline).
                let mut t = self.lock();
                match t.by_id_mut(&id) {
                    Some(Seq {
                        summary: Some(s),
                        failed: None,
                        ..
                    }) => Ok(HopResponse::Finished(*s)),
                    Some(Seq {
                        failed: Some(why), ..
                    }) => Err(Refusal::new(HopErrorKind::Internal, why.clone())),
                    _ => Err(Refusal::new(
                        HopErrorKind::Internal,
                        "the sequence left the engine without a summary",
                    )),
                }
            }
            HopRequest::Settle {
                task_id,
                segment,
                cells,
                voucher,
            } => {
                let id = (task_id, segment);
                self.lock().check_opener(from, &id)?;
                self.end(&id, false);
                self.close_in_engine(id).await;
                self.settle(&id, cells, voucher).await
            }
            HopRequest::Failed {
                task_id,
                segment,
                hop,
                detail,
            } => {
                let mut t = self.lock();
                let seq = t.by_id_mut(&(task_id, segment)).ok_or_else(|| {
                    Refusal::new(HopErrorKind::UnknownSequence, "no such sequence")
                })?;
                let named = seq.open.route.get(usize::from(hop)).map(|h| NodeId(h.node));
                let reporter_in_route = seq.open.route.iter().any(|h| NodeId(h.node) == from);
                if seq.head.is_none() || !reporter_in_route || named.is_none() {
                    return Err(Refusal::new(
                        HopErrorKind::NotYourSequence,
                        "only a hop of the route reports its failures to the first hop",
                    ));
                }
                fail(seq, format!("hop {hop} failed: {detail}"));
                Ok(HopResponse::Ack)
            }
        }
    }

    /// Opens a sequence on this hop after checking that the route puts this
    /// node, with exactly the blocks it holds, at `open.index`.
    pub(crate) fn open(
        &self,
        from: NodeId,
        open: &HopOpen,
        head: Option<HeadStart>,
    ) -> Result<(), Refusal> {
        open.validate()
            .map_err(|e| Refusal::new(HopErrorKind::BadShape, e.to_string()))?;
        let here = open
            .this_hop()
            .ok_or_else(|| Refusal::new(HopErrorKind::BadShape, "no such hop in the route"))?;
        let wrong = |m: String| Err(Refusal::new(HopErrorKind::WrongLayer, m));
        if NodeId(here.node) != self.me() {
            return wrong(format!("the route puts another node at hop {}", open.index));
        }
        if self.inner.moving.load(Ordering::SeqCst) {
            return Err(Refusal::new(
                HopErrorKind::Busy,
                "this node is moving to other blocks",
            ));
        }
        let h = self.held();
        let held = &h.layers;
        if usize::from(here.start) != held.start || usize::from(here.end) != held.end {
            return wrong(format!(
                "this node holds blocks {}..{}, not {}..{}",
                held.start, held.end, here.start, here.end
            ));
        }
        if open.model_hash != self.inner.model_hash
            || usize::from(open.n_layers) != h.engine.model.n_layers()
        {
            return wrong("this node holds part of another model".into());
        }
        if open.route.len() < 2 {
            return wrong("a one-hop route is a whole-model task (Start)".into());
        }
        // The model's own end-of-turn tokens always end a sequence, as on a
        // whole-model node; the caller (who has no tokenizer) may add more.
        let mut stop_tokens = h.engine.end_of_turn_tokens();
        stop_tokens.extend(&open.stop_tokens);
        let opts = HopOptions {
            sampling: sampling_params(&open.sampling),
            sample_offset: u64::from(open.sample_offset),
            stop_tokens: stop_tokens.clone(),
            max_new_tokens: open.max_new as usize,
            record_commitments: true,
            adapter: None,
        };
        let id = (open.task_id, open.segment);
        let key = {
            let mut t = self.lock();
            for old in t.stale(Instant::now(), SEQ_DEADLINE, SEQ_IDLE) {
                if let Some(s) = t.remove(&old) {
                    self.held().hop_engine.submit(HopJob::Close {
                        key: s.key,
                        reply: oneshot::channel().0,
                    });
                }
            }
            if t.contains(&id) {
                return Err(Refusal::new(
                    HopErrorKind::BadShape,
                    "this sequence is already open here",
                ));
            }
            let unsettled = t.unsettled_by(from);
            if unsettled >= self.inner.max_concurrent.max(MAX_UNSETTLED) {
                return Err(Refusal::new(
                    HopErrorKind::Payment,
                    format!("{unsettled} ended sequences of yours are not settled yet; settle them first"),
                ));
            }
            if t.running() >= self.inner.max_concurrent {
                return Err(Refusal::new(
                    HopErrorKind::Busy,
                    format!("{} sequences running here", t.running()),
                ));
            }
            let key = t.new_key();
            let (head, prompt) = match head {
                Some(h) => (
                    Some(Head {
                        running: h.running,
                        stop_tokens: stop_tokens.clone(),
                    }),
                    Some(h.prompt),
                ),
                None => (None, None),
            };
            let next_position = prompt.as_ref().map_or(0, |p| p.len() as u32);
            t.insert(Seq {
                id,
                key,
                open: open.clone(),
                opener: from,
                next_position,
                input_position: 0,
                in_engine: prompt.is_some(),
                ended: false,
                closing: false,
                failed: None,
                summary: None,
                sampled: Vec::new(),
                prompt: prompt.clone().unwrap_or_default(),
                fed: Vec::new(),
                inputs: Vec::new(),
                head,
                opened: Instant::now(),
                last_input: Instant::now(),
            });
            self.held().hop_engine.submit(HopJob::Open { key, opts });
            if let Some(p) = prompt {
                self.held().hop_engine.submit(HopJob::Push {
                    key,
                    input: HopInput::Tokens(p),
                });
            }
            key
        };
        tracing::debug!(key, task = %hex::encode(&id.0[..8]), index = open.index, "hop sequence opened");
        Ok(())
    }

    /// A step's rows: checked whole, then queued for the engine.
    fn step(
        &self,
        from: NodeId,
        entries: &[StepEntry],
        states: &[u8],
    ) -> Result<HopResponse, Refusal> {
        let bad = |m: String| Refusal::new(HopErrorKind::BadShape, m);
        // Sequences first: a stranger's message costs no decoding.
        self.lock().check_step(from, entries)?;
        let x =
            HiddenStates::decode(states, MAX_HOP_REQUEST_BYTES).map_err(|e| bad(e.to_string()))?;
        let cols = self.held().engine.model.config().hidden_size;
        if x.cols() != cols {
            return Err(bad(format!(
                "rows are {} wide, the model's are {cols}",
                x.cols()
            )));
        }
        let rows: u64 = entries.iter().map(|e| u64::from(e.rows)).sum();
        if x.rows() as u64 != rows {
            return Err(bad(format!(
                "{} rows for entries that add up to {rows}",
                x.rows()
            )));
        }
        let mut t = self.lock();
        // Again under the lock that marks them: nothing moved in between.
        let keys = t.check_step(from, entries)?;
        let mut start = 0;
        for (e, &key) in entries.iter().zip(&keys) {
            let n = e.rows as usize;
            let part = x.slice_rows(start, n).map_err(|e| bad(e.to_string()))?;
            start += n;
            if let Some(seq) = t.get_mut(key) {
                seq.in_engine = true;
                seq.last_input = Instant::now();
                seq.input_position = e.position;
                seq.next_position = e.position + e.rows;
                seq.inputs.push(part.clone());
            }
            self.held().hop_engine.submit(HopJob::Push {
                key,
                input: HopInput::States(part),
            });
        }
        Ok(HopResponse::Ack)
    }

    /// Sampled tokens at the first hop: streamed to the caller and, unless
    /// the sequence ended, embedded at the next step.
    fn tokens(&self, from: NodeId, entries: &[TokenEntry]) -> Result<HopResponse, Refusal> {
        let engine = self.held().engine.clone();
        let mut t = self.lock();
        let keys = t.check_tokens(from, entries)?;
        let mut ended = Vec::new();
        for (e, &key) in entries.iter().zip(&keys) {
            let Some(seq) = t.get_mut(key) else { continue };
            let Some(head) = seq.head.as_mut() else {
                continue;
            };
            head.running.tokens.push(e.token);
            let stop_string = append_text(&engine, &mut head.running);
            let stop_token = head.stop_tokens.contains(&e.token);
            if e.last || stop_string || head.running.cancelled {
                seq.ended = true;
                let done = Done {
                    stopped: stop_token || stop_string,
                    cancelled: head.running.cancelled,
                    commitment_root: [0; 32],
                    error: None,
                };
                let tokens = head.running.tokens.clone();
                head.running.progress.send_modify(|p| {
                    p.tokens = tokens;
                    p.done = Some(done);
                });
                ended.push(seq.id);
                continue;
            }
            seq.in_engine = true;
            seq.last_input = Instant::now();
            seq.input_position = e.position;
            seq.next_position = e.position + 1;
            seq.fed.push(e.token);
            self.held().hop_engine.submit(HopJob::Push {
                key,
                input: HopInput::Tokens(vec![e.token]),
            });
        }
        drop(t);
        for id in ended {
            let h = self.clone();
            tokio::spawn(async move { h.close_in_engine(id).await });
        }
        Ok(HopResponse::Ack)
    }

    /// Ends the first hop's task for its caller (it went away).
    pub(crate) fn cancel(&self, task_id: &[u8; 32]) -> bool {
        let ids = self.lock().segments_of(task_id);
        let mut waiting = Vec::new();
        for id in &ids {
            let mut t = self.lock();
            match t.by_id_mut(id) {
                // The first hop with a row on its way down the route: the
                // token coming back ends it (`tokens`), so every hop has run
                // the same positions, their summaries link, and all are paid
                // for what they ran.
                Some(seq) if !seq.ended && seq.head.is_some() => {
                    if let Some(head) = seq.head.as_mut() {
                        head.running.cancelled = true;
                    }
                    waiting.push(*id);
                }
                _ => {
                    drop(t);
                    self.end(id, true);
                }
            }
        }
        if !waiting.is_empty() {
            // A token that never comes back (a hop died) must not keep the
            // caller waiting: end it anyway after a grace.
            let h = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CANCEL_GRACE).await;
                for id in &waiting {
                    h.end(id, true);
                }
            });
        }
        !ids.is_empty()
    }

    /// Marks a sequence ended; on the first hop the caller's stream ends too.
    fn end(&self, id: &SeqId, cancelled: bool) {
        let mut t = self.lock();
        let Some(seq) = t.by_id_mut(id) else { return };
        if seq.ended {
            return;
        }
        seq.ended = true;
        if let Some(head) = seq.head.as_mut() {
            head.running.cancelled |= cancelled;
            let done = Done {
                stopped: false,
                cancelled: head.running.cancelled,
                commitment_root: [0; 32],
                error: None,
            };
            head.running.progress.send_modify(|p| {
                if p.done.is_none() {
                    p.done = Some(done);
                }
            });
        }
    }

    /// Closes the sequence in the engine (once) and keeps its summary for
    /// `Finish`; a second caller waits for the first one's result.
    async fn close_in_engine(&self, id: SeqId) {
        let key = {
            let mut t = self.lock();
            let Some(seq) = t.by_id_mut(&id) else { return };
            if seq.summary.is_some() || seq.failed.is_some() {
                return;
            }
            if seq.closing {
                None
            } else {
                seq.closing = true;
                Some(seq.key)
            }
        };
        let Some(key) = key else {
            // Another close is in flight: its reply comes within one step.
            for _ in 0..500 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let mut t = self.lock();
                match t.by_id_mut(&id) {
                    Some(s) if s.summary.is_none() && s.failed.is_none() => {}
                    _ => return,
                }
            }
            return;
        };
        let (tx, rx) = oneshot::channel();
        if !self
            .held()
            .hop_engine
            .submit(HopJob::Close { key, reply: tx })
        {
            return;
        }
        let result = rx.await;
        let mut t = self.lock();
        let Some(seq) = t.by_id_mut(&id) else { return };
        match result {
            Ok(Ok(f)) => {
                seq.summary = Some(summary(&f));
                seq.sampled = f.sampled;
            }
            Ok(Err(e)) => fail(seq, e),
            Err(_) => fail(seq, "the hop engine stopped".into()),
        }
    }
}

/// Marks a sequence failed; on the first hop its caller's stream ends with
/// the error (and the task is not billed).
fn fail(seq: &mut Seq, why: String) {
    if seq.failed.is_some() {
        return;
    }
    seq.failed = Some(why.clone());
    seq.ended = true;
    if let Some(head) = seq.head.as_mut() {
        head.running.progress.send_modify(|p| {
            if p.done.is_none() {
                p.done = Some(Done {
                    stopped: false,
                    cancelled: false,
                    commitment_root: [0; 32],
                    error: Some(why),
                });
            }
        });
    }
}

/// What a hop's receipt will say about the sequence.
fn summary(f: &HopFinished) -> HopSummary {
    let entries = f.commitments.as_ref().map(|c| c.entries());
    let first = entries
        .and_then(|e| e.first())
        .map_or([0; 32], |e| e.input_hash);
    let exit = entries
        .and_then(|e| e.last())
        .map_or([0; 32], |e| e.input_hash);
    HopSummary {
        positions: f.positions as u32,
        input_states: first,
        output_states: exit,
        commitment_root: f.commitments.as_ref().map_or([0; 32], |c| c.root()),
        sampled: f.sampled.len() as u32,
    }
}
