//! The caller's side of a pipelined task: open every hop of a route, start
//! the first with the prompt, stream the text, then collect each hop's
//! summary and check that the hops link up (what hop k handed on is what
//! hop k+1 says it received).
//!
//! The transport is a parameter ([`Transport`]), as in
//! `strata_wire::task::call`; the p2p layer's handle is one (the gateway,
//! the benchmark and the tests use it), a test can pass anything else.

use std::future::Future;

use strata_p2p::{NodeId, P2pError, P2pHandle};
use strata_wire::protocols::{HIDDEN_STATE, TASK};

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
}

/// Runs `task` over its route; `on_text` sees each piece of text as it
/// streams. On failure every hop opened is closed (best effort).
pub async fn run<T: Transport>(
    transport: &T,
    task: &PipelineTask,
    mut on_text: impl FnMut(&str),
) -> Result<Streamed, ClientError> {
    let open = |index: usize| HopOpen {
        task_id: task.spec.task_id,
        segment: task.segment,
        route: task.route.clone(),
        index: index as u8,
        client: task.spec.client,
        model_hash: task.model_hash,
        n_layers: task.n_layers,
        sampling: task.spec.sampling,
        sample_offset: 0,
        max_new: task.spec.max_tokens,
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
    let start = TaskRequest::StartHop {
        spec: task.spec.clone(),
        open: open(0),
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
    let mut text = String::new();
    let (finish, usage) = loop {
        let poll = TaskRequest::Poll {
            task_id: task.spec.task_id,
            from_byte: text.len() as u64,
            to_end: false,
        };
        match task_call(transport, task, &poll).await {
            Ok(TaskResponse::Output { text: t, finished }) => {
                if !t.is_empty() {
                    on_text(&t);
                    text.push_str(&t);
                }
                if let Some(f) = finished {
                    break f;
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
    };
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
        text,
        finish,
        usage,
        summaries,
    })
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
