//! Following batches: sealing them, auditing the receipts the rules assign
//! to this verifier, reporting to the relayer, and queueing challenges.

use std::time::Duration;
use tracing::Instrument;

use strata_chain::accounts::Node;
use strata_chain::audit::AuditPlan;
use strata_chain::{ix, Pubkey};
use strata_node::openings::receipt_plan;
use strata_p2p::NodeId;
use strata_wire::audit::{
    AuditBody, AuditOutcome, AuditReport, FailedCheck, OpeningRequest, OpeningResponse,
    TaskOpening, AUDIT_VERSION,
};
use strata_wire::protocols::OPENING;
use strata_wire::Receipt;
use tokio::time::Instant;

use crate::check::{check_opening_adapted, lacks_adapter, Checked};
use crate::relayer::{verify_batch, BatchReceipt, RelayerError};
use crate::state::{PendingChallenge, State};
use crate::VerifierError;

use crate::service::{AdapterVerdict, Verifier, View};

/// Pause between attempts to reach a node for its openings.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Most undelivered reports kept (the oldest go first beyond it).
const MAX_PENDING_REPORTS: usize = 4_096;

impl Verifier {
    /// One poll: deliver what is pending, then every batch not done yet.
    pub(crate) async fn follow_batches(&self) -> Result<(), VerifierError> {
        self.flush_reports().await;
        let view = self.view().await?;
        self.flush_challenges(&view).await;
        let first = self.state.read(|s| s.batches_below);
        for id in first..view.config.next_batch_id {
            if self.state.read(|s| s.batch_done(id)) {
                continue;
            }
            let result = self.follow_batch(id, &view).await;
            self.note(&format!("batch {id}"), result);
        }
        Ok(())
    }

    pub(crate) async fn follow_batch(&self, id: u64, view: &View) -> Result<(), VerifierError> {
        let Some(batch) = self.chain.batch(id).await? else {
            return Ok(());
        };
        let window_end = batch
            .posted_at
            .saturating_add(view.config.params.challenge_window);
        if view.now > window_end {
            // Nothing found now could be challenged; a verifier starting on
            // a long-running chain does not re-audit its history.
            tracing::debug!(batch = id, "past its challenge window; not audited");
            self.state.update(|s| s.mark_batch_done(id));
            return Ok(());
        }
        if batch.audit_seed == [0; 32] {
            if view.slot > batch.seed_slot {
                self.send_ignoring(&[ix::seal_batch(id)], "SeedAlreadyDrawn", "sealing batch")
                    .await;
            }
            return Ok(());
        }
        let listed = self.relayer.batch_receipts(id).await?;
        let receipts = verify_batch(&batch, &listed)?;
        let n_layers = self.engine.model.n_layers() as u32;
        let mut mine = Vec::new();
        for r in &receipts {
            if self
                .state
                .read(|s| s.audits_done.contains(&(id, r.leaf_index)))
            {
                continue;
            }
            let serving = Pubkey::from(r.receipt.body.node);
            // A hop's receipt has its layers drawn inside its blocks.
            let Some(plan) = receipt_plan(
                &view.config,
                &batch,
                &r.receipt,
                &serving,
                &view.nodes,
                n_layers,
            ) else {
                return Ok(());
            };
            if plan.audited && plan.verifiers.contains(&self.me) {
                mine.push((r, plan));
            }
        }
        // All of the batch's audits at once: a node that withholds its
        // openings costs each of them one opening timeout in parallel, not
        // one after another (else a withholding cheater could stall the
        // verifier past the challenge window of everyone else's work).
        futures::future::join_all(mine.iter().map(|(r, plan)| {
            // Under the task the node served (a hop's, for a pipelined one).
            let b = &r.receipt.body;
            let task = b.hop.as_ref().map_or(b.task_id, |h| h.task_id);
            self.assigned_audit(id, r, plan, view)
                .instrument(strata_service::task_span(&task))
        }))
        .await;
        self.flush_reports().await;
        self.flush_challenges(view).await;
        self.state.update(|s| s.mark_batch_done(id));
        Ok(())
    }

    /// An audit the rules gave this verifier: check, report, challenge.
    pub(crate) async fn assigned_audit(
        &self,
        batch_id: u64,
        r: &BatchReceipt,
        plan: &AuditPlan,
        view: &View,
    ) {
        let body = &r.receipt.body;
        let task = hex::encode(body.task_id);
        let node = Pubkey::from(body.node);
        tracing::info!(%task, %node, batch = batch_id, layers = ?plan.layers, "auditing");
        let checked = match self
            .audit(
                &r.receipt,
                batch_id,
                r.leaf_index,
                &r.proof,
                plan,
                &view.nodes,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                // Our own failure, not the node's: no report, no challenge.
                tracing::error!(%task, %node, "could not audit: {e}");
                self.state
                    .update(|s| s.audits_done.insert((batch_id, r.leaf_index)));
                return;
            }
        };
        let failed = checked.failed_check();
        self.count(|s| {
            s.audit_cpu_micros += checked.cpu_micros;
            match failed {
                None => s.audits_passed += 1,
                Some(FailedCheck::Withheld) => s.audits_withheld += 1,
                Some(FailedCheck::UnknownModel) => s.audits_unknown_model += 1,
                Some(_) => s.audits_failed += 1,
            }
        });
        match &checked.outcome {
            AuditOutcome::Passed => tracing::info!(
                %task, %node, cpu_micros = checked.cpu_micros,
                max_rel_dev = checked.max_rel_dev, "audit passed"
            ),
            AuditOutcome::Failed { check, detail } => {
                tracing::warn!(%task, %node, ?check, "audit failed: {detail}")
            }
        }
        let report = self.signed_report(&r.receipt, batch_id, r.leaf_index, plan, &checked);
        let challenge = match failed {
            Some(check) if check != FailedCheck::UnknownModel => Some(PendingChallenge {
                batch_id,
                node: body.node,
                leaf_index: r.leaf_index,
                task_id: body.task_id,
                receipt_digest: body.digest(),
                proof: r.proof.clone(),
                attempts: 0,
            }),
            _ => None,
        };
        // One update: the audit is done exactly when its report and its
        // challenge are queued.
        self.state.update(|s| {
            queue_report(s, report);
            s.challenges.extend(challenge);
            s.audits_done.insert((batch_id, r.leaf_index));
        });
    }

    /// The signed report of an audit, as the relayer takes it.
    pub(crate) fn signed_report(
        &self,
        receipt: &Receipt,
        batch_id: u64,
        leaf_index: u32,
        plan: &AuditPlan,
        checked: &Checked,
    ) -> Option<Vec<u8>> {
        let body = AuditBody {
            version: AUDIT_VERSION,
            task_id: receipt.body.task_id,
            batch_id,
            leaf_index,
            node: receipt.body.node,
            verifier: self.me.to_bytes(),
            layers: plan.layers.clone(),
            steps: plan.steps.clone(),
            outcome: checked.outcome.clone(),
            work_digest: checked.work_digest,
            max_rel_dev: checked.max_rel_dev,
            cpu_micros: checked.cpu_micros,
            finished_at_ms: strata_service::now_ms(),
        };
        match AuditReport::sign(&self.key, body) {
            Ok(report) => Some(report.encode()),
            Err(e) => {
                let task = hex::encode(receipt.body.task_id);
                tracing::error!(%task, "signing the audit report: {e}");
                None
            }
        }
    }

    /// Asks the serving node for its openings and checks them. `Err` is
    /// this verifier's own failure (the checking thread died), never the
    /// node's.
    pub(crate) async fn audit(
        &self,
        receipt: &Receipt,
        batch_id: u64,
        leaf_index: u32,
        proof: &[[u8; 32]],
        plan: &AuditPlan,
        nodes: &[Node],
    ) -> Result<Checked, String> {
        let body = receipt.body.clone();
        if body.model_hash != self.model_hash {
            // No need to ask: this verifier cannot judge the task.
            return Ok(Checked::failed(
                FailedCheck::UnknownModel,
                format!(
                    "the receipt names model {}, this verifier runs {}",
                    hex::encode(body.model_hash),
                    hex::encode(self.model_hash)
                ),
            ));
        }
        // A task served with a policy version is re-run with its adapter,
        // from this verifier's own store (it follows the trainers too).
        let adapter = match &body.adapter {
            None => None,
            Some(part) => match self.adapter(part) {
                AdapterVerdict::Held(a) => Some(a),
                AdapterVerdict::Unknown => {
                    return Ok(Checked::failed(
                        FailedCheck::UnknownModel,
                        lacks_adapter(part),
                    ))
                }
                AdapterVerdict::Conflicting { published } => {
                    return Ok(Checked::failed(
                        FailedCheck::Adapter,
                        format!(
                            "the receipt names adapter {} as policy version {}; the trainer published {}",
                            hex::encode(part.adapter),
                            part.policy_version,
                            hex::encode(published)
                        ),
                    ))
                }
            },
        };
        let request = OpeningRequest {
            task_id: body.task_id,
            batch_id,
            leaf_index,
            proof: proof.to_vec(),
            layers: plan.layers.clone(),
        };
        let opening = match self
            .request_opening(&Pubkey::from(body.node), &request, nodes)
            .await
        {
            Ok(o) => o,
            Err(why) => return Ok(Checked::failed(FailedCheck::Withheld, why)),
        };
        let (engine, model_hash) = (self.engine.clone(), self.model_hash);
        let (layers, steps) = (plan.layers.clone(), plan.steps.clone());
        tokio::task::spawn_blocking(move || {
            check_opening_adapted(
                &engine.model,
                &model_hash,
                &body,
                &layers,
                &steps,
                &opening,
                adapter.as_deref(),
            )
        })
        .await
        .map_err(|e| format!("the checking thread failed: {e}"))
    }

    /// The node's openings, or why there are none (no answer in time, a
    /// refusal, an answer that does not decode). Transport failures are
    /// retried until the opening timeout.
    pub(crate) async fn request_opening(
        &self,
        node: &Pubkey,
        request: &OpeningRequest,
        nodes: &[Node],
    ) -> Result<TaskOpening, String> {
        let id = NodeId(node.to_bytes());
        if let Some(n) = nodes.iter().find(|n| n.operator == *node) {
            for addr in &n.multiaddrs {
                let _ = self.p2p.add_address(id, addr).await;
            }
        }
        let payload = strata_wire::encode(request);
        let deadline = Instant::now() + self.opening_timeout;
        let mut last_error = String::from("no attempt");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no answer within {:?} ({last_error})",
                    self.opening_timeout
                ));
            }
            let answer =
                tokio::time::timeout(left, self.p2p.request(id, &OPENING, payload.clone())).await;
            match answer {
                Err(_) => {
                    return Err(format!("no answer within {:?}", self.opening_timeout));
                }
                Ok(Err(e)) => {
                    last_error = e.to_string();
                    tokio::time::sleep(RETRY_PAUSE.min(left)).await;
                }
                Ok(Ok(bytes)) => {
                    return match OpeningResponse::decode(&bytes) {
                        Ok(OpeningResponse::Opened(o)) => Ok(*o),
                        Ok(OpeningResponse::Refused(why)) => Err(format!("refused: {why}")),
                        Err(e) => Err(format!("undecodable answer: {e}")),
                    };
                }
            }
        }
    }

    /// Hands queued reports to the relayer, oldest first; stops at the
    /// first the relayer cannot take now.
    pub(crate) async fn flush_reports(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let reports = self.state.read(|s| s.reports.clone());
        for report in reports {
            let delivered = match self.relayer.post_audit(&report).await {
                Ok(()) => true,
                // A relayer without the endpoint yet: keep the report.
                Err(RelayerError::Refused {
                    status: 404 | 405, ..
                }) => false,
                // This verifier already reported on the task (a committee
                // member re-running its own audit): the first report stands.
                Err(e @ RelayerError::Refused { status: 409, .. }) => {
                    tracing::info!("{e}");
                    true
                }
                Err(e @ RelayerError::Refused { .. }) => {
                    tracing::error!("the relayer refused an audit report: {e}");
                    true
                }
                Err(e) => {
                    tracing::debug!("audit report not delivered yet: {e}");
                    false
                }
            };
            if !delivered {
                return;
            }
            self.state.update(|s| s.reports.retain(|r| *r != report));
        }
    }
}

/// Queues a signed report for the relayer, within a bound.
pub(crate) fn queue_report(state: &mut State, report: Option<Vec<u8>>) {
    state.reports.extend(report);
    if state.reports.len() > MAX_PENDING_REPORTS {
        state.reports.remove(0);
        tracing::warn!("too many undelivered audit reports; dropped the oldest");
    }
}
