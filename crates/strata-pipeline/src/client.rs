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
//! [`settle`] then pays each hop its cells ([`crate::billing`]) with a
//! voucher and collects its receipt: the client pays for each cell once,
//! and no hop that died or broke its links is paid.
//!
//! The transport is a parameter ([`Transport`]), as in
//! `strata_wire::task::call`; the p2p layer's handle is one (the gateway,
//! the benchmark and the tests use it), a test can pass anything else.

use std::collections::HashSet;
use std::future::Future;

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
    let (finish, usage) = run_segment(transport, task, &mut out, &mut on_text).await?;
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

/// Serves `job`: runs it on its first route and, whenever a route fails,
/// resumes it on the next route that avoids every node found dead, up to
/// `job.max_failovers` times. `on_text` sees one continuous stream.
pub async fn serve<T: Transport>(
    transport: &T,
    job: &PipelineJob,
    mut on_text: impl FnMut(&str),
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
        let result = run_segment(transport, &task, &mut out, &mut on_text).await;
        let failure = result.as_ref().err().map(ToString::to_string);
        let summaries = collect_summaries(transport, &task, failure.is_some(), &mut dead).await;
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
                if segments.len() > job.max_failovers || tokens >= job.spec.max_tokens {
                    return Err(e);
                }
            }
        }
    }
}

/// Asks every hop of a segment for its summary (closing it first when the
/// segment failed). A hop that cannot be reached is dead; a hop is kept
/// only if it and every hop before it answered and link up, since the
/// work of a hop after a break cannot be checked.
async fn collect_summaries<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    failed: bool,
    dead: &mut HashSet<[u8; 32]>,
) -> Vec<Option<HopSummary>> {
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
                hop_call(transport, task, index, &close).await
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
        let summary = match hop_call(transport, task, index, &finish).await {
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
}

/// Opens every hop of `task`'s route (last first), starts the first with
/// the prompt (or resumes after `out.tokens`), and streams until the task
/// ends; on failure every hop opened is closed (best effort).
async fn run_segment<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    out: &mut Output,
    on_text: &mut impl FnMut(&str),
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
    // Last first: every hop is ready before anything can reach it.
    let mut opened = Vec::new();
    for index in (1..task.route.len()).rev() {
        let answer = hop_call(transport, task, index, &HopRequest::Open(open(index))).await;
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
    match task_call(transport, task, &start).await {
        Ok(TaskResponse::Started { .. }) => opened.push(0),
        Ok(TaskResponse::Error { kind, message }) => {
            close_all(transport, task, &opened).await;
            return Err(ClientError::Task { kind, message });
        }
        other => {
            close_all(transport, task, &opened).await;
            return Err(unexpected_task(other));
        }
    }
    loop {
        let poll = TaskRequest::PollHop {
            task_id: task.spec.task_id,
            from_byte: out.text.len() as u64,
            from_token: out.tokens.len() as u32,
        };
        match task_call(transport, task, &poll).await {
            Ok(TaskResponse::HopOutput {
                text,
                tokens,
                finished,
            }) => {
                if !text.is_empty() {
                    on_text(&text);
                    out.text.push_str(&text);
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
        let _ = hop_call(transport, task, index, &close).await;
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
