//! The relayer's durable state, in one redb file. Every change that the
//! relayer acknowledges or acts on is committed (fsync'd) first, so a crash
//! at any point leaves either the old state or the new one, never half.
//!
//! What it keeps: receipts by task id and in arrival order, which receipts
//! still wait for a batch, the latest voucher of every (client, node)
//! channel, every (client, node, cumulative) voucher already seen (to refuse
//! replays), planned and posted batches, recorded settlements, reward epochs
//! with their leaves, work units per node in posted batches, verifiers'
//! audit reports ([`audits`]), the challenges indexed from the chain
//! ([`challenges`]) and the hop receipts of every pipelined task ([`tasks`]).

mod audits;
mod batches;
mod challenges;
mod rewards;
mod tasks;

pub use audits::{AuditInsert, AuditMeta, AuditRole, StoredAudit};
pub use challenges::{ChallengeRecord, ChallengeState};
pub use tasks::{HopClaim, HopEntry, TaskHops, MAX_HOP_CLAIMS, MAX_TASK_ENTRIES};

use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use strata_chain::merkle::domains::Ledger;
use strata_wire::{Receipt, Voucher, MAX_RECEIPT_BYTES};

/// Receipt by task id: a borsh [`StoredReceipt`].
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
/// Arrival sequence → task id (every receipt, never removed).
const ARRIVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("arrivals");
/// Arrival sequence → task id, for receipts not yet in any batch.
const UNBATCHED: TableDefinition<u64, &[u8]> = TableDefinition::new("unbatched");
/// Task id → (batch id, leaf index).
const RECEIPT_BATCH: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("receipt_batch");
/// client ‖ node ‖ cumulative (LE) → task id that carried that voucher.
const VOUCHER_USES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("voucher_uses");
/// client ‖ node → borsh [`ChannelRecord`].
const CHANNELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("channels");
/// Batch id → borsh [`BatchRecord`].
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// Settlement sequence → borsh [`Settlement`].
const SETTLEMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("settlements");
/// Epoch → borsh [`EpochRecord`].
const EPOCHS: TableDefinition<i64, &[u8]> = TableDefinition::new("epochs");
/// Node → work units of its receipts in posted batches.
const NODE_WORK: TableDefinition<&[u8], u64> = TableDefinition::new("node_work");
/// Named counters.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

const NEXT_SEQ: &str = "next_seq";
const NEXT_SETTLEMENT: &str = "next_settlement";
const BATCHED: &str = "batched";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, another process holds the file).
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    /// A stored record does not decode (written by an incompatible version).
    #[error("corrupt record in {0}")]
    Corrupt(&'static str),
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A receipt as stored.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct StoredReceipt {
    /// Arrival sequence number.
    pub seq: u64,
    /// When it was stored (Unix ms).
    pub received_ms: u64,
    /// The exact bytes received (a canonical encoding: decode then encode gives them back).
    pub raw: Vec<u8>,
}

impl StoredReceipt {
    /// The receipt (already verified when it was stored).
    pub fn receipt(&self) -> Result<Receipt, StoreError> {
        strata_wire::decode(&self.raw, MAX_RECEIPT_BYTES)
            .map_err(|_| StoreError::Corrupt("receipts"))
    }
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BatchStatus {
    /// Written here; not (yet) seen on-chain.
    Planned,
    /// Its Batch account holds this root.
    Posted,
}

/// A batch of receipts and its root.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct BatchRecord {
    /// On-chain id.
    pub id: u64,
    /// Planned or posted.
    pub status: BatchStatus,
    /// Merkle root over the receipts' leaves, in `task_ids` order.
    pub root: [u8; 32],
    /// Leaves, in order (kept so proofs need no receipt decoding).
    pub leaves: Vec<[u8; 32]>,
    /// Task ids in leaf order.
    pub task_ids: Vec<[u8; 32]>,
    /// Work units of the receipts.
    pub work_units: u64,
    /// Reward epoch it was posted in (0 until posted).
    pub epoch: i64,
    /// `post_batch` signature, when known.
    pub signature: Option<String>,
    /// When planned (Unix ms).
    pub planned_ms: u64,
}

/// The latest voucher of a (client, node) channel and what is recorded as redeemed.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct ChannelRecord {
    /// Highest-cumulative voucher received.
    pub latest: Voucher,
    /// Cumulative up to which redemptions are recorded as [`Settlement`]s.
    pub recorded: u64,
}

/// One voucher redemption.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct Settlement {
    /// Transaction signature; `None` if found on-chain after a crash.
    pub signature: Option<String>,
    /// Client.
    pub client: [u8; 32],
    /// Node.
    pub node: [u8; 32],
    /// Channel cumulative after it.
    pub cumulative: u64,
    /// Out of escrow (paid + fee).
    pub amount: u64,
    /// To the node.
    pub paid: u64,
    /// To the reward pool.
    pub fee: u64,
    /// When recorded (Unix ms).
    pub at_ms: u64,
}

/// Where a reward epoch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum EpochStatus {
    /// Written here; not (yet) seen on-chain.
    Planned,
    /// Its RewardEpoch account holds this root.
    Published,
}

/// A reward epoch: cumulative rewards per operator since genesis.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub struct EpochRecord {
    /// Epoch number.
    pub epoch: i64,
    /// Planned or published.
    pub status: EpochStatus,
    /// Root over `reward_leaf(operator, cumulative)`, leaves sorted by operator.
    pub root: [u8; 32],
    /// (operator, cumulative), sorted by operator.
    pub leaves: Vec<([u8; 32], u64)>,
    /// Most that claims against it may pay.
    pub declared: u64,
    /// `publish_rewards` signature, when known.
    pub signature: Option<String>,
}

impl EpochRecord {
    /// The Merkle leaves, in order.
    pub fn leaf_hashes(&self) -> Vec<[u8; 32]> {
        self.leaves
            .iter()
            .map(|(op, cum)| Ledger::reward_leaf(op, *cum))
            .collect()
    }
}

/// A receipt's place in a batch: (batch id, leaf index).
pub type Placement = (u64, u32);

/// What storing a receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Newly stored.
    Stored,
    /// These exact bytes were already stored.
    Duplicate,
    /// Another receipt with this task id is stored.
    ConflictingTask,
    /// Another receipt holds this hop receipt's id: this one is not stored,
    /// but is listed with its task's hops as a conflicting claim (`true`),
    /// unless the hop already has [`MAX_HOP_CLAIMS`] of them (`false`).
    ConflictingHop(bool),
    /// The voucher was already attached to this other task.
    ReplayedVoucher([u8; 32]),
}

/// Counts for `/v1/stats`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Receipts stored.
    pub receipts: u64,
    /// Receipts in posted batches.
    pub batched: u64,
}

/// The relayer's database.
pub struct Store {
    db: Database,
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    strata_wire::encode(value)
}

fn decode<T: BorshDeserialize>(bytes: &[u8], table: &'static str) -> Result<T, StoreError> {
    borsh::from_slice(bytes).map_err(|_| StoreError::Corrupt(table))
}

fn channel_key(client: &[u8; 32], node: &[u8; 32]) -> Vec<u8> {
    [client.as_slice(), node.as_slice()].concat()
}

impl Store {
    /// Opens (or creates) the database at `path`, creating every table.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(RECEIPTS)?;
        tx.open_table(ARRIVALS)?;
        tx.open_table(UNBATCHED)?;
        tx.open_table(RECEIPT_BATCH)?;
        tx.open_table(VOUCHER_USES)?;
        tx.open_table(CHANNELS)?;
        tx.open_table(BATCHES)?;
        tx.open_table(SETTLEMENTS)?;
        tx.open_table(EPOCHS)?;
        tx.open_table(NODE_WORK)?;
        tx.open_table(COUNTERS)?;
        tx.open_table(audits::AUDITS)?;
        tx.open_table(audits::AUDIT_ARRIVALS)?;
        tx.open_table(challenges::CHALLENGES)?;
        tx.open_table(tasks::TASK_HOPS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Stores a verified receipt (the caller checked its signatures) and
    /// updates its channel's latest voucher, in one transaction.
    pub fn insert_receipt(
        &self,
        receipt: &Receipt,
        raw: &[u8],
        now_ms: u64,
    ) -> Result<InsertOutcome, StoreError> {
        let b = &receipt.body;
        let v = &b.voucher;
        let tx = self.db.begin_write()?;
        {
            let mut receipts = tx.open_table(RECEIPTS)?;
            let existing = match receipts.get(b.task_id.as_slice())? {
                Some(g) => Some(decode::<StoredReceipt>(g.value(), "receipts")?),
                None => None,
            };
            if let Some(existing) = existing {
                if existing.raw == raw {
                    return Ok(InsertOutcome::Duplicate);
                }
                if b.hop.is_none() {
                    return Ok(InsertOutcome::ConflictingTask);
                }
                // A second receipt for one hop: not stored (its id is
                // taken), but listed with the task so that it cannot hide
                // the first, nor the first hide it.
                drop(receipts);
                let listed = tasks::record_claim(&tx, receipt, raw)?;
                tx.commit()?;
                return Ok(InsertOutcome::ConflictingHop(listed));
            }
            let use_key = [
                v.client.as_slice(),
                v.node.as_slice(),
                &v.cumulative.to_le_bytes(),
            ]
            .concat();
            let mut uses = tx.open_table(VOUCHER_USES)?;
            if let Some(other) = uses.get(use_key.as_slice())? {
                let other: [u8; 32] = other
                    .value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("voucher_uses"))?;
                return Ok(InsertOutcome::ReplayedVoucher(other));
            }
            uses.insert(use_key.as_slice(), b.task_id.as_slice())?;

            let mut counters = tx.open_table(COUNTERS)?;
            let seq = counters.get(NEXT_SEQ)?.map_or(0, |g| g.value());
            counters.insert(NEXT_SEQ, seq + 1)?;
            let stored = StoredReceipt {
                seq,
                received_ms: now_ms,
                raw: raw.to_vec(),
            };
            receipts.insert(b.task_id.as_slice(), encode(&stored).as_slice())?;
            tx.open_table(ARRIVALS)?.insert(seq, b.task_id.as_slice())?;
            tx.open_table(UNBATCHED)?
                .insert(seq, b.task_id.as_slice())?;
            tasks::index_stored(&tx, receipt)?;

            let mut channels = tx.open_table(CHANNELS)?;
            let key = channel_key(&v.client, &v.node);
            let current = match channels.get(key.as_slice())? {
                Some(g) => Some(decode::<ChannelRecord>(g.value(), "channels")?),
                None => None,
            };
            let updated = match current {
                Some(c) if c.latest.cumulative >= v.cumulative => None,
                Some(c) => Some(ChannelRecord {
                    latest: *v,
                    recorded: c.recorded,
                }),
                None => Some(ChannelRecord {
                    latest: *v,
                    recorded: 0,
                }),
            };
            if let Some(record) = updated {
                channels.insert(key.as_slice(), encode(&record).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(InsertOutcome::Stored)
    }

    /// A stored receipt and its place in a batch, if any.
    pub fn receipt(
        &self,
        task_id: &[u8; 32],
    ) -> Result<Option<(StoredReceipt, Option<Placement>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let Some(g) = tx.open_table(RECEIPTS)?.get(task_id.as_slice())? else {
            return Ok(None);
        };
        let stored: StoredReceipt = decode(g.value(), "receipts")?;
        let place = tx
            .open_table(RECEIPT_BATCH)?
            .get(task_id.as_slice())?
            .map(|g| g.value());
        Ok(Some((stored, place)))
    }

    /// Number of receipts waiting for a batch.
    pub fn unbatched_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.begin_read()?.open_table(UNBATCHED)?.len()?)
    }

    /// When the oldest receipt still waiting for a batch arrived (Unix ms).
    pub fn oldest_unbatched_ms(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let unbatched = tx.open_table(UNBATCHED)?;
        let Some(first) = unbatched.first()? else {
            return Ok(None);
        };
        let key = first.1.value().to_vec();
        let stored = tx.open_table(RECEIPTS)?.get(key.as_slice())?;
        match stored {
            Some(g) => Ok(Some(
                decode::<StoredReceipt>(g.value(), "receipts")?.received_ms,
            )),
            None => Ok(None),
        }
    }

    /// Receipt counts.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let tx = self.db.begin_read()?;
        let counters = tx.open_table(COUNTERS)?;
        Ok(Counts {
            receipts: tx.open_table(RECEIPTS)?.len()?,
            batched: counters.get(BATCHED)?.map_or(0, |g| g.value()),
        })
    }

    /// The `limit` most recently received receipts, newest first, each with
    /// its place in a batch.
    pub fn recent_receipts(
        &self,
        limit: usize,
    ) -> Result<Vec<(StoredReceipt, Option<Placement>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let arrivals = tx.open_table(ARRIVALS)?;
        let receipts = tx.open_table(RECEIPTS)?;
        let places = tx.open_table(RECEIPT_BATCH)?;
        let mut out = Vec::new();
        for entry in arrivals.iter()?.rev().take(limit) {
            let (_, task) = entry?;
            let Some(g) = receipts.get(task.value())? else {
                continue;
            };
            let stored: StoredReceipt = decode(g.value(), "receipts")?;
            let place = places.get(task.value())?.map(|g| g.value());
            out.push((stored, place));
        }
        Ok(out)
    }

    /// Per serving node: (node, receipts held, their work units), over every
    /// stored receipt.
    pub fn node_totals(&self) -> Result<Vec<([u8; 32], u64, u64)>, StoreError> {
        let tx = self.db.begin_read()?;
        let mut totals: std::collections::BTreeMap<[u8; 32], (u64, u64)> = Default::default();
        for entry in tx.open_table(RECEIPTS)?.iter()? {
            let (_, v) = entry?;
            let receipt = decode::<StoredReceipt>(v.value(), "receipts")?.receipt()?;
            let t = totals.entry(receipt.body.node).or_default();
            t.0 += 1;
            t.1 = t.1.saturating_add(receipt.body.work_units());
        }
        Ok(totals
            .into_iter()
            .map(|(node, (tasks, work))| (node, tasks, work))
            .collect())
    }

    /// Arrival times (Unix ms) of receipts received at or after `since_ms`.
    pub fn arrivals_since(&self, since_ms: u64) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let arrivals = tx.open_table(ARRIVALS)?;
        let receipts = tx.open_table(RECEIPTS)?;
        let mut out = Vec::new();
        // Newest first, stopping at the first older one: arrival order is time order.
        for entry in arrivals.iter()?.rev() {
            let (_, task) = entry?;
            let Some(g) = receipts.get(task.value())? else {
                continue;
            };
            let stored: StoredReceipt = decode(g.value(), "receipts")?;
            if stored.received_ms < since_ms {
                break;
            }
            out.push(stored.received_ms);
        }
        Ok(out)
    }
}
