//! Rewards: when the chain enters an epoch after the last published one,
//! the relayer (the reward authority) publishes a root of cumulative rewards
//! per operator since genesis:
//! - a node earns `reward_per_work_unit` × the work units of its receipts in
//!   posted batches;
//! - a verifier earns, for each audit report it was assigned and that is
//!   accepted, not flagged and not `UnknownModel` (it did not audit),
//!   `audit_reward_bps` × the task's work units × `reward_per_work_unit` /
//!   10 000; a report of a cross-checked task is paid once its partner's
//!   report agrees, or after the batch's challenge window if the partner
//!   never reported;
//! - each voter of a resolved challenge (the signatures that made the
//!   verdict: a dissenter or a silent member is not among them) earns the
//!   chain's `committee_reward`, once per challenge.
//!
//! A published cumulative never shrinks (a report flagged after it was paid
//! stays paid): claims are against cumulative amounts. Leaves are sorted by
//! operator. `declared` (what claims against the root may pay) is what is
//! still unclaimed on-chain, capped by the program's per-epoch cap.
//!
//! As with batches, the epoch's leaves are committed before the transaction
//! is sent, so the proofs for a published root are never lost.

use strata_chain::accounts::{ClaimRecord, RewardEpoch};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, pda, Pubkey, Signer};
use tracing::{info, warn};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use strata_wire::audit::{AuditOutcome, FailedCheck};

use crate::chain::{chain_now, creating_signature};
use crate::store::{AuditRole, ChallengeRecord, EpochRecord, EpochStatus, StoreError, StoredAudit};
use crate::{Ctx, RelayerError};

/// One round: reconcile planned epochs, then publish the current epoch if due.
pub async fn round(ctx: &Ctx) -> Result<(), RelayerError> {
    let config = ctx.chain.config().await?;
    let now = chain_now(&ctx.chain).await?;
    let current = config.epoch_at(now);
    let epochs = ctx.store.epochs()?;
    for planned in epochs.iter().filter(|e| e.status == EpochStatus::Planned) {
        let address = pda::reward_epoch(planned.epoch);
        match ctx
            .chain
            .account::<RewardEpoch>(&address, "reward epoch")
            .await?
        {
            Some(onchain) if onchain.root == planned.root => {
                let mut done = planned.clone();
                done.status = EpochStatus::Published;
                done.signature = creating_signature(&ctx.chain, &address).await;
                ctx.store.put_epoch(&done)?;
            }
            Some(_) => {
                warn!(
                    epoch = planned.epoch,
                    "another root was published for this epoch; dropping ours"
                );
                ctx.store.drop_epoch(planned.epoch)?;
            }
            // The program publishes the current epoch only: a plan left
            // from an earlier epoch is dropped and planned anew below.
            None if planned.epoch > config.last_reward_epoch && planned.epoch == current => {
                return publish(ctx, planned.clone()).await;
            }
            None => ctx.store.drop_epoch(planned.epoch)?,
        }
    }
    if current <= config.last_reward_epoch {
        return Ok(());
    }
    let last = ctx
        .store
        .epochs()?
        .into_iter()
        .rev()
        .find(|e| e.status == EpochStatus::Published);
    let leaves = cumulative_rewards(&Inputs {
        node_work: &ctx.store.node_work()?,
        audits: &ctx.store.all_audits()?,
        challenges: &ctx.store.challenges()?,
        reward_per_work_unit: ctx.reward_per_work_unit,
        chain_now: now,
        published: last.as_ref().map_or(&[][..], |l| l.leaves.as_slice()),
    })?;
    if leaves.is_empty() || last.is_some_and(|l| l.leaves == leaves) {
        return Ok(());
    }
    let mut unclaimed = 0u64;
    for (operator, cumulative) in &leaves {
        let claimed = ctx
            .chain
            .account::<ClaimRecord>(&pda::claim_record(&Pubkey::from(*operator)), "claim record")
            .await?
            .map_or(0, |c| c.claimed);
        unclaimed = unclaimed.saturating_add(cumulative.saturating_sub(claimed));
    }
    let declared = unclaimed.min(config.params.epoch_reward_cap);
    if declared == 0 {
        return Ok(());
    }
    let mut record = EpochRecord {
        epoch: current,
        status: EpochStatus::Planned,
        root: [0; 32],
        leaves,
        declared,
        signature: None,
    };
    record.root = merkle::root::<Ledger>(&record.leaf_hashes());
    ctx.store.put_epoch(&record)?;
    publish(ctx, record).await
}

async fn publish(ctx: &Ctx, mut record: EpochRecord) -> Result<(), RelayerError> {
    let leaf_count = u32::try_from(record.leaves.len())
        .map_err(|_| RelayerError::Task("too many reward leaves".into()))?;
    let publish = ix::publish_rewards(
        &ctx.keypair.pubkey(),
        record.epoch,
        record.root,
        leaf_count,
        record.declared,
    );
    let sig = ctx.chain.send(&[publish], &ctx.keypair, &[]).await?;
    record.status = EpochStatus::Published;
    record.signature = Some(sig.to_string());
    ctx.store.put_epoch(&record)?;
    info!(epoch = record.epoch, %sig, leaves = leaf_count, declared = record.declared, "published rewards");
    Ok(())
}

/// What an epoch's cumulative rewards are computed from.
pub(crate) struct Inputs<'a> {
    /// Work units per node in posted batches.
    pub node_work: &'a [([u8; 32], u64)],
    /// Every stored audit report.
    pub audits: &'a [StoredAudit],
    /// Every indexed challenge.
    pub challenges: &'a [ChallengeRecord],
    /// Reward per work unit (token base units).
    pub reward_per_work_unit: u64,
    /// The chain's Unix time now.
    pub chain_now: i64,
    /// The last published leaves (a cumulative never goes below them).
    pub published: &'a [([u8; 32], u64)],
}

/// Cumulative rewards per operator, sorted by operator, zeros left out.
pub(crate) fn cumulative_rewards(inputs: &Inputs) -> Result<Vec<([u8; 32], u64)>, StoreError> {
    let mut totals: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    let mut credit = |operator: [u8; 32], amount: u64| {
        let t = totals.entry(operator).or_default();
        *t = t.saturating_add(amount);
    };
    for (node, work) in inputs.node_work {
        credit(*node, work.saturating_mul(inputs.reward_per_work_unit));
    }

    // Assigned reports per task, to see whether a cross-check partner reported.
    let mut assigned_per_task: HashMap<[u8; 32], usize> = HashMap::new();
    let mut decoded = Vec::with_capacity(inputs.audits.len());
    for audit in inputs.audits {
        let report = audit.report()?;
        if matches!(audit.role, AuditRole::Assigned { .. }) {
            *assigned_per_task.entry(report.body.task_id).or_default() += 1;
        }
        decoded.push((audit, report));
    }
    for (audit, report) in decoded {
        let AuditRole::Assigned { of } = audit.role else {
            continue;
        };
        let did_audit = !matches!(
            report.body.outcome,
            AuditOutcome::Failed {
                check: FailedCheck::UnknownModel,
                ..
            }
        );
        let partners_in = assigned_per_task
            .get(&report.body.task_id)
            .copied()
            .unwrap_or(0)
            >= usize::from(of);
        let settled = partners_in || inputs.chain_now > audit.window_ends;
        if audit.flag.is_some() || !did_audit || !settled {
            continue;
        }
        credit(
            report.body.verifier,
            audit_reward(
                audit.reward_bps,
                audit.work_units,
                inputs.reward_per_work_unit,
            ),
        );
    }

    for challenge in inputs.challenges {
        if !challenge.state.is_resolved() {
            continue;
        }
        let voters: BTreeSet<[u8; 32]> = challenge.voters.iter().copied().collect();
        for voter in voters {
            credit(voter, challenge.committee_reward);
        }
    }

    for (operator, published) in inputs.published {
        let t = totals.entry(*operator).or_default();
        *t = (*t).max(*published);
    }
    Ok(totals.into_iter().filter(|(_, c)| *c > 0).collect())
}

/// One audit's reward: `bps` of the task's own reward, rounded down.
pub(crate) fn audit_reward(bps: u16, work_units: u64, reward_per_work_unit: u64) -> u64 {
    let r = u128::from(bps) * u128::from(work_units) * u128::from(reward_per_work_unit) / 10_000;
    u64::try_from(r).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use strata_wire::audit::{AuditBody, AuditReport, AUDIT_VERSION};

    use super::*;
    use crate::store::ChallengeState;

    const RPWU: u64 = 1_000;

    fn report(task: u8, verifier: u8, outcome: AuditOutcome, digest: u8) -> Vec<u8> {
        AuditReport {
            body: AuditBody {
                version: AUDIT_VERSION,
                task_id: [task; 32],
                batch_id: 0,
                leaf_index: 0,
                node: [99; 32],
                verifier: [verifier; 32],
                layers: vec![1],
                steps: vec![],
                outcome,
                work_digest: [digest; 32],
                max_rel_dev: 0.0,
                cpu_micros: 1,
                finished_at_ms: 1,
            },
            // Signatures were checked on the way in; the sums do not read them.
            signature: [0; 64],
        }
        .encode()
    }

    fn stored(raw: Vec<u8>, role: AuditRole, flag: Option<&str>) -> StoredAudit {
        StoredAudit {
            seq: 0,
            received_ms: 0,
            raw,
            role,
            work_units: 32,
            reward_bps: 2_000,
            window_ends: 1_000,
            flag: flag.map(str::to_string),
        }
    }

    fn challenge(state: ChallengeState, voters: &[u8], reward: u64) -> ChallengeRecord {
        ChallengeRecord {
            address: [state as u8; 32],
            opened_slot: 1,
            accused: [99; 32],
            challenger: [1; 32],
            batch: [0; 32],
            batch_id: Some(0),
            leaf_index: 0,
            task_id: [0; 32],
            bond: 10,
            opened_at: 0,
            deadline: 10,
            seed: [1; 32],
            state,
            committee: voters.iter().map(|v| [*v; 32]).collect(),
            voters: voters.iter().map(|v| [*v; 32]).collect(),
            slashed: 0,
            to_challenger: 0,
            committee_reward: reward,
            signature: None,
            settled: true,
        }
    }

    fn failed(check: FailedCheck) -> AuditOutcome {
        AuditOutcome::Failed {
            check,
            detail: String::new(),
        }
    }

    /// Nodes by work, verifiers by audits (cross-checks held until the
    /// partner reports or the window ends, flagged, UnknownModel and
    /// committee reports unpaid), voters by verdicts (once each), and never
    /// below what was published.
    #[test]
    fn cumulative_rewards_pay_work_audits_and_votes_exactly() {
        let single = AuditRole::Assigned { of: 1 };
        let cross = AuditRole::Assigned { of: 2 };
        let audits = vec![
            // A: a pass and a withheld opening, both paid.
            stored(report(1, 0xa, AuditOutcome::Passed, 1), single, None),
            stored(
                report(2, 0xa, failed(FailedCheck::Withheld), 0),
                single,
                None,
            ),
            // B: did not audit (UnknownModel); a cross-check alone, held.
            stored(
                report(3, 0xb, failed(FailedCheck::UnknownModel), 0),
                single,
                None,
            ),
            stored(report(4, 0xb, AuditOutcome::Passed, 4), cross, None),
            // C and D agree on task 5: both paid.
            stored(report(5, 0xc, AuditOutcome::Passed, 5), cross, None),
            stored(report(5, 0xd, AuditOutcome::Passed, 5), cross, None),
            // E: flagged; F: a committee member's report.
            stored(
                report(6, 0xe, failed(FailedCheck::Layer(2)), 6),
                single,
                Some("work digests disagree"),
            ),
            stored(
                report(7, 0xf, AuditOutcome::Passed, 7),
                AuditRole::Committee { challenge: [3; 32] },
                None,
            ),
        ];
        let challenges = vec![
            // A voted twice in one verdict's list: paid once.
            challenge(ChallengeState::Upheld, &[0xa, 0xa, 0xc], 100_000),
            challenge(ChallengeState::Rejected, &[0xc], 70_000),
            challenge(ChallengeState::Open, &[0xd], 100_000),
            challenge(ChallengeState::Expired, &[0xd], 100_000),
        ];
        let node_work = vec![([99; 32], 100), ([98; 32], 0)];
        let published = vec![([0xa; 32], 1), ([0xee; 32], 5)];
        let inputs = |now| Inputs {
            node_work: &node_work,
            audits: &audits,
            challenges: &challenges,
            reward_per_work_unit: RPWU,
            chain_now: now,
            published: &published,
        };
        assert_eq!(audit_reward(2_000, 32, RPWU), 6_400);
        assert_eq!(audit_reward(3, 7, 1), 0, "rounded down");
        let before_window = cumulative_rewards(&inputs(1_000)).unwrap();
        assert_eq!(
            before_window,
            vec![
                ([0xa; 32], 2 * 6_400 + 100_000),
                ([0xc; 32], 6_400 + 100_000 + 70_000),
                ([0xd; 32], 6_400),
                ([99; 32], 100_000),
                ([0xee; 32], 5),
            ]
        );
        // After the window, B's lone cross-check report is paid too.
        let after_window = cumulative_rewards(&inputs(1_001)).unwrap();
        assert!(after_window.contains(&([0xb; 32], 6_400)));
        assert_eq!(after_window.len(), before_window.len() + 1);
        // A published cumulative above what is computed stands.
        let high = vec![([0xd; 32], 50_000)];
        let kept = cumulative_rewards(&Inputs {
            published: &high,
            ..inputs(0)
        })
        .unwrap();
        assert!(kept.contains(&([0xd; 32], 50_000)));
    }
}
