//! The gateway's durable record of deferred work, in one redb file
//! (`batches.redb` in the state dir): uploaded files and their bytes, batch
//! jobs, and every request of every batch with its state and result.
//!
//! Every change the gateway acknowledges is committed (fsync'd) before the
//! HTTP answer leaves or the runner moves on, so a gateway killed at any
//! point restarts with either the old state or the new one. A batch and all
//! its requests are written in one transaction; a request's result and its
//! batch's counters in another.
//!
//! Records are JSON: small, written only by this gateway, and readable with
//! any redb tool when something needs explaining.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::GatewayError;

/// File id → JSON [`FileRecord`].
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
/// File id → its bytes.
const FILE_DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("file_data");
/// Batch id → JSON [`BatchRecord`].
const BATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("batches");
/// (batch id, request index) → JSON [`RequestRecord`].
const REQUESTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("batch_requests");

/// An uploaded (or batch-produced) file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// `file-…`.
    pub id: String,
    /// blake3 of the API key that owns it (hex): only that key sees it.
    pub owner: String,
    /// `batch` for inputs, `batch_output` for what a batch writes.
    pub purpose: String,
    /// The name it was uploaded with.
    pub filename: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
}

/// Where a batch stands (OpenAI's names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Its input is being checked (never seen by a client here: the check
    /// runs before the create call answers).
    Validating,
    /// No line of the input was a valid request.
    Failed,
    /// Requests are queued or running.
    InProgress,
    /// Every request has its result; the output files are being written.
    Finalizing,
    /// Done; output and error files are ready.
    Completed,
    /// The completion window passed before every request ran.
    Expired,
    /// Cancel asked; running requests are finishing.
    Cancelling,
    /// Cancelled; what finished before is in the output file.
    Cancelled,
}

impl BatchStatus {
    /// True once nothing more will run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

/// One refused input line, as OpenAI's `errors.data[]` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LineError {
    /// Machine-readable reason.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
    /// 1-based line of the input file.
    pub line: u32,
}

/// A batch job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchRecord {
    /// `batch_…`.
    pub id: String,
    /// blake3 of the owning API key (hex).
    pub owner: String,
    /// `/v1/chat/completions` or `/v1/completions`.
    pub endpoint: String,
    /// The input file.
    pub input_file_id: String,
    /// `24h`.
    pub completion_window: String,
    /// Where it stands.
    pub status: BatchStatus,
    /// Unix seconds of each step, when reached.
    pub created_at: u64,
    /// Unix milliseconds of creation: orders batches made in one second.
    #[serde(default)]
    pub created_ms: u64,
    /// See `created_at`.
    pub in_progress_at: Option<u64>,
    /// See `created_at`.
    pub expires_at: u64,
    /// See `created_at`.
    pub finalizing_at: Option<u64>,
    /// See `created_at`.
    pub completed_at: Option<u64>,
    /// See `created_at`.
    pub failed_at: Option<u64>,
    /// See `created_at`.
    pub expired_at: Option<u64>,
    /// See `created_at`.
    pub cancelling_at: Option<u64>,
    /// See `created_at`.
    pub cancelled_at: Option<u64>,
    /// Results of the requests that succeeded, once final.
    pub output_file_id: Option<String>,
    /// Refused lines and failed requests, once final.
    pub error_file_id: Option<String>,
    /// Non-empty input lines.
    pub total: u32,
    /// Requests answered 200.
    pub completed: u32,
    /// Lines refused and requests that failed.
    pub failed: u32,
    /// The first refused lines (at most [`MAX_SHOWN_ERRORS`]; all are in
    /// the error file).
    pub errors: Vec<LineError>,
    /// The client's metadata, as given.
    pub metadata: Option<Value>,
    /// The most a node running this batch's requests may charge per token
    /// (None: no cap).
    pub max_price_per_token: Option<u64>,
    /// Sum of what the batch's requests were charged, base units.
    pub cost: u64,
}

/// Refused lines shown in the batch object itself.
pub const MAX_SHOWN_ERRORS: usize = 100;

/// A request's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RequestState {
    /// Waits for idle capacity.
    Queued,
    /// Handed to the runner (a restart finds it here only if the gateway
    /// died before its result was recorded: it runs again).
    Running,
    /// Has its output line (`ok`: it goes to the output file, else to the
    /// error file).
    Done {
        /// Answered 200.
        ok: bool,
        /// The line, in OpenAI's batch output shape.
        output: Value,
    },
}

/// One request of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    /// The client's id for it (None when the line had none usable).
    pub custom_id: Option<String>,
    /// 1-based line of the input file.
    pub line: u32,
    /// The request body (Null for a refused line).
    pub body: Value,
    /// Progress.
    #[serde(flatten)]
    pub state: RequestState,
    /// Runs tried and found no capacity or a failing node.
    pub attempts: u32,
}

/// The store.
pub struct BatchStore {
    /// None once closed: a stopped gateway lets go of the file at once
    /// (redb allows one opener), however long stray tasks keep the
    /// gateway's state alive.
    db: Mutex<Option<Database>>,
}

/// The open database, held for one operation.
struct Open<'a>(MutexGuard<'a, Option<Database>>);

impl Deref for Open<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // `BatchStore::open_db` hands out an `Open` only over `Some`.
        self.0.as_ref().expect("checked when locked")
    }
}

fn db_err(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::State(format!("batch store: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(v).map_err(db_err)
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8], table: &str) -> Result<T, GatewayError> {
    serde_json::from_slice(b)
        .map_err(|e| GatewayError::State(format!("corrupt record in {table}: {e}")))
}

impl BatchStore {
    /// Opens (or creates) `batches.redb` in `state_dir`.
    pub fn open_dir(state_dir: &Path) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(state_dir).map_err(db_err)?;
        let db = Database::create(state_dir.join("batches.redb")).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(FILES).map_err(db_err)?;
            tx.open_table(FILE_DATA).map_err(db_err)?;
            tx.open_table(BATCHES).map_err(db_err)?;
            tx.open_table(REQUESTS).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(Self {
            db: Mutex::new(Some(db)),
        })
    }

    fn open_db(&self) -> Result<Open<'_>, GatewayError> {
        let g = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(GatewayError::State("the batch store is closed".into()));
        }
        Ok(Open(g))
    }

    /// Closes the file; every later call fails.
    pub fn close(&self) {
        self.db.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Stores a file and its bytes.
    pub fn put_file(&self, file: &FileRecord, data: &[u8]) -> Result<(), GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(FILES)
                .map_err(db_err)?
                .insert(file.id.as_str(), to_json(file)?.as_slice())
                .map_err(db_err)?;
            tx.open_table(FILE_DATA)
                .map_err(db_err)?
                .insert(file.id.as_str(), data)
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// A file's record.
    pub fn file(&self, id: &str) -> Result<Option<FileRecord>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(FILES).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(from_json(v.value(), "files")?)),
            None => Ok(None),
        }
    }

    /// A file's bytes.
    pub fn file_content(&self, id: &str) -> Result<Option<Vec<u8>>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(FILE_DATA).map_err(db_err)?;
        Ok(t.get(id).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Stores a new batch with all its requests, in one transaction.
    pub fn create_batch(
        &self,
        batch: &BatchRecord,
        requests: &[RequestRecord],
    ) -> Result<(), GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(BATCHES)
                .map_err(db_err)?
                .insert(batch.id.as_str(), to_json(batch)?.as_slice())
                .map_err(db_err)?;
            let mut t = tx.open_table(REQUESTS).map_err(db_err)?;
            for (i, r) in requests.iter().enumerate() {
                let i = u32::try_from(i).map_err(db_err)?;
                t.insert((batch.id.as_str(), i), to_json(r)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// A batch.
    pub fn batch(&self, id: &str) -> Result<Option<BatchRecord>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(BATCHES).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(from_json(v.value(), "batches")?)),
            None => Ok(None),
        }
    }

    /// Every batch (the list endpoint filters by owner; batches are few).
    pub fn batches(&self) -> Result<Vec<BatchRecord>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(BATCHES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(from_json(v.value(), "batches")?);
        }
        Ok(out)
    }

    /// Replaces a batch's record.
    pub fn put_batch(&self, batch: &BatchRecord) -> Result<(), GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(BATCHES)
                .map_err(db_err)?
                .insert(batch.id.as_str(), to_json(batch)?.as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// A batch's requests, in index order.
    pub fn requests(&self, batch_id: &str) -> Result<Vec<RequestRecord>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(REQUESTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t
            .range((batch_id, 0u32)..=(batch_id, u32::MAX))
            .map_err(db_err)?
        {
            let (_, v) = row.map_err(db_err)?;
            out.push(from_json(v.value(), "batch_requests")?);
        }
        Ok(out)
    }

    /// One request.
    pub fn request(
        &self,
        batch_id: &str,
        index: u32,
    ) -> Result<Option<RequestRecord>, GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_read().map_err(db_err)?;
        let t = tx.open_table(REQUESTS).map_err(db_err)?;
        match t.get((batch_id, index)).map_err(db_err)? {
            Some(v) => Ok(Some(from_json(v.value(), "batch_requests")?)),
            None => Ok(None),
        }
    }

    /// Replaces one request and, in the same transaction, its batch (a
    /// result and the counters that count it land together).
    pub fn put_request(
        &self,
        batch: Option<&BatchRecord>,
        batch_id: &str,
        index: u32,
        request: &RequestRecord,
    ) -> Result<(), GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(REQUESTS)
                .map_err(db_err)?
                .insert((batch_id, index), to_json(request)?.as_slice())
                .map_err(db_err)?;
            if let Some(b) = batch {
                tx.open_table(BATCHES)
                    .map_err(db_err)?
                    .insert(b.id.as_str(), to_json(b)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Writes a batch's output files and its final record together.
    pub fn finish_batch(
        &self,
        batch: &BatchRecord,
        files: &[(FileRecord, Vec<u8>)],
    ) -> Result<(), GatewayError> {
        let db = self.open_db()?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(FILES).map_err(db_err)?;
            let mut data = tx.open_table(FILE_DATA).map_err(db_err)?;
            for (f, bytes) in files {
                meta.insert(f.id.as_str(), to_json(f)?.as_slice())
                    .map_err(db_err)?;
                data.insert(f.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
            }
            tx.open_table(BATCHES)
                .map_err(db_err)?
                .insert(batch.id.as_str(), to_json(batch)?.as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Requests that have no result yet, over every unfinished batch, in
    /// (batch creation, index) order: what a restarted gateway queues again.
    /// A request found `Running` is one the gateway was running when it
    /// stopped, with no result recorded: it runs again.
    pub fn unfinished(&self) -> Result<Vec<(String, u32)>, GatewayError> {
        let mut batches: Vec<BatchRecord> = self
            .batches()?
            .into_iter()
            .filter(|b| !b.status.is_final())
            .collect();
        batches.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        let mut out = Vec::new();
        for b in batches {
            for (i, r) in self.requests(&b.id)?.into_iter().enumerate() {
                if !matches!(r.state, RequestState::Done { .. }) {
                    out.push((b.id.clone(), u32::try_from(i).map_err(db_err)?));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: &str) -> BatchRecord {
        BatchRecord {
            id: id.into(),
            owner: "o".into(),
            endpoint: "/v1/chat/completions".into(),
            input_file_id: "file-1".into(),
            completion_window: "24h".into(),
            status: BatchStatus::InProgress,
            created_at: 1,
            created_ms: 1_000,
            in_progress_at: Some(1),
            expires_at: 86_401,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            output_file_id: None,
            error_file_id: None,
            total: 3,
            completed: 0,
            failed: 0,
            errors: vec![],
            metadata: None,
            max_price_per_token: Some(2),
            cost: 0,
        }
    }

    fn request(line: u32, state: RequestState) -> RequestRecord {
        RequestRecord {
            custom_id: Some(format!("r{line}")),
            line,
            body: serde_json::json!({"model": "m"}),
            state,
            attempts: 0,
        }
    }

    /// What was committed survives closing and reopening the file; requests
    /// without a result (queued, or running when the gateway stopped) are
    /// the ones queued again, in order; a finished batch's are not.
    #[test]
    fn reopened_store_resumes_requests_without_results() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = BatchStore::open_dir(dir.path()).unwrap();
            let file = FileRecord {
                id: "file-1".into(),
                owner: "o".into(),
                purpose: "batch".into(),
                filename: "in.jsonl".into(),
                bytes: 3,
                created_at: 1,
            };
            s.put_file(&file, b"abc").unwrap();
            let done = RequestState::Done {
                ok: true,
                output: serde_json::json!({"custom_id": "r1"}),
            };
            s.create_batch(
                &batch("batch_a"),
                &[
                    request(1, done.clone()),
                    request(2, RequestState::Running),
                    request(3, RequestState::Queued),
                ],
            )
            .unwrap();
            let mut finished = batch("batch_b");
            finished.status = BatchStatus::Completed;
            s.create_batch(&finished, &[request(1, RequestState::Queued)])
                .unwrap();
        }
        let s = BatchStore::open_dir(dir.path()).unwrap();
        assert_eq!(s.file_content("file-1").unwrap().unwrap(), b"abc");
        assert_eq!(s.file("file-1").unwrap().unwrap().bytes, 3);
        assert!(s.file("file-2").unwrap().is_none());
        assert_eq!(
            s.unfinished().unwrap(),
            vec![("batch_a".to_string(), 1), ("batch_a".to_string(), 2)]
        );
        let mut b = s.batch("batch_a").unwrap().unwrap();
        b.completed = 2;
        let r = request(
            3,
            RequestState::Done {
                ok: false,
                output: serde_json::json!({}),
            },
        );
        s.put_request(Some(&b), "batch_a", 2, &r).unwrap();
        assert_eq!(s.request("batch_a", 2).unwrap().unwrap(), r);
        assert_eq!(s.batch("batch_a").unwrap().unwrap().completed, 2);
        assert_eq!(s.requests("batch_a").unwrap().len(), 3);
        assert_eq!(s.batches().unwrap().len(), 2);
    }

    /// A record that is not what this version wrote is an error, not a panic.
    #[test]
    fn corrupt_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = BatchStore::open_dir(dir.path()).unwrap();
        {
            let db = s.open_db().unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(BATCHES)
                .unwrap()
                .insert("batch_x", b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        assert!(matches!(s.batch("batch_x"), Err(GatewayError::State(_))));
        assert!(s.unfinished().is_err());
    }
}
