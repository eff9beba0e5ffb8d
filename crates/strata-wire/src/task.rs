//! The node task protocol, carried over the p2p layer's `Task`
//! request-response kind. A gateway runs one task in three kinds of call:
//!
//! 1. [`TaskRequest::Start`]: the node validates, admits the task into its
//!    batch and answers [`TaskResponse::Started`] at once.
//! 2. [`TaskRequest::Poll`] (repeated): a long poll that returns the text
//!    generated since the last poll as soon as there is some, and the task's
//!    usage and price once it has finished. This is what streams tokens.
//! 3. [`TaskRequest::Settle`]: the client's voucher for the finished task;
//!    the node checks it, signs the receipt, publishes it on the receipt
//!    topic and returns it.
//!
//! Work is delivered before it is paid for; a node refuses new tasks from a
//! client with too many finished tasks left unsettled.
//!
//! A task that wants per-token log-probabilities starts with
//! [`TaskRequest::StartLogprobs`] and polls with
//! [`TaskRequest::PollLogprobs`] (answered by
//! [`TaskResponse::LogprobOutput`]); the plain calls carry none, so nothing
//! is computed or sent for callers that do not ask. These variants, like the
//! pipeline's, are appended, so every earlier message keeps its bytes.
//!
//! A task that asks for a policy version (a LoRA adapter over the base
//! model, fetched from a trainer the node follows) starts with
//! [`TaskRequest::StartPolicy`], with or without log-probabilities; it
//! polls and settles as the plain or logprobs task it otherwise is. A node
//! that does not hold the version refuses with
//! [`TaskErrorKind::UnknownPolicy`]. The adapter is fixed when the task
//! starts: a newer version arriving while it runs does not change it.
//!
//! A caller makes each of these calls with [`call`]: it encodes the
//! request, hands the bytes to whatever transport it is given (the p2p
//! layer's `TASK` protocol in the gateway, a channel in a test) and decodes
//! the answer within [`MAX_TASK_MESSAGE_BYTES`].

use std::future::Future;

use borsh::{BorshDeserialize, BorshSerialize};

pub use crate::sampling::Sampling;
use crate::{Receipt, Voucher, WireError};

/// Largest encoded task request or response.
pub const MAX_TASK_MESSAGE_BYTES: usize = 1 << 20;
/// Longest prompt text a node accepts, in bytes (the model's context bounds tokens).
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;
/// Most alternatives per generated token a task may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;
/// Most encoded bytes of log-probabilities in one
/// [`TaskResponse::LogprobOutput`]: half the message limit, the rest is for
/// the text. A node sends the positions that fit and the caller polls on.
pub const MAX_LOGPROB_BYTES: usize = MAX_TASK_MESSAGE_BYTES / 2;

/// One token with its log-probability under the sampling policy (the
/// distribution the node's sampler drew from: the log-softmax of the raw
/// logits when greedy, else the logits over the temperature cut to top-k and
/// top-p and renormalised).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct TokenLogprob {
    /// Token id.
    pub token: u32,
    /// The token's bytes (its byte-level BPE piece decoded): not always
    /// whole UTF-8 characters.
    pub bytes: Vec<u8>,
    /// Natural log-probability, ≤ 0.
    pub logprob: f32,
}

/// The log-probabilities of one generated position.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct PositionLogprobs {
    /// The token sampled there.
    pub sampled: TokenLogprob,
    /// The most likely tokens, most likely first (at most the number asked
    /// for, and none the sampler's truncation removed).
    pub top: Vec<TokenLogprob>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChatTurn {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum Prompt {
    /// A chat, rendered with the model's chat template.
    Chat(Vec<ChatTurn>),
    /// Raw text completion.
    Text(String),
}

impl Prompt {
    /// Bytes of text in the prompt.
    pub fn text_len(&self) -> usize {
        match self {
            Prompt::Chat(turns) => turns.iter().map(|t| t.role.len() + t.content.len()).sum(),
            Prompt::Text(t) => t.len(),
        }
    }
}

/// A task as the gateway hands it to a node.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct TaskSpec {
    /// Unique id (random, chosen by the gateway).
    pub task_id: [u8; 32],
    /// The paying client.
    pub client: [u8; 32],
    /// Model name asked for.
    pub model: String,
    /// The prompt.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling.
    pub sampling: Sampling,
    /// Extra stop strings (the model's end-of-turn token always stops).
    pub stop: Vec<String>,
}

impl PositionLogprobs {
    /// Its Borsh size: what it adds to a [`TaskResponse::LogprobOutput`].
    pub fn encoded_len(&self) -> usize {
        // token (4) + bytes' length prefix (4) + bytes + logprob (4).
        let one = |t: &TokenLogprob| 12 + t.bytes.len();
        one(&self.sampled) + 4 + self.top.iter().map(one).sum::<usize>()
    }
}

/// A request to a node.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum TaskRequest {
    /// Start a task.
    Start(TaskSpec),
    /// Text generated after the first `from_byte` bytes already received.
    Poll {
        /// The task.
        task_id: [u8; 32],
        /// Bytes of output text the caller already has.
        from_byte: u64,
        /// Answer only once the task has ended (or the poll times out): a
        /// caller that does not stream saves a round trip per token.
        to_end: bool,
    },
    /// Pay for a finished task and get its receipt.
    Settle {
        /// The task.
        task_id: [u8; 32],
        /// Voucher whose cumulative covers everything owed to this node.
        voucher: Voucher,
    },
    /// Stop a task (the caller went away); it is billed for what ran.
    Cancel {
        /// The task.
        task_id: [u8; 32],
    },
    /// Start a task as the first hop of a layer-sharded pipeline: the node
    /// tokenizes the prompt, embeds it and runs its blocks, the rest of the
    /// route (already opened with [`crate::hop::HopRequest::Open`]) runs the
    /// others and the last hop's tokens come back here. Polls and cancels
    /// then work as for [`TaskRequest::Start`]; each hop settles on the hop
    /// protocol.
    StartHop {
        /// The task, as for a whole-model node.
        spec: TaskSpec,
        /// This node's place in the route (`open.index == 0`).
        open: crate::hop::HopOpen,
    },
    /// A poll of a pipelined task ([`TaskRequest::StartHop`]): text after
    /// `from_byte` and the token ids after `from_token`, so the caller can resume the
    /// task on another route if one of this route's hops fails.
    PollHop {
        /// The task.
        task_id: [u8; 32],
        /// Bytes of output text the caller already has.
        from_byte: u64,
        /// Output tokens the caller already has.
        from_token: u32,
    },
    /// Start a pipelined task again on a new route after a hop of the old
    /// one failed: the first hop runs the prompt followed by the `produced`
    /// tokens in one prefill (the route's last hop continues sampling at
    /// step `produced.len()`, `open.sample_offset`), and its stream goes on
    /// where the caller's stopped: the text of `produced` counts as already
    /// streamed.
    ResumeHop {
        /// The task, as first started.
        spec: TaskSpec,
        /// This node's place in the new route (`open.index == 0`, a new segment).
        open: crate::hop::HopOpen,
        /// Tokens the task produced before (at most `spec.max_tokens − 1`).
        produced: Vec<u32>,
    },
    /// Start a task as [`TaskRequest::Start`] does, and record for every
    /// generated token its log-probability and the `top_logprobs` most
    /// likely alternatives (at most [`MAX_TOP_LOGPROBS`]). Whole-model nodes
    /// only.
    StartLogprobs {
        /// The task.
        spec: TaskSpec,
        /// Alternatives to list per token (0: the sampled token's only).
        top_logprobs: u8,
    },
    /// A poll of a task started with [`TaskRequest::StartLogprobs`]: text
    /// after `from_byte` and the log-probabilities of the tokens after
    /// `from_token`.
    PollLogprobs {
        /// The task.
        task_id: [u8; 32],
        /// Bytes of output text the caller already has.
        from_byte: u64,
        /// Positions whose log-probabilities the caller already has.
        from_token: u32,
        /// Answer only once the task has ended (or the poll times out).
        to_end: bool,
    },
    /// Start a task as [`TaskRequest::Start`] (`top_logprobs` None, polled
    /// with [`TaskRequest::Poll`]) or [`TaskRequest::StartLogprobs`]
    /// (`top_logprobs` given, polled with [`TaskRequest::PollLogprobs`])
    /// does, served with policy version `policy_version` (at least 1: the
    /// base model is version 0 and starts with the other calls) of the
    /// policies the node follows. Whole-model nodes only.
    StartPolicy {
        /// The task.
        spec: TaskSpec,
        /// Alternatives to list per token, when log-probabilities are
        /// wanted (at most [`MAX_TOP_LOGPROBS`]).
        top_logprobs: Option<u8>,
        /// The policy version to serve it with.
        policy_version: u64,
    },
}

impl TaskRequest {
    /// The task the request is about.
    pub fn task_id(&self) -> [u8; 32] {
        match self {
            TaskRequest::Start(spec)
            | TaskRequest::StartHop { spec, .. }
            | TaskRequest::ResumeHop { spec, .. }
            | TaskRequest::StartLogprobs { spec, .. }
            | TaskRequest::StartPolicy { spec, .. } => spec.task_id,
            TaskRequest::Poll { task_id, .. }
            | TaskRequest::Settle { task_id, .. }
            | TaskRequest::Cancel { task_id }
            | TaskRequest::PollHop { task_id, .. }
            | TaskRequest::PollLogprobs { task_id, .. } => *task_id,
        }
    }
}

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Finish {
    /// End of turn or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// Cancelled by the caller.
    Cancelled,
}

/// Usage and price of a finished task.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Price owed for it, token base units.
    pub price: u64,
    /// The cumulative amount the node expects in the voucher for this task
    /// (what the client owed it before, plus `price`).
    pub expected_cumulative: u64,
}

/// Error classes a node reports, so the gateway can answer with the right HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TaskErrorKind {
    /// The request is malformed or out of range (HTTP 400).
    BadRequest,
    /// This node does not serve that model (HTTP 404).
    UnknownModel,
    /// The prompt does not fit the context (HTTP 400).
    PromptTooLong,
    /// The node is at capacity (HTTP 503; try another node).
    Busy,
    /// No such task (HTTP 404).
    UnknownTask,
    /// The client has an unsettled task or a bad voucher (HTTP 402).
    Payment,
    /// The node failed (HTTP 500).
    Internal,
    /// The node does not hold the policy version asked for (any more):
    /// another node announcing it may (HTTP 503 when none does).
    UnknownPolicy,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum TaskResponse {
    /// Admitted.
    Started {
        /// Prompt length in tokens.
        prompt_tokens: u32,
        /// Price per token applied.
        price_per_token: u64,
    },
    /// New output, and the usage once finished.
    Output {
        /// Text generated since `from_byte` (always whole UTF-8 characters).
        text: String,
        /// Set once the task has finished.
        finished: Option<(Finish, Usage)>,
    },
    /// The signed receipt of a settled task.
    Settled(Box<Receipt>),
    /// Cancelled.
    Cancelled,
    /// Refused.
    Error {
        /// Class.
        kind: TaskErrorKind,
        /// Human-readable reason.
        message: String,
    },
    /// New output of a pipelined task: text and token ids (the answer to
    /// [`TaskRequest::PollHop`]).
    HopOutput {
        /// Text generated since `from_byte` (always whole UTF-8 characters).
        text: String,
        /// Token ids generated since `from_token`.
        tokens: Vec<u32>,
        /// Set once the task has finished.
        finished: Option<(Finish, Usage)>,
    },
    /// New output of a task started with [`TaskRequest::StartLogprobs`]
    /// (the answer to [`TaskRequest::PollLogprobs`]).
    LogprobOutput {
        /// Text generated since `from_byte` (always whole UTF-8 characters).
        text: String,
        /// The log-probabilities of the positions from `from_token` on, as
        /// many as fit in [`MAX_LOGPROB_BYTES`].
        logprobs: Vec<PositionLogprobs>,
        /// Set once the task has finished and `logprobs` reaches its last
        /// position.
        finished: Option<(Finish, Usage)>,
    },
}

/// Why a [`call`] failed: the transport's own error, or an answer that is
/// not a task response.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The transport did not deliver the request or bring an answer.
    #[error("{0}")]
    Transport(E),
    /// The answer does not decode as a [`TaskResponse`] within
    /// [`MAX_TASK_MESSAGE_BYTES`].
    #[error("{0}")]
    Decode(WireError),
}

/// One task call: encodes `req`, lets `send` carry the bytes to the node and
/// bring back its answer, and decodes that answer (size-limited).
///
/// The transport is a parameter so that this crate stays independent of the
/// p2p layer: the gateway passes a closure around
/// `P2pHandle::request(node, &protocols::TASK, ..)`, tests pass anything
/// that returns bytes.
pub async fn call<F, Fut, E>(send: F, req: &TaskRequest) -> Result<TaskResponse, CallError<E>>
where
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, E>>,
{
    let answer = send(crate::encode(req))
        .await
        .map_err(CallError::Transport)?;
    crate::decode(&answer, MAX_TASK_MESSAGE_BYTES).map_err(CallError::Decode)
}
