//! The sequences open on this hop and the rules a message about them must
//! follow. Every check of a step or token message happens here, for all of
//! its entries, before any row reaches the engine: a message is taken whole
//! or refused whole.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strata_engine::{HiddenStates, HopKey};
use strata_p2p::{NodeId, Severity};
use strata_wire::hop::{HopErrorKind, HopOpen, HopSummary, StepEntry, TokenEntry};

use crate::worker::Running;

/// A sequence's id on the network: task and route segment.
pub(crate) type SeqId = ([u8; 32], u8);

/// A refusal: its class for the sender, what it costs the sender, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: HopErrorKind,
    pub(crate) severity: Option<Severity>,
    pub(crate) detail: String,
}

impl Refusal {
    pub(crate) fn new(kind: HopErrorKind, detail: impl Into<String>) -> Self {
        let severity = match kind {
            // A step for a sequence that just closed is an honest race.
            HopErrorKind::UnknownSequence => Some(Severity::Nuisance),
            HopErrorKind::BadShape
            | HopErrorKind::WrongPosition
            | HopErrorKind::WrongLayer
            | HopErrorKind::NotYourSequence => Some(Severity::Strike),
            // A bad voucher costs the caller its receipt, not its standing.
            HopErrorKind::Busy | HopErrorKind::Internal | HopErrorKind::Payment => None,
        };
        Self {
            kind,
            severity,
            detail: detail.into(),
        }
    }
}

/// The first hop's extra state: the text it streams to its caller.
pub(crate) struct Head {
    pub(crate) running: Running,
    /// Tokens that end the sequence (a `last` token among them is a stop,
    /// any other `last` token is the length limit).
    pub(crate) stop_tokens: Vec<u32>,
}

/// One sequence on this hop.
pub(crate) struct Seq {
    pub(crate) id: SeqId,
    pub(crate) key: HopKey,
    /// How it was opened: route, place in it, client, sampling.
    pub(crate) open: HopOpen,
    /// Who opened it: the only one who may close or finish it.
    pub(crate) opener: NodeId,
    /// Position the next input must start at.
    pub(crate) next_position: u32,
    /// Position of the input now in the engine (its outputs start there).
    pub(crate) input_position: u32,
    /// An input is in the engine and its output has not come back.
    pub(crate) in_engine: bool,
    /// No more input will come (the last token was sampled, or it was closed).
    pub(crate) ended: bool,
    /// Its close has been handed to the engine.
    pub(crate) closing: bool,
    /// Why it cannot go on, if it cannot.
    pub(crate) failed: Option<String>,
    /// What it ran, once the engine closed it.
    pub(crate) summary: Option<HopSummary>,
    /// Tokens it sampled (the last hop), once the engine closed it.
    pub(crate) sampled: Vec<u32>,
    /// The first hop's prompt as it ran (with any failover continuation):
    /// what its receipt's input hash attests.
    pub(crate) prompt: Vec<u32>,
    /// The tokens fed back to it after the prompt (the first hop).
    pub(crate) fed: Vec<u32>,
    /// The rows it received (a later hop): what an audit re-runs.
    pub(crate) inputs: Vec<HiddenStates>,
    pub(crate) head: Option<Head>,
    pub(crate) opened: Instant,
    /// When its last input arrived (or it was opened).
    pub(crate) last_input: Instant,
}

impl Seq {
    /// The node the route puts before this hop.
    pub(crate) fn previous(&self) -> Option<NodeId> {
        self.open.previous_hop().map(|h| NodeId(h.node))
    }

    /// The node the route puts after this hop.
    pub(crate) fn next(&self) -> Option<NodeId> {
        self.open.next_hop().map(|h| NodeId(h.node))
    }

    /// The route's first hop (where tokens go).
    pub(crate) fn first(&self) -> Option<NodeId> {
        self.open.route.first().map(|h| NodeId(h.node))
    }

    /// The route's last hop (where tokens come from).
    pub(crate) fn last(&self) -> Option<NodeId> {
        self.open.route.last().map(|h| NodeId(h.node))
    }

    /// True on the route's last hop.
    pub(crate) fn is_last(&self) -> bool {
        self.index() + 1 == self.open.route.len()
    }

    /// Its place in the route.
    pub(crate) fn index(&self) -> usize {
        usize::from(self.open.index)
    }
}

/// Every sequence open (or closed and not yet finished) on this hop.
#[derive(Default)]
pub(crate) struct Table {
    by_id: HashMap<SeqId, HopKey>,
    seqs: HashMap<HopKey, Seq>,
    next_key: HopKey,
}

impl Table {
    /// A fresh engine key.
    pub(crate) fn new_key(&mut self) -> HopKey {
        self.next_key += 1;
        self.next_key
    }

    /// Sequences still running (not ended).
    pub(crate) fn running(&self) -> usize {
        self.seqs.values().filter(|s| !s.ended).count()
    }

    /// Every segment of `task` open here.
    pub(crate) fn segments_of(&self, task: &[u8; 32]) -> Vec<SeqId> {
        self.by_id
            .keys()
            .filter(|id| &id.0 == task)
            .copied()
            .collect()
    }

    /// Every sequence held, ended or not.
    pub(crate) fn ids(&self) -> Vec<SeqId> {
        self.by_id.keys().copied().collect()
    }

    pub(crate) fn contains(&self, id: &SeqId) -> bool {
        self.by_id.contains_key(id)
    }

    pub(crate) fn insert(&mut self, seq: Seq) {
        self.by_id.insert(seq.id, seq.key);
        self.seqs.insert(seq.key, seq);
    }

    pub(crate) fn get_mut(&mut self, key: HopKey) -> Option<&mut Seq> {
        self.seqs.get_mut(&key)
    }

    pub(crate) fn by_id_mut(&mut self, id: &SeqId) -> Option<&mut Seq> {
        let key = self.by_id.get(id)?;
        self.seqs.get_mut(key)
    }

    pub(crate) fn remove(&mut self, id: &SeqId) -> Option<Seq> {
        let key = self.by_id.remove(id)?;
        self.seqs.remove(&key)
    }

    /// Sequences to drop at `now`: opened more than `deadline` ago (their
    /// caller never came back to finish them), or still running but fed
    /// nothing for `idle` while no step of theirs is in the engine (a route
    /// that broke, or an opener that only wanted to hold a slot).
    pub(crate) fn stale(&self, now: Instant, deadline: Duration, idle: Duration) -> Vec<SeqId> {
        let older = |t: Instant, d: Duration| now.checked_duration_since(t).is_some_and(|a| a > d);
        self.seqs
            .values()
            .filter(|s| {
                older(s.opened, deadline) || (!s.ended && !s.in_engine && older(s.last_input, idle))
            })
            .map(|s| s.id)
            .collect()
    }

    /// Sequences `opener` opened that have ended here and wait for it to
    /// finish and settle them: the credit this hop extends to that opener.
    pub(crate) fn unsettled_by(&self, opener: NodeId) -> usize {
        self.seqs
            .values()
            .filter(|s| s.opener == opener && s.ended && s.failed.is_none())
            .count()
    }

    /// Checks a step from `from` against every sequence it names: open here,
    /// `from` is the hop before this one, the entry starts at the position
    /// the sequence expects and nothing of it is still in the engine.
    /// Returns the keys in entry order.
    pub(crate) fn check_step(
        &self,
        from: NodeId,
        entries: &[StepEntry],
    ) -> Result<Vec<HopKey>, Refusal> {
        entries
            .iter()
            .map(|e| self.check_input(from, (e.task_id, e.segment), e.position, false))
            .collect()
    }

    /// Checks sampled tokens from `from`: this is the first hop of each
    /// sequence, `from` its last hop, and the token takes the next position.
    pub(crate) fn check_tokens(
        &self,
        from: NodeId,
        entries: &[TokenEntry],
    ) -> Result<Vec<HopKey>, Refusal> {
        entries
            .iter()
            .map(|e| self.check_input(from, (e.task_id, e.segment), e.position, true))
            .collect()
    }

    fn check_input(
        &self,
        from: NodeId,
        id: SeqId,
        position: u32,
        token: bool,
    ) -> Result<HopKey, Refusal> {
        let Some(seq) = self.by_id.get(&id).and_then(|k| self.seqs.get(k)) else {
            return Err(Refusal::new(
                HopErrorKind::UnknownSequence,
                format!("no open sequence {}/{}", hex::encode(&id.0[..8]), id.1),
            ));
        };
        let (sender, role) = if token {
            (seq.head.as_ref().and(seq.last()), "the route's last hop")
        } else {
            (seq.previous(), "the hop before this one")
        };
        if sender != Some(from) {
            return Err(Refusal::new(
                HopErrorKind::NotYourSequence,
                format!("only {role} feeds this sequence here"),
            ));
        }
        if seq.ended || seq.failed.is_some() {
            return Err(Refusal::new(
                HopErrorKind::UnknownSequence,
                "the sequence has ended on this hop",
            ));
        }
        if seq.in_engine || position != seq.next_position {
            return Err(Refusal::new(
                HopErrorKind::WrongPosition,
                format!(
                    "input at position {position}, the sequence expects {}{}",
                    seq.next_position,
                    if seq.in_engine {
                        " after its current step"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(seq.key)
    }

    /// Checks that `from` opened the sequence (only the opener closes or
    /// finishes it).
    pub(crate) fn check_opener(&self, from: NodeId, id: &SeqId) -> Result<HopKey, Refusal> {
        let Some(seq) = self.by_id.get(id).and_then(|k| self.seqs.get(k)) else {
            return Err(Refusal::new(
                HopErrorKind::UnknownSequence,
                "no such sequence on this hop",
            ));
        };
        if seq.opener != from {
            return Err(Refusal::new(
                HopErrorKind::NotYourSequence,
                "only the caller that opened a sequence closes or finishes it",
            ));
        }
        Ok(seq.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_wire::hop::RouteHop;
    use strata_wire::task::Sampling;

    fn seq(t: &mut Table, task: u8, opener: NodeId, opened: Instant) -> SeqId {
        let open = HopOpen {
            task_id: [task; 32],
            segment: 0,
            route: vec![RouteHop {
                node: [9; 32],
                start: 0,
                end: 30,
            }],
            index: 0,
            client: [1; 32],
            model_hash: [2; 32],
            n_layers: 30,
            sampling: Sampling::GREEDY,
            sample_offset: 0,
            max_new: 8,
            stop_tokens: vec![],
        };
        let key = t.new_key();
        let id = ([task; 32], 0);
        t.insert(Seq {
            id,
            key,
            open,
            opener,
            next_position: 0,
            input_position: 0,
            in_engine: false,
            ended: false,
            closing: false,
            failed: None,
            summary: None,
            sampled: vec![],
            prompt: vec![],
            fed: vec![],
            inputs: vec![],
            head: None,
            opened,
            last_input: opened,
        });
        id
    }

    #[test]
    fn idle_running_sequences_and_old_ones_are_stale_busy_ones_are_not() {
        let (now, min) = (Instant::now(), Duration::from_secs(60));
        let t0 = now.checked_sub(2 * min).expect("a clock two minutes old");
        let mut t = Table::default();
        let me = NodeId([3; 32]);
        let idle = seq(&mut t, 1, me, t0);
        let computing = seq(&mut t, 2, me, t0);
        t.by_id_mut(&computing).unwrap().in_engine = true;
        let fed = seq(&mut t, 3, me, t0);
        t.by_id_mut(&fed).unwrap().last_input = now;
        let ended = seq(&mut t, 4, me, t0);
        t.by_id_mut(&ended).unwrap().ended = true;
        let mut stale = t.stale(now, 10 * min, min);
        stale.sort();
        assert_eq!(stale, vec![idle]);
        // Past the deadline everything goes, whatever it is doing.
        let mut all = t.stale(now, min, min);
        all.sort();
        assert_eq!(all, vec![idle, computing, fed, ended]);
    }

    #[test]
    fn unsettled_counts_one_openers_ended_sequences() {
        let now = Instant::now();
        let (a, b) = (NodeId([3; 32]), NodeId([4; 32]));
        let mut t = Table::default();
        for task in 0..3 {
            let id = seq(&mut t, task, a, now);
            t.by_id_mut(&id).unwrap().ended = true;
        }
        seq(&mut t, 10, a, now);
        let failed = seq(&mut t, 11, a, now);
        let f = t.by_id_mut(&failed).unwrap();
        f.ended = true;
        f.failed = Some("x".into());
        let other = seq(&mut t, 12, b, now);
        t.by_id_mut(&other).unwrap().ended = true;
        assert_eq!((t.unsettled_by(a), t.unsettled_by(b)), (3, 1));
    }
}
