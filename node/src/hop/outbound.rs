//! What a hop sends: each engine step's rows to the next hop (one message
//! per next hop), sampled tokens back to the first hop, and, when the next
//! hop does not take them, a failure report to the first hop.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use strata_engine::{HiddenStates, HopKey, HopOutput, WireDType};
use strata_p2p::NodeId;
use strata_wire::hop::{truncate_detail, HopRequest, HopResponse, StepEntry, TokenEntry};
use strata_wire::protocols::HIDDEN_STATE;

use super::engine::EngineEvent;
use super::table::{Seq, SeqId};
use super::{fail, Hops};

/// One step message being assembled: entries, their rows, their sequences.
type StepGroup = (Vec<StepEntry>, Vec<HiddenStates>, Vec<SeqId>);

impl Hops {
    /// What the engine thread reports: rows to send on, tokens to send back,
    /// sequences that failed.
    pub(super) fn on_engine(&self, ev: EngineEvent) {
        match ev {
            EngineEvent::Outputs(outputs) => self.send_outputs(outputs),
            EngineEvent::Failed(key, why) => {
                let mut t = self.lock();
                if let Some(seq) = t.get_mut(key) {
                    fail(seq, why.clone());
                    let report = self.failure_report(seq, seq.index(), &why);
                    drop(t);
                    if let Some((to, req)) = report {
                        self.send_detached(to, req);
                    }
                }
            }
        }
    }

    fn send_outputs(&self, outputs: Vec<(HopKey, HopOutput)>) {
        // One message per next hop: every sequence's rows of this step.
        let mut steps: BTreeMap<[u8; 32], StepGroup> = BTreeMap::new();
        let mut tokens: BTreeMap<[u8; 32], (Vec<TokenEntry>, Vec<SeqId>)> = BTreeMap::new();
        let mut ended = Vec::new();
        {
            let mut t = self.lock();
            for (key, out) in outputs {
                let Some(seq) = t.get_mut(key) else { continue };
                seq.in_engine = false;
                if seq.failed.is_some() || seq.ended {
                    continue;
                }
                match out {
                    HopOutput::States(x) => {
                        let Some(next) = seq.next() else { continue };
                        let group = steps.entry(next.0).or_default();
                        group.0.push(StepEntry {
                            task_id: seq.id.0,
                            segment: seq.id.1,
                            position: seq.input_position,
                            rows: x.rows() as u32,
                        });
                        group.1.push(x);
                        group.2.push(seq.id);
                    }
                    HopOutput::Token { token, last } => {
                        let Some(first) = seq.first() else { continue };
                        let group = tokens.entry(first.0).or_default();
                        group.0.push(TokenEntry {
                            task_id: seq.id.0,
                            segment: seq.id.1,
                            position: seq.next_position,
                            token,
                            last,
                        });
                        group.1.push(seq.id);
                        if last {
                            seq.ended = true;
                            ended.push(seq.id);
                        }
                    }
                }
            }
        }
        for id in ended {
            let h = self.clone();
            tokio::spawn(async move { h.close_in_engine(id).await });
        }
        for (to, (entries, parts, ids)) in steps {
            let states =
                match HiddenStates::concat_rows(&parts).and_then(|x| x.encode(WireDType::F32)) {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail_all(&ids, format!("encoding rows: {e}"));
                        continue;
                    }
                };
            self.send(NodeId(to), HopRequest::Step { entries, states }, ids);
        }
        for (to, (entries, ids)) in tokens {
            self.send(NodeId(to), HopRequest::Tokens { entries }, ids);
        }
    }

    /// Sends a step or tokens; if the next hop does not take them, the
    /// sequences fail and the first hop hears which hop broke.
    fn send(&self, to: NodeId, req: HopRequest, ids: Vec<SeqId>) {
        let payload = strata_wire::encode(&req);
        self.inner
            .bytes_sent
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let h = self.clone();
        tokio::spawn(async move {
            let answer = h.inner.p2p.request(to, &HIDDEN_STATE, payload).await;
            let why = match answer.map(|b| HopResponse::decode(&b)) {
                Ok(Ok(HopResponse::Ack)) => return,
                Ok(Ok(HopResponse::Error { kind, detail })) => format!("{kind:?}: {detail}"),
                Ok(Ok(other)) => format!("unexpected answer {other:?}"),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(peer = %to, "next hop did not take a message: {why}");
            h.fail_all(&ids, format!("hop {to} did not take the rows: {why}"));
        });
    }

    fn fail_all(&self, ids: &[SeqId], why: String) {
        let mut reports = Vec::new();
        {
            let mut t = self.lock();
            for id in ids {
                if let Some(seq) = t.by_id_mut(id) {
                    fail(seq, why.clone());
                    // The hop that did not answer is the one after this one
                    // (or the first, for tokens).
                    let culprit = if seq.is_last() { 0 } else { seq.index() + 1 };
                    reports.extend(self.failure_report(seq, culprit, &why));
                }
            }
        }
        for (to, req) in reports {
            self.send_detached(to, req);
        }
    }

    /// The `Failed` message for the first hop, unless this is the first hop.
    fn failure_report(&self, seq: &Seq, hop: usize, why: &str) -> Option<(NodeId, HopRequest)> {
        if seq.head.is_some() {
            return None;
        }
        let first = seq.first()?;
        let detail = truncate_detail(why.to_string());
        Some((
            first,
            HopRequest::Failed {
                task_id: seq.id.0,
                segment: seq.id.1,
                hop: u8::try_from(hop).unwrap_or(u8::MAX),
                detail,
            },
        ))
    }

    fn send_detached(&self, to: NodeId, req: HopRequest) {
        let p2p = self.inner.p2p.clone();
        tokio::spawn(async move {
            if let Err(e) = p2p
                .request(to, &HIDDEN_STATE, strata_wire::encode(&req))
                .await
            {
                tracing::debug!(peer = %to, "reporting a hop failure: {e}");
            }
        });
    }
}
