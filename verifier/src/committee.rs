//! Challenges: opening the ones this verifier's audits call for, and
//! committee duty (drawing committees, re-checking, voting, submitting
//! verdicts, expiring what nobody judged).

use strata_chain::accounts::{Challenge, ChallengeStatus};
use strata_chain::audit::{self};
use strata_chain::ed25519::verify_instruction;
use strata_chain::ix::ReceiptClaim;
use strata_chain::{ix, pda, ChainError, Pubkey};
use strata_wire::audit::{AuditOutcome, FailedCheck, VerdictVote};
use strata_wire::protocols::VERDICTS;

use crate::relayer::{claimed_batch_id, verify_challenged_receipt, RelayerError};
use crate::state::PendingChallenge;
use crate::votes::Verdict;
use crate::VerifierError;

use crate::audits::queue_report;
use crate::service::{Verifier, View};

/// Program errors after which a challenge can never be opened.
const CHALLENGE_NEVER: &[&str] = &[
    "ChallengeWindowClosed",
    "InvalidMerkleProof",
    "SelfChallenge",
];

impl Verifier {
    /// Opens the queued challenges.
    pub(crate) async fn flush_challenges(&self, view: &View) {
        let pending = self.state.read(|s| s.challenges.clone());
        for c in pending {
            let done = self.open_challenge(&c, view).await;
            self.state.update(|s| {
                let key = |p: &PendingChallenge| (p.batch_id, p.leaf_index);
                if done {
                    s.challenges.retain(|p| key(p) != key(&c));
                } else if let Some(p) = s.challenges.iter_mut().find(|p| key(p) == key(&c)) {
                    p.attempts = p.attempts.saturating_add(1);
                }
            });
        }
    }

    /// Tries to open one challenge; true when nothing is left to do.
    pub(crate) async fn open_challenge(&self, c: &PendingChallenge, view: &View) -> bool {
        let task = hex::encode(c.task_id);
        let node = Pubkey::from(c.node);
        let address = pda::challenge(&pda::batch(c.batch_id), c.leaf_index);
        // Retried until it lands or the batch's challenge window closes
        // (what cannot land, e.g. with no tokens for the bond, ends there).
        match self.chain.batch(c.batch_id).await {
            Ok(Some(b))
                if view.now
                    > b.posted_at
                        .saturating_add(view.config.params.challenge_window) =>
            {
                tracing::error!(%task, %node, "the challenge window closed first");
                return true;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::error!(%task, batch = c.batch_id, "the challenged batch is not on-chain");
                return true;
            }
            Err(e) => {
                tracing::warn!(%task, "reading the batch: {e}");
                return false;
            }
        }
        match self.chain.account::<Challenge>(&address, "challenge").await {
            Ok(Some(_)) => {
                tracing::info!(%task, %node, "already challenged");
                return true;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%task, "reading the challenge account: {e}");
                return false;
            }
        }
        let bond_from = pda::associated_token(&self.me, &view.config.mint);
        let claim = ReceiptClaim {
            leaf_index: c.leaf_index,
            task_id: c.task_id,
            receipt_digest: c.receipt_digest,
            proof: c.proof.clone(),
        };
        let ix = ix::open_challenge(&self.me, &bond_from, c.batch_id, &node, claim);
        match self.chain.send(&[ix], &self.key, &[]).await {
            Ok(sig) => {
                self.count(|s| s.challenges_opened += 1);
                tracing::warn!(%task, %node, challenge = %address, %sig, "challenge opened");
                true
            }
            Err(ChainError::Program { name, message, .. })
                if CHALLENGE_NEVER.contains(&name.as_str()) =>
            {
                tracing::warn!(%task, %node, "the challenge cannot be opened: {name}: {message}");
                true
            }
            Err(e) => {
                // Loud the first time, then now and then while it keeps failing.
                if c.attempts.is_multiple_of(30) {
                    let attempts = c.attempts + 1;
                    tracing::warn!(%task, %node, attempts, "opening the challenge: {e}");
                } else {
                    tracing::debug!(%task, %node, "opening the challenge: {e}");
                }
                false
            }
        }
    }

    // ----- committee duty -----------------------------------------------------

    /// One poll over every open challenge.
    pub(crate) async fn committee_duty(&self) -> Result<(), VerifierError> {
        let challenges = self.chain.challenges().await?;
        let view = self.view().await?;
        let open: Vec<(Pubkey, Challenge)> = challenges
            .into_iter()
            .filter(|(_, c)| c.status == ChallengeStatus::Open)
            .collect();
        let open_keys: Vec<[u8; 32]> = open.iter().map(|(a, _)| a.to_bytes()).collect();
        let min_stake = view.config.params.min_stake;
        self.votes().set_scope(
            open_keys.iter().copied(),
            view.nodes
                .iter()
                .filter(|n| n.is_verifier() && n.stake >= min_stake)
                .map(|n| n.operator.to_bytes()),
        );
        let stale = self.state.read(|s| {
            s.votes
                .keys()
                .chain(&s.abstained)
                .any(|c| !open_keys.contains(c))
        });
        if stale {
            self.state
                .update(|s| s.retain_challenges(|c| open_keys.contains(c)));
        }
        // Every open challenge at once, for the same reason audits run at
        // once: one withholding node must not delay the verdicts on others.
        let results = futures::future::join_all(
            open.iter()
                .map(|(address, c)| self.serve_challenge(address, c, &view)),
        )
        .await;
        for ((address, _), result) in open.iter().zip(results) {
            self.note(&format!("challenge {address}"), result);
        }
        Ok(())
    }

    pub(crate) async fn serve_challenge(
        &self,
        address: &Pubkey,
        c: &Challenge,
        view: &View,
    ) -> Result<(), VerifierError> {
        if view.now > c.deadline {
            let ix = ix::expire_challenge(
                &self.me,
                address,
                &c.batch,
                &c.node,
                &c.challenger,
                &pda::associated_token(&c.challenger, &view.config.mint),
            );
            if self
                .send_ignoring(&[ix], "ChallengeNotOpen", "expiring a challenge")
                .await
            {
                let node = c.node;
                tracing::info!(challenge = %address, %node, "challenge expired without a verdict");
            }
            return Ok(());
        }
        if c.seed == [0; 32] {
            if view.slot > c.seed_slot {
                self.send_ignoring(
                    &[ix::draw_committee(address)],
                    "SeedAlreadyDrawn",
                    "drawing a committee",
                )
                .await;
            }
            return Ok(());
        }
        let key = address.to_bytes();
        let committee = audit::committee(c, &view.nodes, view.config.params.min_stake);
        if committee.contains(&self.me) && !self.state.read(|s| s.judged(&key)) {
            self.judge(address, c, view).await?;
        }
        if let Some(vote) = self.state.read(|s| s.votes.get(&key).copied()) {
            self.votes().insert(vote);
            // Re-published every poll for peers that joined late; gossip
            // drops the repeats others already have.
            if let Err(e) = self
                .p2p
                .publish(&VERDICTS, strata_wire::encode(&vote))
                .await
            {
                tracing::debug!(challenge = %address, "publishing our vote: {e}");
            }
        }
        let verdict = self
            .votes()
            .quorum(&key, &committee, c.terms.verifier_quorum);
        if let Some(verdict) = verdict {
            self.submit(address, c, &verdict, view).await?;
        }
        Ok(())
    }

    /// Re-runs the challenged receipt's audit and records a vote (or an
    /// abstention when this verifier does not run the receipt's model).
    pub(crate) async fn judge(
        &self,
        address: &Pubkey,
        c: &Challenge,
        view: &View,
    ) -> Result<(), VerifierError> {
        let Some(listed) = self.relayer.receipt(&c.task_id).await? else {
            // Retried every poll; logged once (see `note`).
            return Err(RelayerError::Mismatch(format!(
                "the relayer does not know the challenged task {}",
                hex::encode(c.task_id)
            ))
            .into());
        };
        let batch_id = claimed_batch_id(&listed)?;
        let batch =
            self.chain.batch(batch_id).await?.ok_or_else(|| {
                RelayerError::Mismatch(format!("batch {batch_id} is not on-chain"))
            })?;
        let found = verify_challenged_receipt(c, &batch, &listed)?;
        if batch.audit_seed == [0; 32] {
            // The openings the node gives follow the batch's audit plan.
            if view.slot > batch.seed_slot {
                self.send_ignoring(
                    &[ix::seal_batch(batch_id)],
                    "SeedAlreadyDrawn",
                    "sealing batch",
                )
                .await;
            }
            return Ok(());
        }
        let receipt = &found.receipt;
        let n_layers = self.engine.model.n_layers() as u32;
        let plan = strata_node::openings::receipt_plan(
            &view.config,
            &batch,
            receipt,
            &c.node,
            &view.nodes,
            n_layers,
        )
        .ok_or_else(|| VerifierError::Config("the batch has no audit seed".into()))?;
        let task = hex::encode(c.task_id);
        tracing::info!(challenge = %address, %task, node = %c.node, "judging a challenge");
        let checked = self
            .audit(
                receipt,
                batch_id,
                c.leaf_index,
                &found.proof,
                &plan,
                &view.nodes,
            )
            .await
            .map_err(VerifierError::Model)?;
        self.count(|s| s.audit_cpu_micros += checked.cpu_micros);
        // Committee members report too: the relayer keeps every judgement.
        let report = self.signed_report(receipt, batch_id, c.leaf_index, &plan, &checked);
        let key = address.to_bytes();
        if checked.failed_check() == Some(FailedCheck::UnknownModel) {
            tracing::info!(challenge = %address, "abstaining: the receipt's model is not ours");
            self.state.update(|s| {
                queue_report(s, report);
                s.abstained.insert(key);
            });
            self.flush_reports().await;
            return Ok(());
        }
        // A withheld opening counts as a failure: the node had every chance.
        let upheld = !checked.passed();
        let vote = VerdictVote::sign(&self.key, key, upheld);
        self.state.update(|s| {
            queue_report(s, report);
            s.votes.insert(key, vote);
        });
        self.count(|s| s.votes_cast += 1);
        match &checked.outcome {
            AuditOutcome::Passed => {
                tracing::info!(challenge = %address, %task, upheld, "voted: the work checks out")
            }
            AuditOutcome::Failed { check, detail } => tracing::warn!(
                challenge = %address, %task, upheld, ?check, "voted: {detail}"
            ),
        }
        self.flush_reports().await;
        Ok(())
    }

    /// Submits a verdict a quorum signed (a race lost to another submitter
    /// is fine).
    pub(crate) async fn submit(
        &self,
        address: &Pubkey,
        c: &Challenge,
        verdict: &Verdict,
        view: &View,
    ) -> Result<(), VerifierError> {
        let precompile = verify_instruction(&verdict.signed_messages())?;
        let resolve = ix::resolve_challenge(
            &self.me,
            address,
            &c.batch,
            &c.node,
            &pda::associated_token(&c.challenger, &view.config.mint),
            &verdict.voters(),
            verdict.upheld,
        );
        if self
            .send_ignoring(
                &[precompile, resolve],
                "ChallengeNotOpen",
                "submitting a verdict",
            )
            .await
        {
            self.count(|s| s.verdicts_submitted += 1);
            tracing::warn!(
                challenge = %address, node = %c.node, upheld = verdict.upheld,
                voters = verdict.votes.len(), "verdict submitted"
            );
        }
        Ok(())
    }
}
