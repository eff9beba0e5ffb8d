//! Audit reports from verifiers: which ones the relayer accepts, and why.
//!
//! A report is accepted only when it is signed by the verifier it names,
//! about a receipt this relayer holds at the batch and leaf it names, from a
//! verifier that may report on it: one the public audit rules assign to the
//! task (recomputed here from the sealed on-chain batch, the config and the
//! registered nodes), or a member of the committee of a challenge against the
//! receipt. Everything else is refused before anything is written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_chain::accounts::{Challenge, Config, Node};
use strata_chain::rpc::ChainClient;
use strata_chain::{audit, pda, ChainError, Pubkey};
use strata_wire::audit::AuditReport;
use strata_wire::hex32;

use crate::now_ms;
use crate::store::{AuditInsert, AuditMeta, AuditRole, BatchStatus, Store, StoreError};

/// How long a read of the config and the registered nodes is reused: a
/// burst of reports (or a flood of them) costs one `getProgramAccounts`.
/// Assignments only count verifier weight older than the batch, so a read
/// this recent judges them as a fresh one would.
pub const CHAIN_CACHE: Duration = Duration::from_secs(2);

/// The chain state an assignment is recomputed from: config and registered nodes.
type Snapshot = Arc<(Config, Vec<Node>)>;

/// Judges reports against the chain, reusing recent reads.
pub struct Judge {
    chain: ChainClient,
    cache: tokio::sync::Mutex<Option<(Instant, Snapshot)>>,
}

impl Judge {
    /// A judge reading `chain`.
    pub fn new(chain: ChainClient) -> Self {
        Self {
            chain,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The config and the registered nodes, at most [`CHAIN_CACHE`] old.
    async fn snapshot(&self) -> Result<Snapshot, ChainError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, snapshot)) = cache.as_ref() {
            if at.elapsed() < CHAIN_CACHE {
                return Ok(snapshot.clone());
            }
        }
        let config = self.chain.config().await?;
        let nodes = self.chain.registered_nodes().await?;
        let snapshot = Arc::new((config, nodes));
        *cache = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }
}

/// Why a report was refused (or could not be judged).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Malformed, oversized, of an unknown version, or with a signature that
    /// is not its verifier's.
    #[error("invalid audit report: {0}")]
    Invalid(String),
    /// The relayer holds no receipt for the task.
    #[error("unknown task {0}: this relayer holds no receipt for it")]
    UnknownTask(String),
    /// The report does not describe the stored receipt (another node, batch or leaf).
    #[error("the report does not match task {task}'s receipt: {what}")]
    WrongReceipt {
        /// The task.
        task: String,
        /// What differs.
        what: String,
    },
    /// The receipt's batch is not on-chain, or not sealed yet: nobody can be
    /// assigned to audit it.
    #[error("task {task} cannot be audited yet: {why}")]
    NotAuditable {
        /// The task.
        task: String,
        /// Why.
        why: String,
    },
    /// The verifier is neither assigned nor on a challenge committee for the receipt.
    #[error("verifier {verifier} may not report on task {task}: {why}")]
    NotAssigned {
        /// The verifier.
        verifier: String,
        /// The task.
        task: String,
        /// What the rules say instead.
        why: String,
    },
    /// The verifier already reported something else on this task.
    #[error("verifier {verifier} already filed a different report on task {task}")]
    Conflicting {
        /// The verifier.
        verifier: String,
        /// The task.
        task: String,
    },
    /// The chain could not be read to judge the report.
    #[error("cannot check the report against the chain: {0}")]
    Chain(#[from] ChainError),
    /// The store failed; nothing was written.
    #[error("could not store the report: {0}")]
    Store(#[from] StoreError),
}

impl AuditError {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AuditError::Invalid(_)
            | AuditError::UnknownTask(_)
            | AuditError::WrongReceipt { .. }
            | AuditError::NotAuditable { .. } => 400,
            AuditError::NotAssigned { .. } => 403,
            AuditError::Conflicting { .. } => 409,
            AuditError::Chain(_) => 503,
            AuditError::Store(_) => 500,
        }
    }
}

/// What happened to an accepted report.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The report.
    pub report: AuditReport,
    /// Newly stored, or these bytes were already stored.
    pub duplicate: bool,
    /// Why its verifier could report.
    pub role: AuditRole,
    /// Whether it is flagged.
    pub flagged: bool,
}

/// Decodes, verifies, judges and durably stores one encoded report.
pub async fn submit(
    store: &Arc<Store>,
    judge: &Judge,
    bytes: Vec<u8>,
) -> Result<Accepted, AuditError> {
    let chain = &judge.chain;
    let report =
        AuditReport::decode_verified(&bytes).map_err(|e| AuditError::Invalid(e.to_string()))?;
    let b = &report.body;
    let task = hex32(&b.task_id);
    let verifier = Pubkey::from(b.verifier);

    let Some((stored, place)) = store.receipt(&b.task_id)? else {
        return Err(AuditError::UnknownTask(task));
    };
    let receipt = stored.receipt()?;
    let wrong = |what: String| AuditError::WrongReceipt {
        task: task.clone(),
        what,
    };
    if receipt.body.node != b.node {
        return Err(wrong(format!(
            "the report names node {}, the receipt node {}",
            Pubkey::from(b.node),
            Pubkey::from(receipt.body.node)
        )));
    }
    let Some((batch_id, leaf_index)) = place else {
        return Err(AuditError::NotAuditable {
            task,
            why: "its receipt is not in a batch yet".into(),
        });
    };
    if (batch_id, leaf_index) != (b.batch_id, b.leaf_index) {
        return Err(wrong(format!(
            "the report says batch {} leaf {}, the receipt is batch {batch_id} leaf {leaf_index}",
            b.batch_id, b.leaf_index
        )));
    }
    // The same bytes again are fine whatever the chain says now; another
    // report from the same verifier never is (the receipt checks above
    // come first so that a wrong report says what is wrong with it).
    if let Some(existing) = store.audit(&b.task_id, &b.verifier)? {
        if existing.raw != bytes {
            return Err(AuditError::Conflicting {
                verifier: verifier.to_string(),
                task,
            });
        }
        return Ok(Accepted {
            role: existing.role,
            flagged: existing.flag.is_some(),
            duplicate: true,
            report,
        });
    }

    let record = store
        .batch(batch_id)?
        .ok_or(StoreError::Corrupt("receipt_batch"))?;
    let not_auditable = |why: String| AuditError::NotAuditable {
        task: task.clone(),
        why,
    };
    if record.status != BatchStatus::Posted {
        return Err(not_auditable(format!("batch {batch_id} is not posted yet")));
    }
    let leaf = receipt.leaf();
    let Some(onchain) = chain.batch(batch_id).await? else {
        return Err(not_auditable(format!("batch {batch_id} is not on-chain")));
    };
    if onchain.root != record.root {
        return Err(not_auditable(format!(
            "batch {batch_id}'s on-chain root is not this relayer's"
        )));
    }
    if onchain.audit_seed == [0; 32] {
        return Err(not_auditable(format!(
            "batch {batch_id} is not sealed (its audit seed is not drawn)"
        )));
    }
    let snapshot = judge.snapshot().await?;
    let (config, nodes) = (&snapshot.0, &snapshot.1);
    let serving = Pubkey::from(receipt.body.node);
    // Only the audit decision and the verifiers are needed here: no layers
    // or steps to draw.
    let plan = audit::plan(config, &onchain, &leaf, &serving, nodes, 0, 0).ok_or_else(|| {
        not_auditable(format!(
            "batch {batch_id} is not sealed (its audit seed is not drawn)"
        ))
    })?;
    let role = if plan.audited && plan.verifiers.contains(&verifier) {
        AuditRole::Assigned {
            of: u8::try_from(plan.verifiers.len()).unwrap_or(u8::MAX),
        }
    } else {
        let address = pda::challenge(&pda::batch(batch_id), leaf_index);
        let challenge: Option<Challenge> = chain.account(&address, "challenge").await?;
        match challenge {
            Some(c)
                if c.task_id == b.task_id
                    && audit::committee(&c, nodes, config.params.min_stake).contains(&verifier) =>
            {
                AuditRole::Committee {
                    challenge: address.to_bytes(),
                }
            }
            other => {
                let assigned = if !plan.audited {
                    "the audit rules do not audit this task".to_string()
                } else if plan.verifiers.is_empty() {
                    "no verifier is eligible for it".to_string()
                } else {
                    let names: Vec<String> = plan.verifiers.iter().map(|v| v.to_string()).collect();
                    format!("the audit rules assign {}", names.join(" and "))
                };
                let committee = match other {
                    Some(c) if c.seed == [0; 32] => {
                        "the challenge against it has no committee drawn yet"
                    }
                    Some(_) => "it is not on the committee of the challenge against it",
                    None => "there is no open challenge against it",
                };
                return Err(AuditError::NotAssigned {
                    verifier: verifier.to_string(),
                    task,
                    why: format!("{assigned}, and {committee}"),
                });
            }
        }
    };
    let meta = AuditMeta {
        role,
        work_units: receipt.body.work_units(),
        reward_bps: match role {
            AuditRole::Assigned { .. } => config.params.audit_reward_bps,
            AuditRole::Committee { .. } => 0,
        },
        window_ends: onchain
            .posted_at
            .saturating_add(config.params.challenge_window),
    };
    let store = Arc::clone(store);
    let to_store = report.clone();
    // redb commits fsync: keep them off the async workers.
    let outcome =
        tokio::task::spawn_blocking(move || store.insert_audit(&to_store, &bytes, meta, now_ms()))
            .await
            .map_err(|_| StoreError::Corrupt("audit store task failed"))??;
    match outcome {
        AuditInsert::Stored { flagged } => Ok(Accepted {
            report,
            duplicate: false,
            role,
            flagged,
        }),
        AuditInsert::Duplicate { flagged } => Ok(Accepted {
            report,
            duplicate: true,
            role,
            flagged,
        }),
        AuditInsert::Conflicting => Err(AuditError::Conflicting {
            verifier: verifier.to_string(),
            task,
        }),
    }
}
