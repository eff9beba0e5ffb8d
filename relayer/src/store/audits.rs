//! Audit reports in the store: one per (task, verifier), with the arrival
//! order for recent lists, and the cross-check between the two verifiers the
//! audit rules assign to a cross-checked task.

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{ReadableTable, TableDefinition};
use strata_chain::Pubkey;
use strata_wire::audit::{AuditReport, MAX_AUDIT_REPORT_BYTES};

use super::{decode, encode, Store, StoreError, COUNTERS};

/// task ‖ verifier → borsh [`StoredAudit`].
pub(super) const AUDITS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("audits");
/// Arrival sequence → task ‖ verifier.
pub(super) const AUDIT_ARRIVALS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("audit_arrivals");

const NEXT_AUDIT: &str = "next_audit";

/// Why a verifier may report on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum AuditRole {
    /// The audit rules assign it; `of` verifiers were assigned (2 when the
    /// task is cross-checked).
    Assigned {
        /// How many verifiers the rules assigned to the task.
        of: u8,
    },
    /// It sits on the committee of this challenge against the receipt.
    Committee {
        /// The challenge account.
        challenge: [u8; 32],
    },
}

impl AuditRole {
    /// `assigned` or `committee`, as the API names it.
    pub fn name(&self) -> &'static str {
        match self {
            AuditRole::Assigned { .. } => "assigned",
            AuditRole::Committee { .. } => "committee",
        }
    }
}

/// An accepted audit report, as stored.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct StoredAudit {
    /// Arrival sequence number.
    pub seq: u64,
    /// When it was stored (Unix ms).
    pub received_ms: u64,
    /// The exact bytes received (`AuditReport::encode`).
    pub raw: Vec<u8>,
    /// Why the verifier could report.
    pub role: AuditRole,
    /// Work units of the audited task.
    pub work_units: u64,
    /// The chain's `audit_reward_bps` when the report was accepted (0 for a
    /// committee member's report: committees are paid per verdict).
    pub reward_bps: u16,
    /// End of the batch's challenge window (chain Unix time): a
    /// cross-checked report whose partner has not reported is paid after it.
    pub window_ends: i64,
    /// Why the report earns nothing, if it does not.
    pub flag: Option<String>,
}

impl StoredAudit {
    /// The report (already verified when it was stored).
    pub fn report(&self) -> Result<AuditReport, StoreError> {
        strata_wire::decode(&self.raw, MAX_AUDIT_REPORT_BYTES)
            .map_err(|_| StoreError::Corrupt("audits"))
    }
}

/// What storing an audit report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditInsert {
    /// Newly stored; whether it is flagged.
    Stored {
        /// The report is flagged.
        flagged: bool,
    },
    /// These exact bytes were already stored.
    Duplicate {
        /// The stored report is flagged.
        flagged: bool,
    },
    /// The verifier already reported something else on this task.
    Conflicting,
}

/// What a new report should be stored with, beyond its bytes.
#[derive(Debug, Clone, Copy)]
pub struct AuditMeta {
    /// Why the verifier may report.
    pub role: AuditRole,
    /// Work units of the task.
    pub work_units: u64,
    /// The chain's `audit_reward_bps` now.
    pub reward_bps: u16,
    /// End of the batch's challenge window (chain Unix time).
    pub window_ends: i64,
}

fn audit_key(task: &[u8; 32], verifier: &[u8; 32]) -> Vec<u8> {
    [task.as_slice(), verifier.as_slice()].concat()
}

impl Store {
    /// The report `verifier` filed on `task`, if any.
    pub fn audit(
        &self,
        task: &[u8; 32],
        verifier: &[u8; 32],
    ) -> Result<Option<StoredAudit>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(AUDITS)?;
        let out = match table.get(audit_key(task, verifier).as_slice())? {
            Some(g) => Some(decode(g.value(), "audits")?),
            None => None,
        };
        Ok(out)
    }

    /// Stores a verified report (the caller checked its signature and that
    /// its verifier may report) in one transaction. When the other assigned
    /// verifier of a cross-checked task already reported a different work
    /// digest, both reports are flagged: one of the two did not re-run what
    /// it claims, and neither is paid for it.
    pub fn insert_audit(
        &self,
        report: &AuditReport,
        raw: &[u8],
        meta: AuditMeta,
        now_ms: u64,
    ) -> Result<AuditInsert, StoreError> {
        let b = &report.body;
        let key = audit_key(&b.task_id, &b.verifier);
        let tx = self.db.begin_write()?;
        let outcome = {
            let mut audits = tx.open_table(AUDITS)?;
            if let Some(existing) = audits.get(key.as_slice())? {
                let existing: StoredAudit = decode(existing.value(), "audits")?;
                return Ok(if existing.raw == raw {
                    AuditInsert::Duplicate {
                        flagged: existing.flag.is_some(),
                    }
                } else {
                    AuditInsert::Conflicting
                });
            }
            let mut flag = None;
            if matches!(meta.role, AuditRole::Assigned { .. }) {
                let low = audit_key(&b.task_id, &[0; 32]);
                let high = audit_key(&b.task_id, &[0xff; 32]);
                let mut partners = Vec::new();
                for entry in audits.range(low.as_slice()..=high.as_slice())? {
                    let (k, v) = entry?;
                    let other: StoredAudit = decode(v.value(), "audits")?;
                    if matches!(other.role, AuditRole::Assigned { .. }) {
                        partners.push((k.value().to_vec(), other));
                    }
                }
                for (partner_key, mut other) in partners {
                    let theirs = other.report()?.body;
                    if theirs.work_digest == b.work_digest {
                        continue;
                    }
                    flag = Some(format!(
                        "work digests disagree with verifier {}",
                        Pubkey::from(theirs.verifier)
                    ));
                    if other.flag.is_none() {
                        other.flag = Some(format!(
                            "work digests disagree with verifier {}",
                            Pubkey::from(b.verifier)
                        ));
                        audits.insert(partner_key.as_slice(), encode(&other).as_slice())?;
                    }
                }
            }
            let mut counters = tx.open_table(COUNTERS)?;
            let seq = counters.get(NEXT_AUDIT)?.map_or(0, |g| g.value());
            counters.insert(NEXT_AUDIT, seq + 1)?;
            let flagged = flag.is_some();
            let stored = StoredAudit {
                seq,
                received_ms: now_ms,
                raw: raw.to_vec(),
                role: meta.role,
                work_units: meta.work_units,
                reward_bps: meta.reward_bps,
                window_ends: meta.window_ends,
                flag,
            };
            audits.insert(key.as_slice(), encode(&stored).as_slice())?;
            tx.open_table(AUDIT_ARRIVALS)?.insert(seq, key.as_slice())?;
            AuditInsert::Stored { flagged }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Every report on `task`, by verifier key.
    pub fn audits_for_task(&self, task: &[u8; 32]) -> Result<Vec<StoredAudit>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(AUDITS)?;
        let low = audit_key(task, &[0; 32]);
        let high = audit_key(task, &[0xff; 32]);
        let mut out = Vec::new();
        for entry in table.range(low.as_slice()..=high.as_slice())? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "audits")?);
        }
        Ok(out)
    }

    /// The `limit` most recently stored reports, newest first.
    pub fn recent_audits(&self, limit: usize) -> Result<Vec<StoredAudit>, StoreError> {
        let tx = self.db.begin_read()?;
        let arrivals = tx.open_table(AUDIT_ARRIVALS)?;
        let audits = tx.open_table(AUDITS)?;
        let mut out = Vec::new();
        for entry in arrivals.iter()?.rev().take(limit) {
            let (_, key) = entry?;
            if let Some(g) = audits.get(key.value())? {
                out.push(decode(g.value(), "audits")?);
            }
        }
        Ok(out)
    }

    /// Every stored report, by task then verifier.
    pub fn all_audits(&self) -> Result<Vec<StoredAudit>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(AUDITS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "audits")?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use strata_chain::{Keypair, Signer};
    use strata_wire::audit::{AuditBody, AuditOutcome, AUDIT_VERSION};

    use super::*;

    fn signed(verifier: &Keypair, task: u8, digest: u8) -> AuditReport {
        AuditReport::sign(
            verifier,
            AuditBody {
                version: AUDIT_VERSION,
                task_id: [task; 32],
                batch_id: 1,
                leaf_index: 0,
                node: [9; 32],
                verifier: verifier.pubkey().to_bytes(),
                layers: vec![0, 4],
                steps: vec![1],
                outcome: AuditOutcome::Passed,
                work_digest: [digest; 32],
                max_rel_dev: 0.0,
                cpu_micros: 5,
                finished_at_ms: 7,
            },
        )
        .unwrap()
    }

    fn meta(role: AuditRole) -> AuditMeta {
        AuditMeta {
            role,
            work_units: 32,
            reward_bps: 2_000,
            window_ends: 100,
        }
    }

    /// Idempotent for the same bytes, refused for other bytes from the same
    /// verifier, and both assigned reports flagged when their work digests
    /// disagree (a committee report is never compared); all of it durable.
    #[test]
    fn duplicates_conflicts_and_cross_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relayer.redb");
        let store = Store::open(&path).unwrap();
        let (a, b, c) = (Keypair::new(), Keypair::new(), Keypair::new());
        let cross = AuditRole::Assigned { of: 2 };

        let ra = signed(&a, 1, 5);
        let stored = store.insert_audit(&ra, &ra.encode(), meta(cross), 10);
        assert_eq!(stored.unwrap(), AuditInsert::Stored { flagged: false });
        let again = store.insert_audit(&ra, &ra.encode(), meta(cross), 11);
        assert_eq!(again.unwrap(), AuditInsert::Duplicate { flagged: false });
        let other = signed(&a, 1, 6);
        let refused = store.insert_audit(&other, &other.encode(), meta(cross), 12);
        assert_eq!(refused.unwrap(), AuditInsert::Conflicting);

        // A committee member with another digest is not a cross-check.
        let rc = signed(&c, 1, 8);
        let committee = AuditRole::Committee { challenge: [4; 32] };
        let stored = store.insert_audit(&rc, &rc.encode(), meta(committee), 13);
        assert_eq!(stored.unwrap(), AuditInsert::Stored { flagged: false });
        // The second assigned verifier disagrees: both flagged.
        let rb = signed(&b, 1, 7);
        let stored = store.insert_audit(&rb, &rb.encode(), meta(cross), 14);
        assert_eq!(stored.unwrap(), AuditInsert::Stored { flagged: true });
        drop(store);

        let store = Store::open(&path).unwrap();
        let all = store.audits_for_task(&[1; 32]).unwrap();
        assert_eq!(all.len(), 3);
        for s in &all {
            let verifier = s.report().unwrap().body.verifier;
            let expect_flag = verifier != c.pubkey().to_bytes();
            assert_eq!(s.flag.is_some(), expect_flag, "{s:?}");
        }
        let a_flag = store
            .audit(&[1; 32], &a.pubkey().to_bytes())
            .unwrap()
            .unwrap()
            .flag
            .unwrap();
        assert_eq!(
            a_flag,
            format!("work digests disagree with verifier {}", b.pubkey())
        );
        let recent = store.recent_audits(2).unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].report().unwrap(), rb, "newest first");
        assert_eq!(store.all_audits().unwrap().len(), 3);
        assert!(store.audits_for_task(&[2; 32]).unwrap().is_empty());

        // Agreeing digests are not flagged.
        let (d, e) = (signed(&a, 2, 3), signed(&b, 2, 3));
        store
            .insert_audit(&d, &d.encode(), meta(cross), 20)
            .unwrap();
        let stored = store.insert_audit(&e, &e.encode(), meta(cross), 21);
        assert_eq!(stored.unwrap(), AuditInsert::Stored { flagged: false });
    }
}
