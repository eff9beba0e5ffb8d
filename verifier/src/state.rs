//! What the verifier remembers across restarts, in one small file: which
//! batches and audits are done (so a restart never re-runs them), its own
//! votes (re-published until the challenge closes), and the reports and
//! challenges it could not deliver yet (retried every poll, so a relayer or
//! RPC outage loses nothing).
//!
//! The file is written to a temporary name and renamed over the old one, so
//! a crash leaves either the old state or the new, never half of one.
//! Without a state directory the state lives in memory only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use borsh::{BorshDeserialize, BorshSerialize};
use strata_wire::audit::VerdictVote;

use crate::VerifierError;

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "verifier.state";
/// Largest state file read back.
const MAX_STATE_BYTES: usize = 64 << 20;
/// Version of [`State`]'s encoding.
const STATE_VERSION: u8 = 1;

/// A challenge to open, kept until it is opened or can never be (its
/// batch's challenge window closed).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PendingChallenge {
    /// The receipt's batch.
    pub batch_id: u64,
    /// The accused node.
    pub node: [u8; 32],
    /// The receipt's leaf index.
    pub leaf_index: u32,
    /// Its task.
    pub task_id: [u8; 32],
    /// Digest of the receipt's body.
    pub receipt_digest: [u8; 32],
    /// Its Merkle proof against the batch root.
    pub proof: Vec<[u8; 32]>,
    /// Attempts so far.
    pub attempts: u32,
}

/// Everything remembered.
#[derive(Debug, Clone, Default, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct State {
    /// Every batch below this id is done.
    pub batches_below: u64,
    /// Batches at or above `batches_below` that are done.
    pub batches_done: BTreeSet<u64>,
    /// Audits done (batch, leaf) in batches not yet done.
    pub audits_done: BTreeSet<(u64, u32)>,
    /// This verifier's votes, by challenge account.
    pub votes: BTreeMap<[u8; 32], VerdictVote>,
    /// Challenges this verifier cannot judge (a model it does not run).
    pub abstained: BTreeSet<[u8; 32]>,
    /// Signed audit reports the relayer has not accepted yet.
    pub reports: Vec<Vec<u8>>,
    /// Challenges not opened yet.
    pub challenges: Vec<PendingChallenge>,
}

impl State {
    /// Whether batch `id` is done.
    pub fn batch_done(&self, id: u64) -> bool {
        id < self.batches_below || self.batches_done.contains(&id)
    }

    /// Marks batch `id` done and forgets its audits.
    pub fn mark_batch_done(&mut self, id: u64) {
        if id >= self.batches_below {
            self.batches_done.insert(id);
        }
        while self.batches_done.remove(&self.batches_below) {
            self.batches_below += 1;
        }
        self.audits_done.retain(|(b, _)| *b != id);
    }

    /// Whether this verifier voted on or abstained from `challenge`.
    pub fn judged(&self, challenge: &[u8; 32]) -> bool {
        self.votes.contains_key(challenge) || self.abstained.contains(challenge)
    }

    /// Forgets votes and abstentions on challenges for which `open` is false.
    pub fn retain_challenges(&mut self, open: impl Fn(&[u8; 32]) -> bool) {
        self.votes.retain(|c, _| open(c));
        self.abstained.retain(|c| open(c));
    }
}

/// The state and where it is saved.
#[derive(Debug)]
pub struct StateFile {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl StateFile {
    /// Loads the state from `dir` (created if missing), or starts empty in
    /// memory when `dir` is `None`. A state file that does not decode is an
    /// error naming it, never silently replaced.
    pub fn open(dir: Option<&Path>) -> Result<Self, VerifierError> {
        let Some(dir) = dir else {
            return Ok(Self {
                path: None,
                state: Mutex::new(State::default()),
            });
        };
        std::fs::create_dir_all(dir).map_err(|e| VerifierError::io(dir, e))?;
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|why| {
                VerifierError::Config(format!(
                    "{}: {why} (move it away to start afresh)",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(VerifierError::io(&path, e)),
        };
        Ok(Self {
            path: Some(path),
            state: Mutex::new(state),
        })
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> State {
        self.lock().clone()
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the state and saves it. A failed save is logged and the
    /// change kept in memory (the next save writes it).
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.lock();
        let out = f(&mut state);
        if let Some(path) = &self.path {
            if let Err(e) = save(path, &state) {
                tracing::error!(path = %path.display(), "saving the verifier state: {e}");
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update runs to completion before the guard drops; a panic in
        // one leaves a state that is still consistent to save.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn decode(bytes: &[u8]) -> Result<State, String> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(format!("larger than {MAX_STATE_BYTES} bytes"));
    }
    match bytes.split_first() {
        Some((&STATE_VERSION, rest)) => borsh::from_slice(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown state version {v}")),
        None => Err("empty file".into()),
    }
}

fn save(path: &Path, state: &State) -> std::io::Result<()> {
    let mut bytes = vec![STATE_VERSION];
    bytes.extend(borsh::to_vec(state)?);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
