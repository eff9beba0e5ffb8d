//! The caller's side of a pipelined task: open every hop of a route, start
//! the first with the prompt, stream the text, then collect each hop's
//! summary and check that the hops link up (what hop k handed on is what
//! hop k+1 says it received).
//!
//! [`run`] drives one route. [`serve`] drives a task across failures: when
//! a hop of the route dies (or the route breaks in any other way), it asks
//! every hop of the broken route for its summary, marks the hops that do
//! not answer as dead, and resumes the task on the next route that avoids
//! them, with the prompt and the tokens so far re-run in one prefill and
//! the sampler continuing where it stopped, so the text streams on as one.
//! A hop whose process stops without closing its connection breaks no
//! request: [`serve`] notices it because the first hop's polls bring no new
//! token for longer than the route could take ([`Stall`]), and treats the
//! route as broken; the hops that then do not answer within
//! [`Stall::answer_within`] count as dead. When the caller goes away
//! (`on_text` answers [`ControlFlow::Break`]), the first hop is told to
//! cancel and the task ends there; every hop is finished, and those whose
//! states link up are settled for what ran.
//! [`settle`] then pays each hop its cells ([`crate::billing`]) with a
//! voucher and collects its receipt: the client pays for each cell once,
//! and no hop that died or broke its links is paid.
//!
//! The transport is a parameter ([`Transport`]), as in
//! `strata_wire::task::call`; the p2p layer's handle is one (the gateway,
//! the benchmark and the tests use it), a test can pass anything else.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use strata_p2p::{NodeId, P2pError, P2pHandle};
use strata_wire::protocols::{HIDDEN_STATE, TASK};
use strata_wire::{Receipt, Voucher};

use strata_wire::hop::{
    CloseReason, HopErrorKind, HopOpen, HopRequest, HopResponse, HopSummary, RouteHop,
};
use strata_wire::task::{
    Finish, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec, Usage, MAX_TASK_MESSAGE_BYTES,
};

/// Which protocol a request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The task protocol (`TASK`): the first hop's start, polls, cancels.
    Task,
    /// The hop protocol (`HIDDEN_STATE`): opens, finishes, closes.
    Hop,
}

/// Carries a request's bytes to a node and brings back its answer.
pub trait Transport {
    /// The transport's own failure.
    type Error: std::fmt::Display;
    /// Sends `bytes` to `node` on `channel` and waits for the answer.
    fn request(
        &self,
        node: [u8; 32],
        channel: Channel,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;
}

impl Transport for P2pHandle {
    type Error = P2pError;

    async fn request(
        &self,
        node: [u8; 32],
        channel: Channel,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, P2pError> {
        let protocol = match channel {
            Channel::Task => &TASK,
            Channel::Hop => &HIDDEN_STATE,
        };
        P2pHandle::request(self, NodeId(node), protocol, bytes).await
    }
}

/// A task to run over one route.
#[derive(Debug, Clone)]
pub struct PipelineTask {
    /// The task as a whole-model node would take it.
    pub spec: TaskSpec,
    /// The route, first hop first; its ranges cover `0..n_layers`.
    pub route: Vec<RouteHop>,
    /// SHA-256 of the model file.
    pub model_hash: [u8; 32],
    /// The model's block count.
    pub n_layers: u16,
    /// Route segment (0; one more per failover).
    pub segment: u8,
}

/// What a finished pipelined task gave.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// The whole text, as streamed.
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
    /// Token counts as the first hop reports them.
    pub usage: Usage,
    /// Each hop's summary, route order; linked (checked).
    pub summaries: Vec<HopSummary>,
}

/// Why a pipelined task failed, naming the hop where it could be told.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A hop could not be reached or did not answer.
    #[error("hop {hop}: {detail}")]
    Transport {
        /// Index in the route.
        hop: usize,
        /// The transport's words.
        detail: String,
    },
    /// A hop refused.
    #[error("hop {hop} refused ({kind:?}): {detail}")]
    Refused {
        /// Index in the route.
        hop: usize,
        /// Class.
        kind: HopErrorKind,
        /// The hop's words.
        detail: String,
    },
    /// The first hop ended the task with an error (a later hop failing
    /// shows up here, named in `message`).
    #[error("task failed ({kind:?}): {message}")]
    Task {
        /// Class.
        kind: TaskErrorKind,
        /// The first hop's words.
        message: String,
    },
    /// Hop `hop` says it received other states than hop `hop - 1` handed on.
    #[error("hop {hop} does not link to hop {}: its input states differ from what the previous hop sent", hop - 1)]
    BrokenLink {
        /// Index in the route.
        hop: usize,
    },
    /// An answer that is not what the protocol allows at this point.
    #[error("hop {hop}: unexpected answer: {detail}")]
    Protocol {
        /// Index in the route.
        hop: usize,
        /// What came.
        detail: String,
    },
    /// The first hop's polls brought no new token for `after`: some hop
    /// stopped without closing its connection (or the route is far slower
    /// than announced).
    #[error("no new token for {} ms: the route is stalled", after.as_millis())]
    Stalled {
        /// How long nothing came.
        after: Duration,
    },
    /// Every route failed or uses a node found dead; `last` is why the last
    /// one tried failed.
    #[error("no route left after {tried} tried; the last failed: {last}")]
    NoRoute {
        /// Routes tried.
        tried: usize,
        /// The last route's failure.
        last: String,
    },
    /// The caller could not sign a voucher, or a hop refused its payment or
    /// answered it with a receipt that does not say what was paid for.
    #[error("paying node {}: {detail}", hex_prefix(node))]
    Payment {
        /// The node.
        node: [u8; 32],
        /// Why.
        detail: String,
    },
}

fn hex_prefix(node: &[u8; 32]) -> String {
    node[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `task` over its route; `on_text` sees each piece of text as it
/// streams. On failure every hop opened is closed (best effort).
pub async fn run<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    mut on_text: impl FnMut(&str),
) -> Result<Streamed, ClientError> {
    let mut out = Output::default();
    let mut on_text = |t: &str| {
        on_text(t);
        ControlFlow::Continue(())
    };
    let (finish, usage) = run_segment(transport, task, None, &mut out, &mut on_text).await?;
    let mut summaries = Vec::with_capacity(task.route.len());
    for index in 0..task.route.len() {
        let finish = HopRequest::Finish {
            task_id: task.spec.task_id,
            segment: task.segment,
        };
        match hop_call(transport, task, index, &finish).await {
            Ok(HopResponse::Finished(s)) => summaries.push(s),
            other => return Err(unexpected(index, other)),
        }
    }
    if let Some(k) = broken_link(&summaries) {
        return Err(ClientError::BrokenLink { hop: k });
    }
    Ok(Streamed {
        text: out.text,
        finish,
        usage,
        summaries,
    })
}

/// A task to serve with failover.
#[derive(Debug, Clone)]
pub struct PipelineJob {
    /// The task as a whole-model node would take it.
    pub spec: TaskSpec,
    /// Routes in order of preference, first hop first; each covers
    /// `0..n_layers`. After a failure the next route without a dead node
    /// takes over.
    pub routes: Vec<Vec<RouteHop>>,
    /// SHA-256 of the model file.
    pub model_hash: [u8; 32],
    /// The model's block count.
    pub n_layers: u16,
    /// Most failovers before the task fails.
    pub max_failovers: usize,
    /// Each node's announced decode time of one token through one of its
    /// blocks, ms: how long a route may go without a new token before it
    /// counts as stalled. A node missing here counts 0 ms (the floor
    /// [`Stall::floor`] applies).
    pub layer_ms: HashMap<[u8; 32], f32>,
    /// When a route counts as stalled, and how long the hops of a broken
    /// route have to answer.
    pub stall: Stall,
}

/// The stall detector's bounds (§3.8 of `docs/pipelines.md`): a route
/// whose first hop's polls bring no new token for
/// `max(floor, factor × expected inter-token latency)` is broken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    /// Never less than this: profiles are taken on an idle node, and a
    /// loaded one (or a busy machine) is slower by a few times.
    pub floor: Duration,
    /// Multiple of the route's expected inter-token latency.
    pub factor: u32,
    /// How long each hop of a broken route has to answer `Close` and
    /// `Finish` before it counts as dead: a stopped process keeps its
    /// connection, so the transport's own timeout (a minute) would hold
    /// the task that long.
    pub answer_within: Duration,
}

impl Default for Stall {
    /// 2 s, 10 ×, 5 s (§3.8 of `docs/pipelines.md`): ten tokens' time
    /// leaves room for a loaded hop's batching, the floor for a small
    /// model on a busy machine, and a healthy hop answers `Close` in
    /// milliseconds.
    fn default() -> Self {
        Stall {
            floor: Duration::from_secs(2),
            factor: 10,
            answer_within: Duration::from_secs(5),
        }
    }
}

impl Stall {
    /// How long `route` may go without a new token.
    pub fn window(&self, route: &[RouteHop], layer_ms: &HashMap<[u8; 32], f32>) -> Duration {
        self.floor
            .max(expected_itl(route, layer_ms).saturating_mul(self.factor))
    }
}

/// A route's expected inter-token latency: Σ blocks × ms per block over its
/// hops (each hop's announced profile; 0 for a node not in `layer_ms`).
pub fn expected_itl(route: &[RouteHop], layer_ms: &HashMap<[u8; 32], f32>) -> Duration {
    let ms: f64 = route
        .iter()
        .map(|h| {
            let per_block = layer_ms.get(&h.node).copied().unwrap_or(0.0);
            // Announcements are checked positive and finite on decode; a
            // caller's odd value must not panic `from_secs_f64`.
            let per_block = if per_block.is_finite() {
                f64::from(per_block.max(0.0))
            } else {
                0.0
            };
            f64::from(h.end.saturating_sub(h.start)) * per_block
        })
        .sum();
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
}

/// What the stall detector watches on one segment.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// The route's expected inter-token latency.
    itl: Duration,
    /// How long it may go without a new token once tokens flow.
    window: Duration,
    /// How long a hop has to answer an open or the start.
    answer_within: Duration,
}

/// One route segment of a served task, as it ended.
#[derive(Debug, Clone)]
pub struct SegmentRun {
    /// Its route.
    pub route: Vec<RouteHop>,
    /// Tokens the task had when it started.
    pub tokens_from: u32,
    /// Tokens the task had when it ended.
    pub tokens_to: u32,
    /// Each hop's summary, route order; `None` for a hop that failed,
    /// died, or does not link to the hops before it.
    pub summaries: Vec<Option<HopSummary>>,
    /// Why the segment was abandoned (`None`: it completed the task).
    pub failure: Option<String>,
}

/// What a task served across failures gave.
#[derive(Debug, Clone)]
pub struct Served {
    /// The task.
    pub task_id: [u8; 32],
    /// The whole text, as streamed (one stream across segments).
    pub text: String,
    /// Every token id, in order.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: Finish,
    /// Token counts as the last first hop reports them (the prompt without
    /// any continuation, every token generated).
    pub usage: Usage,
    /// The model's block count.
    pub n_layers: u16,
    /// Its route segments, in order; the last completed the task.
    pub segments: Vec<SegmentRun>,
}

/// Serves `job`: runs it on its first route and, whenever a route fails
/// (stalls included, [`Stall`]), resumes it on the next route that avoids
/// every node found dead, up to `job.max_failovers` times. `on_text` sees
/// one continuous stream; when it answers [`ControlFlow::Break`] (the
/// caller is gone) the first hop is told to cancel, the task ends there
/// with [`Finish::Cancelled`] and every hop is finished, so that it can be
/// settled for what ran. A route that breaks after the cancel is not
/// resumed.
pub async fn serve<T: Transport>(
    transport: &T,
    job: &PipelineJob,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Served, ClientError> {
    let mut out = Output::default();
    let mut dead: HashSet<[u8; 32]> = HashSet::new();
    let mut segments: Vec<SegmentRun> = Vec::new();
    let mut routes = job.routes.iter();
    let mut tried = 0;
    let mut last_failure = String::from("no route given");
    loop {
        let Some(route) = routes.find(|r| r.iter().all(|h| !dead.contains(&h.node))) else {
            return Err(ClientError::NoRoute {
                tried,
                last: last_failure,
            });
        };
        tried += 1;
        let task = PipelineTask {
            spec: job.spec.clone(),
            route: route.clone(),
            model_hash: job.model_hash,
            n_layers: job.n_layers,
            segment: segments.len() as u8,
        };
        let tokens_from = out.tokens.len() as u32;
        let window = job.stall.window(route, &job.layer_ms);
        let answer_within = job.stall.answer_within.max(window);
        let watch = Watch {
            itl: expected_itl(route, &job.layer_ms),
            window,
            answer_within,
        };
        let result = run_segment(transport, &task, Some(watch), &mut out, &mut on_text).await;
        let failure = result.as_ref().err().map(ToString::to_string);
        let summaries = collect_summaries(
            transport,
            &task,
            failure.is_some(),
            answer_within,
            &mut dead,
        )
        .await;
        segments.push(SegmentRun {
            route: route.clone(),
            tokens_from,
            tokens_to: out.tokens.len() as u32,
            summaries,
            failure,
        });
        match result {
            Ok((finish, usage)) => {
                let last = segments.last().map(|s| &s.summaries);
                match last.and_then(|s| s.iter().position(Option::is_none)) {
                    // A cancel stops the first hop with rows still on their
                    // way down the route, so the hops after it may not
                    // link: the task is still settled, each hop that links
                    // paid for what it ran, the others not at all.
                    Some(_) if out.cancelled => {}
                    Some(0) => {
                        return Err(ClientError::Protocol {
                            hop: 0,
                            detail: "the first hop gave no summary".into(),
                        })
                    }
                    Some(k) => return Err(ClientError::BrokenLink { hop: k }),
                    None => {}
                }
                return Ok(Served {
                    task_id: job.spec.task_id,
                    text: out.text,
                    tokens: out.tokens,
                    finish,
                    usage,
                    n_layers: job.n_layers,
                    segments,
                });
            }
            Err(e) => {
                // A route refused at open (busy, wrong blocks) is skipped
                // like one that died: the next route resumes the task.
                last_failure = e.to_string();
                let tokens = out.tokens.len() as u32;
                if segments.len() > job.max_failovers
                    || tokens >= job.spec.max_tokens
                    || out.cancelled
                {
                    return Err(e);
                }
            }
        }
    }
}

/// Asks every hop of a segment for its summary (closing it first when the
/// segment failed). A hop that cannot be reached is dead, and so, after a
/// failure, is one that does not answer within `answer_within` (a stopped
/// process keeps its connection); a hop is kept only if it and every hop
/// before it answered and link up (the work of a hop after a break cannot
/// be checked) and its successor is not dead.
async fn collect_summaries<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    failed: bool,
    answer_within: Duration,
    dead: &mut HashSet<[u8; 32]>,
) -> Vec<Option<HopSummary>> {
    // A healthy route's hops answer in their own time (the transport's
    // timeout); a broken one's may never.
    let bound = failed.then_some(answer_within);
    let mut out: Vec<Option<HopSummary>> = Vec::with_capacity(task.route.len());
    for (index, hop) in task.route.iter().enumerate() {
        let id = (task.spec.task_id, task.segment);
        if failed {
            let close = HopRequest::Close {
                task_id: id.0,
                segment: id.1,
                reason: CloseReason::Failover,
            };
            if let Err(ClientError::Transport { .. }) =
                hop_call_within(transport, task, index, &close, bound).await
            {
                dead.insert(hop.node);
                out.push(None);
                continue;
            }
        }
        let finish = HopRequest::Finish {
            task_id: id.0,
            segment: id.1,
        };
        let summary = match hop_call_within(transport, task, index, &finish, bound).await {
            Ok(HopResponse::Finished(s)) => Some(s),
            Err(ClientError::Transport { .. }) => {
                dead.insert(hop.node);
                None
            }
            _ => None,
        };
        let linked = match (index.checked_sub(1).map(|k| &out[k]), &summary) {
            (None, Some(_)) => true,
            (Some(Some(prev)), Some(s)) => s.input_states == prev.output_states,
            _ => false,
        };
        out.push(if linked { summary } else { None });
    }
    if failed {
        // A hop whose successor is dead may still be waiting for it to take
        // its last rows; when that send fails, the hop fails its sequence
        // and will not settle it. Its work is paid instead to the hop that
        // recomputes it on the next route, as if it had failed first.
        for k in 1..task.route.len() {
            if dead.contains(&task.route[k].node) {
                out[k - 1] = None;
            }
        }
    }
    out
}

/// Cells owed to each hop of a served task ([`crate::billing::credit`]):
/// a hop is paid when it reported a summary that links to the hops before
/// it; a failed route's unpaid layers go to the hops that recomputed them.
pub fn bills(
    served: &Served,
) -> Result<Vec<crate::billing::HopBill>, crate::billing::BillingError> {
    let segments: Vec<crate::billing::Segment> = served
        .segments
        .iter()
        .map(|s| crate::billing::Segment {
            hops: s
                .route
                .iter()
                .zip(&s.summaries)
                .map(|(h, summary)| crate::billing::SegmentHop {
                    node: h.node,
                    layers: h.start..h.end,
                    finished: summary.is_some(),
                })
                .collect(),
            tokens_from: s.tokens_from,
            tokens_to: s.tokens_to,
        })
        .collect();
    let (bills, _unpaid) =
        crate::billing::credit(served.n_layers, served.usage.prompt_tokens, &segments)?;
    Ok(bills)
}

/// Signs vouchers for the caller.
pub trait Payer {
    /// The payer's own failure.
    type Error: std::fmt::Display;
    /// Held from signing a voucher until the node has answered it, so that
    /// vouchers to one node reach it in the order of their totals.
    type Turn: Send;
    /// A voucher to `node` whose cumulative is `price` above the last one
    /// this client signed for it, and the turn to hold while it is settled.
    fn pay(
        &self,
        node: [u8; 32],
        price: u64,
    ) -> impl Future<Output = Result<(Voucher, Self::Turn), Self::Error>> + Send;
}

/// Pays every hop of `served` its bill and returns their receipts, each
/// checked: signed by the hop, for this task's hop at that segment and
/// place, for the cells and price paid. `price_of` is each node's announced
/// price per whole-model token. Hops owed nothing get no voucher.
pub async fn settle<T: Transport, P: Payer>(
    transport: &T,
    served: &Served,
    price_of: impl Fn(&[u8; 32]) -> u64,
    payer: &P,
) -> Result<Vec<Receipt>, ClientError> {
    let bills = bills(served).map_err(|e| ClientError::Protocol {
        hop: 0,
        detail: e.to_string(),
    })?;
    let mut receipts = Vec::new();
    for bill in bills.iter().filter(|b| b.cells > 0) {
        let node = bill.node;
        let price = crate::billing::hop_price(price_of(&node), bill.cells, served.n_layers);
        let payment = |detail: String| ClientError::Payment { node, detail };
        let (voucher, turn) = payer
            .pay(node, price)
            .await
            .map_err(|e| payment(e.to_string()))?;
        let req = HopRequest::Settle {
            task_id: served.task_id,
            segment: bill.segment as u8,
            cells: bill.cells,
            voucher,
        };
        let bytes = transport
            .request(node, Channel::Hop, strata_wire::encode(&req))
            .await
            .map_err(|e| payment(e.to_string()))?;
        drop(turn);
        let receipt = match HopResponse::decode(&bytes) {
            Ok(HopResponse::Settled(r)) => *r,
            Ok(HopResponse::Error { kind, detail }) => {
                return Err(payment(format!("refused ({kind:?}): {detail}")))
            }
            Ok(other) => return Err(payment(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(payment(e.to_string())),
        };
        receipt.verify().map_err(|e| payment(e.to_string()))?;
        let b = &receipt.body;
        let says_what_was_paid = b.node == node
            && b.price == price
            && b.hop.is_some_and(|h| {
                h.task_id == served.task_id
                    && usize::from(h.segment) == bill.segment
                    && usize::from(h.index) == bill.hop
                    && h.cells == bill.cells
            });
        if !says_what_was_paid {
            return Err(payment(
                "its receipt is not for the part it was paid for".into(),
            ));
        }
        receipts.push(receipt);
    }
    Ok(receipts)
}

/// Text and token ids received so far, across segments.
#[derive(Default)]
struct Output {
    text: String,
    tokens: Vec<u32>,
    /// The caller went away and the first hop was told to cancel.
    cancelled: bool,
}

/// How long a hop has to answer a cancel or a close on a failure path
/// before the caller moves on without its answer.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Opens every hop of `task`'s route (last first), starts the first with
/// the prompt (or resumes after `out.tokens`), and streams until the task
/// ends; on failure every hop opened is closed (best effort). With a
/// `watch`, a segment whose polls bring no new token for its window (plus,
/// before the first, the prefill's expected time) fails as
/// [`ClientError::Stalled`]; its hops are then left to the caller, which
/// closes them with a bound on the wait.
async fn run_segment<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    watch: Option<Watch>,
    out: &mut Output,
    on_text: &mut impl FnMut(&str) -> ControlFlow<()>,
) -> Result<(Finish, Usage), ClientError> {
    let k = out.tokens.len() as u32;
    let open = |index: usize| HopOpen {
        task_id: task.spec.task_id,
        segment: task.segment,
        route: task.route.clone(),
        index: index as u8,
        client: task.spec.client,
        model_hash: task.model_hash,
        n_layers: task.n_layers,
        sampling: task.spec.sampling,
        sample_offset: k,
        max_new: task.spec.max_tokens.saturating_sub(k),
        stop_tokens: Vec::new(),
    };
    // A stopped hop would hold an open (or the start) for the transport's
    // own timeout: bounded, it fails the route like any unreachable hop.
    let bound = watch.map(|w| w.answer_within);
    // Last first: every hop is ready before anything can reach it.
    let mut opened = Vec::new();
    for index in (1..task.route.len()).rev() {
        let req = HopRequest::Open(open(index));
        let answer = hop_call_within(transport, task, index, &req, bound).await;
        match answer {
            Ok(HopResponse::Opened) => opened.push(index),
            other => {
                close_all(transport, task, &opened).await;
                return Err(unexpected(index, other));
            }
        }
    }
    let start = if out.tokens.is_empty() {
        TaskRequest::StartHop {
            spec: task.spec.clone(),
            open: open(0),
        }
    } else {
        TaskRequest::ResumeHop {
            spec: task.spec.clone(),
            open: open(0),
            produced: out.tokens.clone(),
        }
    };
    let prompt_rows = match bounded(bound, 0, task_call(transport, task, &start)).await {
        Ok(TaskResponse::Started { prompt_tokens, .. }) => {
            opened.push(0);
            u64::from(prompt_tokens) + u64::from(k)
        }
        Ok(TaskResponse::Error { kind, message }) => {
            close_all(transport, task, &opened).await;
            return Err(ClientError::Task { kind, message });
        }
        other => {
            close_all(transport, task, &opened).await;
            return Err(unexpected_task(other));
        }
    };
    // The first token also waits for the prefill: at most one token's time
    // per row (a batch of rows runs faster per row than one token does).
    let mut last_token = Instant::now();
    let mut window = watch.map(|w| {
        let rows = u32::try_from(prompt_rows).unwrap_or(u32::MAX);
        w.window.saturating_add(w.itl.saturating_mul(rows))
    });
    loop {
        let poll = TaskRequest::PollHop {
            task_id: task.spec.task_id,
            from_byte: out.text.len() as u64,
            from_token: out.tokens.len() as u32,
        };
        let answer = match window {
            Some(w) => {
                let deadline = last_token + w;
                match tokio::time::timeout_at(deadline, task_call(transport, task, &poll)).await {
                    Ok(answer) => answer,
                    Err(_) => return Err(ClientError::Stalled { after: w }),
                }
            }
            None => task_call(transport, task, &poll).await,
        };
        match answer {
            Ok(TaskResponse::HopOutput {
                text,
                tokens,
                finished,
            }) => {
                if !text.is_empty() {
                    let gone = on_text(&text).is_break();
                    out.text.push_str(&text);
                    if gone && !out.cancelled {
                        // The caller went away: the first hop stops the
                        // task, whose end (and usage) the next poll brings.
                        out.cancelled = true;
                        let cancel = TaskRequest::Cancel {
                            task_id: task.spec.task_id,
                        };
                        let _ =
                            tokio::time::timeout(CLOSE_WITHIN, task_call(transport, task, &cancel))
                                .await;
                    }
                }
                if !tokens.is_empty() {
                    last_token = Instant::now();
                    window = watch.map(|w| w.window);
                }
                out.tokens.extend(tokens);
                if let Some(f) = finished {
                    return Ok(f);
                }
            }
            Ok(TaskResponse::Error { kind, message }) => {
                close_all(transport, task, &opened).await;
                return Err(ClientError::Task { kind, message });
            }
            other => {
                close_all(transport, task, &opened).await;
                return Err(unexpected_task(other));
            }
        }
    }
}

/// The first hop whose input states are not what the one before it handed
/// on, if any.
pub fn broken_link(summaries: &[HopSummary]) -> Option<usize> {
    (1..summaries.len()).find(|&k| summaries[k].input_states != summaries[k - 1].output_states)
}

async fn hop_call<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    index: usize,
    req: &HopRequest,
) -> Result<HopResponse, ClientError> {
    let node = task.route[index].node;
    let bytes = transport
        .request(node, Channel::Hop, strata_wire::encode(req))
        .await
        .map_err(|e| ClientError::Transport {
            hop: index,
            detail: e.to_string(),
        })?;
    HopResponse::decode(&bytes).map_err(|e| ClientError::Protocol {
        hop: index,
        detail: e.to_string(),
    })
}

/// [`hop_call`], failing as a transport error when `within` passes first.
async fn hop_call_within<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    index: usize,
    req: &HopRequest,
    within: Option<Duration>,
) -> Result<HopResponse, ClientError> {
    bounded(within, index, hop_call(transport, task, index, req)).await
}

/// `call` to hop `hop`, failing as a transport error when `within` passes
/// first.
async fn bounded<R>(
    within: Option<Duration>,
    hop: usize,
    call: impl Future<Output = Result<R, ClientError>>,
) -> Result<R, ClientError> {
    let Some(within) = within else {
        return call.await;
    };
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Transport {
                hop,
                detail: format!("no answer within {} ms", within.as_millis()),
            })
        })
}

async fn task_call<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    req: &TaskRequest,
) -> Result<TaskResponse, ClientError> {
    let bytes = transport
        .request(task.route[0].node, Channel::Task, strata_wire::encode(req))
        .await
        .map_err(|e| ClientError::Transport {
            hop: 0,
            detail: e.to_string(),
        })?;
    strata_wire::decode(&bytes, MAX_TASK_MESSAGE_BYTES).map_err(|e| ClientError::Protocol {
        hop: 0,
        detail: e.to_string(),
    })
}

async fn close_all<T: Transport>(transport: &T, task: &PipelineTask, opened: &[usize]) {
    for &index in opened {
        let close = HopRequest::Close {
            task_id: task.spec.task_id,
            segment: task.segment,
            reason: CloseReason::Cancelled,
        };
        let _ = hop_call_within(transport, task, index, &close, Some(CLOSE_WITHIN)).await;
    }
}

fn unexpected(hop: usize, answer: Result<HopResponse, ClientError>) -> ClientError {
    match answer {
        Err(e) => e,
        Ok(HopResponse::Error { kind, detail }) => ClientError::Refused { hop, kind, detail },
        Ok(other) => ClientError::Protocol {
            hop,
            detail: format!("{other:?}"),
        },
    }
}

fn unexpected_task(answer: Result<TaskResponse, ClientError>) -> ClientError {
    match answer {
        Err(e) => e,
        Ok(other) => ClientError::Protocol {
            hop: 0,
            detail: format!("{other:?}"),
        },
    }
}
