//! What a node keeps of each settled task so that it can answer an audit:
//! the signed receipt and the task's token ids. Hidden states are not kept;
//! an audit re-derives them in one prefill pass (`strata_engine::rederive`),
//! which is bit-identical to the serving run. A record costs ~4 bytes per
//! token instead of ~2 KiB per token per layer.
//!
//! Records live one file per task (written to a temporary file and renamed,
//! so a crash never leaves half a record) and are pruned once no challenge
//! can reach them any more (the retention: the challenge window plus the
//! verdict timeout, plus a margin for batching). Without a state directory
//! they are kept in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use strata_wire::Receipt;

use crate::NodeError;

/// Largest record read back (a receipt and two 8k-token sequences fit easily).
const MAX_RECORD_BYTES: usize = 1 << 20;

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

/// The archive of settled tasks.
#[derive(Debug)]
pub struct Archive {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<[u8; 32], (TaskRecord, u64)>>,
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
            retention,
        })
    }

    fn path(dir: &Path, task: &[u8; 32]) -> PathBuf {
        dir.join(format!("{}.task", hex::encode(task)))
    }

    /// Stores a settled task.
    pub fn put(&self, record: &TaskRecord) -> Result<(), NodeError> {
        let task = record.receipt.body.task_id;
        match &self.dir {
            Some(dir) => {
                let path = Self::path(dir, &task);
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, strata_wire::encode(record))
                    .map_err(|e| NodeError::io(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| NodeError::io(&path, e))
            }
            None => {
                self.lock()
                    .insert(task, (record.clone(), strata_service::now_ms()));
                Ok(())
            }
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

    /// Forgets records older than the retention; returns how many.
    pub fn prune(&self) -> usize {
        let cutoff = strata_service::now_ms()
            .saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        let Some(dir) = &self.dir else {
            let mut m = self.lock();
            let before = m.len();
            m.retain(|_, (_, at)| *at >= cutoff);
            return before - m.len();
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
            if old && std::fs::remove_file(e.path()).is_ok() {
                pruned += 1;
            }
        }
        pruned
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (TaskRecord, u64)>> {
        // Every update is a single insert or retain: a panic cannot leave the
        // map half-written, so recover from poisoning.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}
