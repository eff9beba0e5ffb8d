//! The hop protocol of a layer-sharded pipeline, carried on
//! [`crate::protocols::HIDDEN_STATE`]. A route is a chain of nodes, each
//! running a contiguous range of blocks; the first embeds token ids, the
//! last samples. Per task and route segment (a failover opens a new
//! segment):
//!
//! 1. [`HopRequest::Open`] to every hop, last first, so each is ready before
//!    anything reaches it: the route, the hop's place in it, the sampling
//!    (the last hop samples, continuing at `sample_offset` after a failover).
//! 2. [`HopRequest::Step`], hop k → hop k+1, once per engine step: the rows
//!    of every sequence that step ran, in one hidden-state matrix (the
//!    engine's SHS1 bytes, opaque here), with an entry per sequence saying
//!    whose rows they are and at which position they start.
//! 3. [`HopRequest::Tokens`], last hop → first: the sampled tokens, the
//!    first hop embeds them at its next step.
//! 4. [`HopRequest::Close`] when a sequence ends or its route is abandoned,
//!    then [`HopRequest::Finish`] from the gateway, answered with the hop's
//!    [`HopSummary`] (what its receipt will say).
//!
//! Everything a hop receives is checked in full ([`HopRequest::decode`]:
//! size, shape of the route, counts) before any row reaches its engine.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::protocols::HIDDEN_STATE;
use crate::sampling::Sampling;
use crate::WireError;

/// Largest hop request: a step's states dominate (64 MiB of f32 rows).
pub const MAX_HOP_REQUEST_BYTES: usize = HIDDEN_STATE.max_request;
/// Largest hop response (acknowledgements, summaries, errors).
pub const MAX_HOP_RESPONSE_BYTES: usize = HIDDEN_STATE.max_response;
/// Most hops in a route.
pub const MAX_ROUTE_HOPS: usize = 16;
/// Most sequences in one step or token message.
pub const MAX_STEP_ENTRIES: usize = 256;
/// Most rows in one step (a longer prefill is sent in chunks of rows, which
/// gives the same bits by the engine's determinism contract).
pub const MAX_STEP_ROWS: u32 = 8192;
/// Most stop tokens a sequence names.
pub const MAX_STOP_TOKENS: usize = 16;
/// Longest error detail.
pub const MAX_ERROR_DETAIL: usize = 512;

/// One hop of a route: a node and the blocks `[start, end)` it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RouteHop {
    /// The node's ed25519 key.
    pub node: [u8; 32],
    /// First block.
    pub start: u16,
    /// One past the last block.
    pub end: u16,
}

/// Opens a sequence on one hop.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct HopOpen {
    /// The task.
    pub task_id: [u8; 32],
    /// Route segment (0, then one more per failover).
    pub segment: u8,
    /// The whole route, first hop first.
    pub route: Vec<RouteHop>,
    /// This hop's place in `route`.
    pub index: u8,
    /// The paying client.
    pub client: [u8; 32],
    /// SHA-256 of the model file every hop must hold a part of.
    pub model_hash: [u8; 32],
    /// The model's block count (the route must cover exactly `0..n_layers`).
    pub n_layers: u16,
    /// Sampling (used by the last hop).
    pub sampling: Sampling,
    /// Tokens already sampled on an earlier segment: the last hop's sampler
    /// continues at this step.
    pub sample_offset: u32,
    /// The last hop ends the sequence after this many sampled tokens.
    pub max_new: u32,
    /// The last hop ends the sequence after any of these tokens.
    pub stop_tokens: Vec<u32>,
}

/// Whose rows, in a step's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StepEntry {
    /// The task.
    pub task_id: [u8; 32],
    /// Its route segment.
    pub segment: u8,
    /// Position of the first row (the sequence's cache length on the receiver).
    pub position: u32,
    /// Rows that follow the previous entry's in the matrix.
    pub rows: u32,
}

/// A sampled token on its way back to the first hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TokenEntry {
    /// The task.
    pub task_id: [u8; 32],
    /// Its route segment.
    pub segment: u8,
    /// Position the token takes in the sequence.
    pub position: u32,
    /// The token.
    pub token: u32,
    /// The sequence ended with it.
    pub last: bool,
}

/// Why a sequence was closed on a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum CloseReason {
    /// It ended (stop token, stop string or length).
    Ended,
    /// The client went away.
    Cancelled,
    /// A hop of its route failed; a new segment takes over.
    Failover,
}

/// A message to a hop.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum HopRequest {
    /// Open a sequence.
    Open(HopOpen),
    /// The previous hop's output rows.
    Step {
        /// One entry per sequence, in the matrix's row order.
        entries: Vec<StepEntry>,
        /// The rows: the engine's hidden-state encoding, with as many rows
        /// as the entries add up to (checked once decoded).
        states: Vec<u8>,
    },
    /// Sampled tokens, last hop to first.
    Tokens {
        /// One per sequence.
        entries: Vec<TokenEntry>,
    },
    /// Close a sequence.
    Close {
        /// The task.
        task_id: [u8; 32],
        /// Its route segment.
        segment: u8,
        /// Why.
        reason: CloseReason,
    },
    /// Report what this hop did for a closed sequence.
    Finish {
        /// The task.
        task_id: [u8; 32],
        /// Its route segment.
        segment: u8,
    },
    /// A hop cannot go on with a sequence (its successor is unreachable or
    /// refused its rows, or its engine failed): told to the first hop, which
    /// ends the task with an error naming the hop, so the caller can route
    /// around it at once instead of waiting for a time-out.
    Failed {
        /// The task.
        task_id: [u8; 32],
        /// Its route segment.
        segment: u8,
        /// The hop that failed (index in the route).
        hop: u8,
        /// What happened, at most [`MAX_ERROR_DETAIL`] bytes.
        detail: String,
    },
    /// Pay for a finished sequence and get the hop's receipt (after
    /// [`HopRequest::Finish`], from the same caller).
    Settle {
        /// The task.
        task_id: [u8; 32],
        /// Its route segment.
        segment: u8,
        /// Cells (tokens × blocks) billed to this hop
        /// (`strata_pipeline::billing`); at most what it ran.
        cells: u64,
        /// The client's voucher: its cumulative covers what the client owed
        /// this node before plus `price × cells / n_layers`.
        voucher: crate::Voucher,
    },
}

/// What a hop did for one sequence: what its receipt will commit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HopSummary {
    /// Positions it ran.
    pub positions: u32,
    /// Hash of the states it received (its first commitment entry).
    pub input_states: [u8; 32],
    /// Hash of the states it handed on (its exit entry); the next hop's
    /// `input_states` must equal it.
    pub output_states: [u8; 32],
    /// Root of its commitment tree (entries `start ..= end`).
    pub commitment_root: [u8; 32],
    /// Tokens it sampled (the last hop only).
    pub sampled: u32,
}

/// Classes of refusal, each with its own penalty for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum HopErrorKind {
    /// Rows of the wrong width, or not as many as the entries say.
    BadShape,
    /// A step for a position other than the sequence's next one.
    WrongPosition,
    /// An open for blocks this node does not hold exactly.
    WrongLayer,
    /// No such open sequence (it may have just closed: an honest race).
    UnknownSequence,
    /// The sender is not the hop the route puts before this one.
    NotYourSequence,
    /// The hop is full; try later or elsewhere.
    Busy,
    /// The hop failed.
    Internal,
    /// A settlement's voucher or cells are not acceptable.
    Payment,
}

/// A hop's answer.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum HopResponse {
    /// The sequence is open.
    Opened,
    /// Accepted; the rows or tokens will run at the hop's next step.
    Ack,
    /// The sequence is closed.
    Closed,
    /// The closed sequence's summary.
    Finished(HopSummary),
    /// Refused.
    Error {
        /// Class.
        kind: HopErrorKind,
        /// Human-readable reason.
        detail: String,
    },
    /// The hop's signed receipt for a settled sequence.
    Settled(Box<crate::Receipt>),
}

/// `detail` cut to [`MAX_ERROR_DETAIL`] bytes on a character boundary, as
/// every error and failure detail of the hop protocol must be.
pub fn truncate_detail(mut detail: String) -> String {
    if detail.len() > MAX_ERROR_DETAIL {
        let mut end = MAX_ERROR_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    detail
}

fn invalid(m: impl Into<String>) -> WireError {
    WireError::Invalid(m.into())
}

impl HopOpen {
    /// The hop this open is addressed to.
    pub fn this_hop(&self) -> Option<&RouteHop> {
        self.route.get(usize::from(self.index))
    }

    /// The hop before this one (None for the first).
    pub fn previous_hop(&self) -> Option<&RouteHop> {
        usize::from(self.index)
            .checked_sub(1)
            .and_then(|i| self.route.get(i))
    }

    /// The hop after this one (None for the last).
    pub fn next_hop(&self) -> Option<&RouteHop> {
        self.route.get(usize::from(self.index) + 1)
    }

    /// Checks the route: 1 to [`MAX_ROUTE_HOPS`] hops whose ranges are
    /// non-empty and follow each other from block 0 to `n_layers`, no node
    /// twice, `index` within it; and the sequence's own limits.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.route.is_empty() || self.route.len() > MAX_ROUTE_HOPS {
            return Err(invalid(format!(
                "a route has 1 to {MAX_ROUTE_HOPS} hops, not {}",
                self.route.len()
            )));
        }
        if usize::from(self.index) >= self.route.len() {
            return Err(invalid(format!(
                "hop index {} is outside a route of {}",
                self.index,
                self.route.len()
            )));
        }
        let mut next = 0u16;
        for (i, hop) in self.route.iter().enumerate() {
            if hop.start != next || hop.end <= hop.start {
                return Err(invalid(format!(
                    "hop {i} runs blocks {}..{}, expected a non-empty range from {next}",
                    hop.start, hop.end
                )));
            }
            if self.route[..i].iter().any(|h| h.node == hop.node) {
                return Err(invalid(format!(
                    "hop {i}'s node appears twice in the route"
                )));
            }
            next = hop.end;
        }
        if next != self.n_layers {
            return Err(invalid(format!(
                "the route ends at block {next}, the model has {}",
                self.n_layers
            )));
        }
        if self.max_new == 0 {
            return Err(invalid("max_new must be at least 1"));
        }
        if self.stop_tokens.len() > MAX_STOP_TOKENS {
            return Err(invalid(format!(
                "{} stop tokens, at most {MAX_STOP_TOKENS}",
                self.stop_tokens.len()
            )));
        }
        let s = &self.sampling;
        let temperature_ok = s.temperature.is_finite() && s.temperature >= 0.0;
        let top_p_ok = s.top_p.is_finite() && s.top_p > 0.0 && s.top_p <= 1.0;
        if !(temperature_ok && top_p_ok) {
            return Err(invalid("sampling temperature or top_p out of range"));
        }
        Ok(())
    }
}

impl HopRequest {
    /// The one task the request is about; `None` for the batched messages
    /// (`Step`, `Tokens`), which carry many.
    pub fn task_id(&self) -> Option<[u8; 32]> {
        match self {
            HopRequest::Open(open) => Some(open.task_id),
            HopRequest::Close { task_id, .. }
            | HopRequest::Finish { task_id, .. }
            | HopRequest::Failed { task_id, .. }
            | HopRequest::Settle { task_id, .. } => Some(*task_id),
            HopRequest::Step { .. } | HopRequest::Tokens { .. } => None,
        }
    }

    /// Decodes a request within [`MAX_HOP_REQUEST_BYTES`] and checks it
    /// (see [`HopRequest::validate`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = crate::decode(bytes, MAX_HOP_REQUEST_BYTES)?;
        r.validate()?;
        Ok(r)
    }

    /// Checks counts and ranges: a valid route for an open; 1 to
    /// [`MAX_STEP_ENTRIES`] entries, each with rows, at most
    /// [`MAX_STEP_ROWS`] in all, and some states for a step; 1 to
    /// [`MAX_STEP_ENTRIES`] tokens. No sequence appears twice in one message.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            HopRequest::Open(open) => open.validate(),
            HopRequest::Step { entries, states } => {
                let keys = entries.iter().map(|e| (e.task_id, e.segment));
                check_entries(entries.len(), keys)?;
                let mut rows = 0u32;
                for e in entries {
                    if e.rows == 0 {
                        return Err(invalid("a step entry without rows"));
                    }
                    rows = rows.saturating_add(e.rows);
                }
                if rows > MAX_STEP_ROWS {
                    return Err(invalid(format!(
                        "a step of {rows} rows, at most {MAX_STEP_ROWS}"
                    )));
                }
                if states.is_empty() {
                    return Err(invalid("a step without states"));
                }
                Ok(())
            }
            HopRequest::Tokens { entries } => check_entries(
                entries.len(),
                entries.iter().map(|e| (e.task_id, e.segment)),
            ),
            HopRequest::Close { .. } | HopRequest::Finish { .. } | HopRequest::Settle { .. } => {
                Ok(())
            }
            HopRequest::Failed { detail, .. } => {
                if detail.len() > MAX_ERROR_DETAIL {
                    return Err(invalid("failure detail too long"));
                }
                Ok(())
            }
        }
    }
}

/// 1 to [`MAX_STEP_ENTRIES`] entries, no sequence twice (a sequence
/// advances one input per step).
fn check_entries(len: usize, keys: impl Iterator<Item = ([u8; 32], u8)>) -> Result<(), WireError> {
    if len == 0 || len > MAX_STEP_ENTRIES {
        return Err(invalid(format!(
            "{len} entries, expected 1 to {MAX_STEP_ENTRIES}"
        )));
    }
    let mut seen: Vec<([u8; 32], u8)> = keys.collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("a sequence appears twice in one message"));
    }
    Ok(())
}

impl HopResponse {
    /// Decodes a response within [`MAX_HOP_RESPONSE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = crate::decode(bytes, MAX_HOP_RESPONSE_BYTES)?;
        if let HopResponse::Error { detail, .. } = &r {
            if detail.len() > MAX_ERROR_DETAIL {
                return Err(invalid("error detail too long"));
            }
        }
        Ok(r)
    }

    /// A refusal, its detail cut to [`MAX_ERROR_DETAIL`] bytes (on a
    /// character boundary).
    pub fn error(kind: HopErrorKind, detail: impl Into<String>) -> Self {
        HopResponse::Error {
            kind,
            detail: truncate_detail(detail.into()),
        }
    }
}
