//! What a node keeps of each settled task so that it can answer an audit:
//! the signed receipt and the task's token ids. Hidden states are not kept;
//! an audit re-derives them in one prefill pass (`strata_engine::rederive`),
//! which is bit-identical to the serving run. A record costs ~4 bytes per
//! token instead of ~2 KiB per token per layer.
//!
//! A pipeline hop keeps a [`HopRecord`]: its receipt, what it received (the
//! token ids of the first hop; the states of every position for a later hop,
//! which it cannot re-derive without the blocks before it: ~2.3 KB per
//! position for SmolLM2) and what it sampled (the last hop). Its audits
//! re-run only its own blocks (`strata_engine::rederive_hop`).
//!
//! Records live one file per task (written to a temporary file and renamed,
//! so a crash never leaves half a record) and are pruned once no challenge
//! can reach them any more (the retention: the challenge window plus the
//! verdict timeout, plus a margin for batching). Without a state directory
//! they are kept in memory.
//!
//! The archive also pins the policy adapters its tasks name ([`Archive::pin`]):
//! a task served with a policy version can only be opened with that adapter,
//! so the node's policy store keeps an evicted version's file while a pin
//! names it. A pin is an empty file `adapter-v<version>-<sha256>.pin`
//! beside the records, touched when a task is admitted with the adapter and
//! again when its record is stored, so it is never older than the newest
//! record naming it and the same pruning removes it no earlier than that
//! record. Pins survive a restart with the records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use strata_engine::{HiddenStates, DEFAULT_MAX_HIDDEN_BYTES};
use strata_wire::Receipt;

use crate::NodeError;

/// Largest record read back (a receipt and two 8k-token sequences fit easily).
const MAX_RECORD_BYTES: usize = 1 << 20;
/// Largest hop record read back: the largest states message a hop accepts
/// (every position it ran), plus its receipt and tokens.
pub const MAX_HOP_RECORD_BYTES: usize = DEFAULT_MAX_HIDDEN_BYTES + MAX_RECORD_BYTES;

/// A settled task: its receipt and its token ids.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct TaskRecord {
    /// The receipt the node signed.
    pub receipt: Receipt,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Generated token ids.
    pub output: Vec<u32>,
}

impl TaskRecord {
    /// The positions the task's commitments cover: the prompt followed by
    /// every generated token but the last (which was never fed back).
    pub fn positions(&self) -> Vec<u32> {
        let mut p = self.prompt.clone();
        p.extend_from_slice(&self.output[..self.output.len().saturating_sub(1)]);
        p
    }
}

/// What a pipeline hop received over all the positions it ran: enough to
/// re-run its blocks for an audit.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum HopInput {
    /// The first hop (blocks from 0): the token ids of every position it
    /// embedded, in order: the prompt (with any failover continuation,
    /// exactly the `prompt_tokens` its receipt's `input_hash` covers), then
    /// each token fed back to it.
    Tokens(Vec<u32>),
    /// A later hop: every row of hidden states it received, in position
    /// order, as one matrix in the wire encoding
    /// (`strata_engine::HiddenStates::encode(WireDType::F32)`, `SHS1`).
    States(Vec<u8>),
}

/// A settled pipeline hop: its receipt (version 3), what it received, and
/// what it sampled. Stored under the receipt's own `task_id` (the hop's id,
/// `strata_wire::hop_task_id(task, segment, index, node)`).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct HopRecord {
    /// The receipt the node signed (its `hop` part is `Some`).
    pub receipt: Receipt,
    /// What the hop received over all its positions.
    pub input: HopInput,
    /// Tokens it sampled (the last hop; empty for the others).
    pub sampled: Vec<u32>,
}

impl HopRecord {
    /// Checks what the record must hold to answer an audit: a hop receipt,
    /// the input the hop's place takes (token ids for the first hop, f32
    /// states of its `positions` rows otherwise), the sampled tokens of
    /// the last hop; returns the receipt's hop part.
    pub fn check(&self) -> Result<strata_wire::HopPart, NodeError> {
        let bad = |why: String| Err(NodeError::Config(format!("hop record: {why}")));
        let Some(hop) = self.receipt.body.hop else {
            return bad("its receipt is not a hop's".into());
        };
        let positions = hop.positions as usize;
        match (&self.input, hop.start == 0) {
            (HopInput::Tokens(t), true) => {
                if t.len() != positions {
                    return bad(format!("{} tokens for {positions} positions", t.len()));
                }
                if (self.receipt.body.prompt_tokens as usize) > t.len() {
                    return bad("its prompt is longer than its tokens".into());
                }
            }
            (HopInput::States(bytes), false) => {
                let s = HiddenStates::decode(bytes, DEFAULT_MAX_HIDDEN_BYTES)
                    .map_err(|e| NodeError::Config(format!("hop record: states: {e}")))?;
                if s.rows() != positions {
                    return bad(format!(
                        "{} rows of states for {positions} positions",
                        s.rows()
                    ));
                }
            }
            (HopInput::Tokens(_), false) => return bad("a later hop received states".into()),
            (HopInput::States(_), true) => return bad("the first hop received tokens".into()),
        }
        let last = hop.end == hop.n_layers;
        let expected = if last {
            self.receipt.body.completion_tokens as usize
        } else {
            0
        };
        if self.sampled.len() != expected || (last && self.sampled.is_empty()) {
            return bad(format!(
                "{} sampled tokens; its receipt counts {expected}",
                self.sampled.len()
            ));
        }
        Ok(hop)
    }
}

/// The archive of settled tasks.
#[derive(Debug)]
pub struct Archive {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<[u8; 32], (TaskRecord, u64)>>,
    hops: Mutex<HashMap<[u8; 32], (HopRecord, u64)>>,
    /// Pins when records are kept in memory: (version, adapter) -> when
    /// last touched (ms).
    pins: Mutex<HashMap<(u64, [u8; 32]), u64>>,
    retention: Duration,
}

impl Archive {
    /// An archive in `dir` (created if missing), or in memory when `None`,
    /// that forgets records older than `retention`.
    pub fn open(dir: Option<PathBuf>, retention: Duration) -> Result<Self, NodeError> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|e| NodeError::io(d, e))?;
        }
        Ok(Self {
            dir,
            memory: Mutex::new(HashMap::new()),
            hops: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            retention,
        })
    }

    fn pin_path(dir: &Path, version: u64, adapter: &[u8; 32]) -> PathBuf {
        dir.join(format!(
            "adapter-v{version:020}-{}.pin",
            hex::encode(adapter)
        ))
    }

    /// Pins the adapter `adapter` (SHA-256) of policy `version` for as long
    /// as the retention from now: a task that ran with it may be audited
    /// until then. Touching an existing pin extends it.
    pub fn pin(&self, version: u64, adapter: &[u8; 32]) -> Result<(), NodeError> {
        let Some(dir) = &self.dir else {
            lock(&self.pins).insert((version, *adapter), strata_service::now_ms());
            return Ok(());
        };
        let path = Self::pin_path(dir, version, adapter);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| NodeError::io(&path, e))?;
        // Set explicitly: opening an existing empty file does not move its
        // modification time, which is what pruning reads.
        file.set_modified(std::time::SystemTime::now())
            .map_err(|e| NodeError::io(&path, e))
    }

    /// Whether a task the archive may still be asked to open (or one
    /// admitted and not yet settled) names this adapter.
    pub fn pinned(&self, version: u64, adapter: &[u8; 32]) -> bool {
        match &self.dir {
            Some(dir) => Self::pin_path(dir, version, adapter).exists(),
            None => lock(&self.pins).contains_key(&(version, *adapter)),
        }
    }

    fn path(dir: &Path, task: &[u8; 32]) -> PathBuf {
        dir.join(format!("{}.task", hex::encode(task)))
    }

    /// Stores a settled task, and pins the adapter its receipt names
    /// (after the record: the pin must not be older than it).
    pub fn put(&self, record: &TaskRecord) -> Result<(), NodeError> {
        let task = record.receipt.body.task_id;
        match &self.dir {
            Some(dir) => {
                let path = Self::path(dir, &task);
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, strata_wire::encode(record))
                    .map_err(|e| NodeError::io(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| NodeError::io(&path, e))?;
            }
            None => {
                self.lock()
                    .insert(task, (record.clone(), strata_service::now_ms()));
            }
        }
        match record.receipt.body.adapter {
            Some(part) => self.pin(part.policy_version, &part.adapter),
            None => Ok(()),
        }
    }

    /// The record of `task`, if kept.
    pub fn get(&self, task: &[u8; 32]) -> Result<Option<TaskRecord>, NodeError> {
        let Some(dir) = &self.dir else {
            return Ok(self.lock().get(task).map(|(r, _)| r.clone()));
        };
        let path = Self::path(dir, task);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NodeError::io(&path, e)),
        };
        strata_wire::decode(&bytes, MAX_RECORD_BYTES)
            .map(Some)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
    }

    fn hop_path(dir: &Path, task: &[u8; 32]) -> PathBuf {
        dir.join(format!("{}.hop", hex::encode(task)))
    }

    /// Stores a settled pipeline hop under its receipt's `task_id` (the
    /// hop's own id), after checking it can answer an audit
    /// ([`HopRecord::check`]).
    pub fn put_hop(&self, record: &HopRecord) -> Result<(), NodeError> {
        record.check()?;
        let task = record.receipt.body.task_id;
        match &self.dir {
            Some(dir) => {
                let path = Self::hop_path(dir, &task);
                let tmp = path.with_extension("hop-tmp");
                std::fs::write(&tmp, strata_wire::encode(record))
                    .map_err(|e| NodeError::io(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| NodeError::io(&path, e))
            }
            None => {
                lock(&self.hops).insert(task, (record.clone(), strata_service::now_ms()));
                Ok(())
            }
        }
    }

    /// The hop record under `task` (a hop receipt's `task_id`), if kept.
    pub fn get_hop(&self, task: &[u8; 32]) -> Result<Option<HopRecord>, NodeError> {
        let Some(dir) = &self.dir else {
            return Ok(lock(&self.hops).get(task).map(|(r, _)| r.clone()));
        };
        let path = Self::hop_path(dir, task);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NodeError::io(&path, e)),
        };
        strata_wire::decode(&bytes, MAX_HOP_RECORD_BYTES)
            .map(Some)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
    }

    /// Forgets records (and pins) older than the retention; returns how
    /// many records.
    pub fn prune(&self) -> usize {
        let cutoff = strata_service::now_ms()
            .saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        let Some(dir) = &self.dir else {
            let mut m = self.lock();
            let before = m.len();
            m.retain(|_, (_, at)| *at >= cutoff);
            let mut hops = lock(&self.hops);
            let hops_before = hops.len();
            hops.retain(|_, (_, at)| *at >= cutoff);
            lock(&self.pins).retain(|_, at| *at >= cutoff);
            return before - m.len() + hops_before - hops.len();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut pruned = 0;
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| (d.as_millis() as u64) < cutoff);
            let pin = e.path().extension().is_some_and(|x| x == "pin");
            if old && std::fs::remove_file(e.path()).is_ok() && !pin {
                pruned += 1;
            }
        }
        pruned
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (TaskRecord, u64)>> {
        lock(&self.memory)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or retain: a panic cannot leave the
    // map half-written, so recover from poisoning.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use strata_chain::{Keypair, Signer};
    use strata_engine::WireDType;
    use strata_wire::receipt::HOP_RECEIPT_VERSION;
    use strata_wire::{hop_task_id, HopPart, ReceiptBody, Sampling, Voucher};

    use super::*;

    /// Hop `index` of 3 (blocks 0..10, 10..20, 20..30) over 4 positions.
    fn receipt(index: u8, sampled: u32) -> Receipt {
        let (node, client) = (Keypair::new(), Keypair::new());
        let task_id = [5; 32];
        let (start, end) = (u16::from(index) * 10, u16::from(index) * 10 + 10);
        let body = ReceiptBody {
            version: HOP_RECEIPT_VERSION,
            task_id: hop_task_id(&task_id, 0, index, &node.pubkey().to_bytes()),
            node: node.pubkey().to_bytes(),
            model_hash: [1; 32],
            input_hash: [0; 32],
            output_hash: [0; 32],
            prompt_tokens: if index == 0 { 3 } else { 0 },
            completion_tokens: sampled,
            commitment_root: [2; 32],
            sampling: Sampling::GREEDY,
            price: 1,
            voucher: Voucher::sign(&client, &node.pubkey(), 1),
            finished_at_ms: 1,
            hop: Some(HopPart {
                task_id,
                segment: 0,
                index,
                count: 3,
                start,
                end,
                n_layers: 30,
                positions: 4,
                cells: 40,
                sample_offset: 0,
                input_states: [3; 32],
                output_states: [4; 32],
                prev: [0; 32],
                next: [0; 32],
            }),
            adapter: None,
        };
        Receipt::sign(&node, body).unwrap()
    }

    fn states(rows: usize) -> HopInput {
        let s = HiddenStates::new(rows, 8, vec![0.25; rows * 8]).unwrap();
        HopInput::States(s.encode(WireDType::F32).unwrap())
    }

    fn records() -> Vec<HopRecord> {
        vec![
            HopRecord {
                receipt: receipt(0, 0),
                input: HopInput::Tokens(vec![1, 2, 3, 4]),
                sampled: vec![],
            },
            HopRecord {
                receipt: receipt(1, 0),
                input: states(4),
                sampled: vec![],
            },
            HopRecord {
                receipt: receipt(2, 2),
                input: states(4),
                sampled: vec![9, 8],
            },
        ]
    }

    #[test]
    fn hop_records_round_trip_on_disk_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for archive in [
            Archive::open(Some(dir.path().to_path_buf()), Duration::from_secs(60)).unwrap(),
            Archive::open(None, Duration::from_secs(60)).unwrap(),
        ] {
            for r in records() {
                archive.put_hop(&r).unwrap();
                let id = r.receipt.body.task_id;
                assert_eq!(archive.get_hop(&id).unwrap(), Some(r));
                // Not a whole-model task's record, and not another hop's.
                assert_eq!(archive.get(&id).unwrap(), None);
            }
            assert_eq!(archive.get_hop(&[9; 32]).unwrap(), None);
        }
        // Pruned with everything else once past the retention.
        let archive = Archive::open(None, Duration::ZERO).unwrap();
        archive.put_hop(&records()[1]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(archive.prune(), 1);
    }

    #[test]
    fn hop_records_that_could_not_answer_an_audit_are_refused() {
        let archive = Archive::open(None, Duration::from_secs(60)).unwrap();
        let [head, middle, last]: [HopRecord; 3] = records().try_into().unwrap();
        let refused = |r: HopRecord, why: &str| match archive.put_hop(&r) {
            Err(NodeError::Config(m)) => assert!(m.contains(why), "{why}: {m}"),
            other => panic!("{why}: {other:?}"),
        };
        refused(
            HopRecord {
                input: states(4),
                ..head.clone()
            },
            "first hop",
        );
        refused(
            HopRecord {
                input: HopInput::Tokens(vec![1, 2, 3]),
                ..head.clone()
            },
            "3 tokens for 4 positions",
        );
        refused(
            HopRecord {
                input: HopInput::Tokens(vec![1; 4]),
                ..middle.clone()
            },
            "later hop",
        );
        refused(
            HopRecord {
                input: states(3),
                ..middle.clone()
            },
            "3 rows",
        );
        refused(
            HopRecord {
                input: HopInput::States(vec![1, 2, 3]),
                ..middle.clone()
            },
            "states",
        );
        refused(
            HopRecord {
                sampled: vec![9],
                ..last.clone()
            },
            "sampled",
        );
        refused(
            HopRecord {
                sampled: vec![9],
                ..middle
            },
            "sampled",
        );
        let whole = TaskRecord {
            receipt: Receipt {
                body: ReceiptBody {
                    version: 2,
                    hop: None,
                    adapter: None,
                    ..last.receipt.body.clone()
                },
                signature: [0; 64],
            },
            prompt: vec![],
            output: vec![],
        };
        refused(
            HopRecord {
                receipt: whole.receipt,
                ..last
            },
            "not a hop's",
        );
        assert_eq!(archive.get_hop(&head.receipt.body.task_id).unwrap(), None);
    }
}
