//! Policy updates relayed peer to peer: the follower's half of RL on the
//! network (the trainer's is `strata_service::policy`).
//!
//! A node configured to follow trainers (`--follow-trainer`) listens to
//! the [`POLICY`] topic. For each announcement ([`PolicyAnnouncement`]) it
//! checks, in this order and refusing with a named [`Refusal`] (logged, and
//! counted in the metrics): that it decodes and its trainer's signature
//! holds, that it comes from a followed trainer, that its version is above
//! every version already taken from that trainer (gossip replays and late
//! copies), and that its base model is this node's model. Then it
//! downloads the file through the p2p distribution (chunk-verified against
//! the announced root), checks that the SHA-256 of its bytes is the
//! announced digest, and loads it as an adapter for this node's model.
//! A refused file is deleted and no longer served.
//!
//! The store keeps the last [`PolicyConfig::keep`] versions, on disk under
//! its directory and in memory as `Arc<A>` (the engine's `Adapter` in the
//! node), and keeps seeding them, so followers fetch from each other as
//! much as from the trainer. Older versions are evicted: no longer served
//! (new tasks refuse them, the capacity announcement drops them, seeding
//! stops) and deleted, unless a task the node may still be asked to open
//! names the adapter ([`PolicyStore::set_pins`]: the node's archive pins
//! them). Such a file is kept, out of memory, until the last pin goes, and
//! [`PolicyStore::sweep`] (after the archive's pruning) deletes it then;
//! [`PolicyStore::adapter`] loads it again for an opening. The task path
//! reads [`PolicyStore::get`] and [`PolicyStore::latest`].
//!
//! One store serves one line of versions: when several trainers are
//! followed, a version number already held from one is refused from
//! another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_p2p::{
    DownloadOptions, FileRoot, Misbehaviour, NodeId, P2pEvent, P2pHandle, Protocol, Severity,
};
use strata_wire::policy::{PolicyAnnouncement, POLICY_FORMAT};
use strata_wire::protocols::POLICY;
use strata_wire::WireError;

use crate::NodeError;

pub use strata_engine::Adapter;

/// Versions kept by default.
pub const DEFAULT_KEEP: usize = 3;

/// Longest a version's download may take before it is given up (a later
/// announcement of it starts again).
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Turns a downloaded, digest-checked adapter file into what the store
/// holds, checking it against the announcement and this node's model; its
/// error is the refusal's reason.
pub type LoadAdapter<A = Adapter> =
    Arc<dyn Fn(&[u8], &PolicyAnnouncement) -> Result<A, String> + Send + Sync>;

/// Whether something the node may still have to prove names the adapter
/// with this SHA-256 as this policy version (the node's archive,
/// [`crate::archive::Archive::pinned`]).
pub type Pins = Arc<dyn Fn(u64, &[u8; 32]) -> bool + Send + Sync>;

/// What the store follows and where it keeps files.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Trainer public keys whose announcements are taken; none: the store
    /// takes nothing.
    pub follow: Vec<[u8; 32]>,
    /// SHA-256 of this node's model file: adapters for another base model
    /// are refused.
    pub model_hash: [u8; 32],
    /// Where adapter files are kept.
    pub dir: PathBuf,
    /// Versions kept (at least 1).
    pub keep: usize,
    /// Longest a download may take.
    pub download_timeout: Duration,
    /// Largest file taken, refused before it is downloaded (the node's
    /// engine loads at most `strata_engine::MAX_ADAPTER_BYTES`).
    pub max_bytes: u64,
}

impl PolicyConfig {
    /// Following `follow` for the model hashing to `model_hash`, files in
    /// `dir`, the defaults otherwise.
    pub fn new(follow: Vec<[u8; 32]>, model_hash: [u8; 32], dir: PathBuf) -> Self {
        Self {
            follow,
            model_hash,
            dir,
            keep: DEFAULT_KEEP,
            download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            max_bytes: strata_engine::MAX_ADAPTER_BYTES as u64,
        }
    }
}

/// Why an announcement or its file was refused. Each is counted apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bytes are not an announcement (or over its size limit).
    #[error("malformed announcement: {0}")]
    Malformed(String),
    /// The trainer's signature does not hold.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed by a trainer this node does not follow.
    #[error("trainer {0} is not followed")]
    UnknownTrainer(String),
    /// A version at or below one already taken (or being fetched) from
    /// this trainer, or a version number held from another trainer.
    #[error("version {version} is not above version {have} already taken")]
    Replay {
        /// The announced version.
        version: u64,
        /// The highest version taken or being fetched.
        have: u64,
    },
    /// The adapter is for another base model.
    #[error("adapter for base model {announced}, this node serves {ours}")]
    OtherBaseModel {
        /// The announced base model (hex).
        announced: String,
        /// This node's model (hex).
        ours: String,
    },
    /// The download failed or took too long.
    #[error("download: {0}")]
    Download(String),
    /// The file's bytes do not hash to the announced digest.
    #[error("adapter hash does not match its announcement: announced {announced}, file {actual}")]
    DigestMismatch {
        /// Announced SHA-256 (hex).
        announced: String,
        /// SHA-256 of the bytes received (hex).
        actual: String,
    },
    /// The file is not an adapter for this node's model.
    #[error("adapter refused: {0}")]
    Adapter(String),
    /// The file could not be read or written here.
    #[error("io: {0}")]
    Io(String),
}

impl Refusal {
    /// Every kind, in the order [`PolicyCounters::refused`] lists them.
    pub const KINDS: [&'static str; 9] = [
        "malformed",
        "bad_signature",
        "unknown_trainer",
        "replay",
        "other_base_model",
        "download",
        "digest_mismatch",
        "adapter",
        "io",
    ];

    /// The kind's index in [`Refusal::KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Refusal::Malformed(_) => 0,
            Refusal::BadSignature(_) => 1,
            Refusal::UnknownTrainer(_) => 2,
            Refusal::Replay { .. } => 3,
            Refusal::OtherBaseModel { .. } => 4,
            Refusal::Download(_) => 5,
            Refusal::DigestMismatch { .. } => 6,
            Refusal::Adapter(_) => 7,
            Refusal::Io(_) => 8,
        }
    }
}

/// What the store has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Versions fetched, checked and held.
    pub accepted: u64,
    /// Versions evicted to keep the last few.
    pub evicted: u64,
    /// Refusals per kind, in [`Refusal::KINDS`] order.
    pub refused: [u64; 9],
}

impl PolicyCounters {
    /// Refusals of `kind` (one of [`Refusal::KINDS`]).
    pub fn refused(&self, kind: &str) -> u64 {
        Refusal::KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.refused[i])
    }
}

/// One version held.
struct Held<A> {
    trainer: [u8; 32],
    version: u64,
    /// The adapter's SHA-256 (its file's).
    digest: [u8; 32],
    adapter: Arc<A>,
    root: FileRoot,
    path: PathBuf,
}

struct State<A> {
    /// Per trainer, the highest version held or evicted.
    taken: HashMap<[u8; 32], u64>,
    /// (trainer, version) being fetched.
    fetching: HashSet<([u8; 32], u64)>,
    held: BTreeMap<u64, Held<A>>,
    counters: PolicyCounters,
}

struct Inner<A> {
    config: PolicyConfig,
    /// Versions served (`config.keep` until [`PolicyStore::set_keep`]).
    keep: AtomicUsize,
    /// What keeps an evicted version's file; none: nothing does.
    pins: OnceLock<Pins>,
    p2p: P2pHandle,
    load: LoadAdapter<A>,
    state: Mutex<State<A>>,
}

/// The versions a node holds of the policies it follows; cheap to clone.
/// `A` is what a version is loaded as: the engine's [`Adapter`] in the
/// node ([`engine_loader`]).
pub struct PolicyStore<A = Adapter> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for PolicyStore<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Send + Sync + 'static> PolicyStore<A> {
    /// A store that downloads through `p2p` into `config.dir` (created) and
    /// loads files with `load`.
    pub fn new(
        config: PolicyConfig,
        p2p: P2pHandle,
        load: LoadAdapter<A>,
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| NodeError::io(&config.dir, e))?;
        if config.keep == 0 {
            return Err(NodeError::Config(
                "policy versions kept must be at least 1".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                keep: AtomicUsize::new(config.keep),
                pins: OnceLock::new(),
                config,
                p2p,
                load,
                state: Mutex::new(State {
                    taken: HashMap::new(),
                    fetching: HashSet::new(),
                    held: BTreeMap::new(),
                    counters: PolicyCounters::default(),
                }),
            }),
        })
    }

    /// Keeps an evicted version's file while `pins` says something names
    /// it (set once; later calls are ignored).
    pub fn set_pins(&self, pins: Pins) {
        let _ = self.inner.pins.set(pins);
    }

    /// Serves the last `keep` versions (at least 1) from the next version
    /// taken on.
    pub fn set_keep(&self, keep: usize) {
        self.inner.keep.store(keep.max(1), Ordering::Relaxed);
    }

    /// Whether the file of `adapter` as `version` must be kept.
    fn pinned(&self, version: u64, adapter: &[u8; 32]) -> bool {
        self.inner.pins.get().is_some_and(|p| p(version, adapter))
    }

    /// The adapter of `version` whose SHA-256 is `digest`, to re-derive a
    /// task that ran with it: the one served, else loaded again from its
    /// kept file (an evicted version a pin kept, also after a restart),
    /// checked against `digest` and this node's model. This may read and
    /// parse the whole file: call it off the async runtime.
    pub fn adapter(&self, version: u64, digest: &[u8; 32]) -> Result<Arc<A>, String> {
        let served = self
            .state()
            .held
            .get(&version)
            .filter(|h| h.digest == *digest)
            .map(|h| h.adapter.clone());
        if let Some(a) = served {
            return Ok(a);
        }
        let gone = |why: String| {
            format!(
                "the adapter of policy version {version} ({}) is no longer held: {why}",
                hex::encode(digest)
            )
        };
        let path = self.path_for(version, digest);
        let bytes = std::fs::read(&path).map_err(|e| gone(format!("{}: {e}", path.display())))?;
        let actual: [u8; 32] = Sha256::digest(&bytes).into();
        if actual != *digest {
            return Err(gone(format!(
                "{} hashes to {}",
                path.display(),
                hex::encode(actual)
            )));
        }
        // The file was checked against its signed announcement when it was
        // taken; the loader compares only the version, digest and model.
        let a = PolicyAnnouncement {
            format: POLICY_FORMAT,
            trainer: [0; 32],
            base_model: self.inner.config.model_hash,
            version,
            adapter_sha256: *digest,
            file_root: [0; 32],
            size: bytes.len() as u64,
            published_at_ms: 0,
            signature: [0; 64],
        };
        (self.inner.load)(&bytes, &a).map(Arc::new).map_err(gone)
    }

    /// Deletes the adapter files in the store's directory that are neither
    /// served, nor being fetched, nor pinned: evicted versions whose last
    /// pin has gone, and what an earlier run left behind. Returns how many.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.inner.config.dir) else {
            return 0;
        };
        // Under the lock: a download that starts meanwhile could write to
        // a path about to be deleted.
        let state = self.state();
        let mut removed = 0;
        for e in entries.flatten() {
            let path = e.path();
            let Some((version, digest)) = parse_file_name(&path) else {
                continue;
            };
            let served = state.held.get(&version).is_some_and(|h| h.path == path);
            let fetching = state.fetching.iter().any(|(_, v)| *v == version);
            if served || fetching || self.pinned(version, &digest) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                remove_sidecar(&path);
                tracing::info!(path = %path.display(), "policy file no longer pinned: deleted");
                removed += 1;
            }
        }
        removed
    }

    /// The adapter of `version`, if held.
    pub fn get(&self, version: u64) -> Option<Arc<A>> {
        self.state().held.get(&version).map(|h| h.adapter.clone())
    }

    /// The newest version held and its adapter.
    pub fn latest(&self) -> Option<(u64, Arc<A>)> {
        self.state()
            .held
            .iter()
            .next_back()
            .map(|(v, h)| (*v, h.adapter.clone()))
    }

    /// Versions held, oldest first.
    pub fn versions(&self) -> Vec<u64> {
        self.state().held.keys().copied().collect()
    }

    /// Where the file of `version` is kept, if held.
    pub fn path(&self, version: u64) -> Option<PathBuf> {
        self.state().held.get(&version).map(|h| h.path.clone())
    }

    /// What the store has done so far.
    pub fn counters(&self) -> PolicyCounters {
        self.state().counters.clone()
    }

    /// Takes a network event: a message on the [`POLICY`] topic is handled
    /// on its own task (the download may take a while) and `true` returned;
    /// anything else is left to the caller.
    pub fn hear(&self, event: &P2pEvent) -> bool {
        let P2pEvent::Gossip {
            topic,
            from,
            payload,
        } = event
        else {
            return false;
        };
        if *topic != POLICY {
            return false;
        }
        let (store, from, payload) = (self.clone(), *from, payload.clone());
        tokio::spawn(async move {
            let _ = store.on_announcement(from, &payload).await;
        });
        true
    }

    /// Handles one announcement published by `from`: the whole path from
    /// bytes to a held version (see the module docs). Returns the version
    /// taken, or why not (already logged and counted).
    pub async fn on_announcement(&self, from: NodeId, payload: &[u8]) -> Result<u64, Refusal> {
        let result = self.take(from, payload).await;
        match &result {
            Ok(version) => tracing::info!(version, "policy version fetched and held"),
            Err(r @ Refusal::Replay { .. }) => {
                tracing::debug!(peer = %from, "policy announcement ignored: {r}")
            }
            Err(r) => tracing::warn!(peer = %from, "policy announcement refused: {r}"),
        }
        if let Err(r) = &result {
            self.state().counters.refused[r.kind()] += 1;
        }
        result
    }

    async fn take(&self, from: NodeId, payload: &[u8]) -> Result<u64, Refusal> {
        let a = match PolicyAnnouncement::decode(payload) {
            Ok(a) => a,
            Err(e) => {
                self.penalise(
                    from,
                    Severity::Nuisance,
                    format!("malformed policy announcement: {e}"),
                )
                .await;
                return Err(Refusal::Malformed(e.to_string()));
            }
        };
        if let Err(e) = a.verify() {
            self.penalise(
                from,
                Severity::Strike,
                format!("forged policy announcement: {e}"),
            )
            .await;
            let WireError::Invalid(m) = e else {
                return Err(Refusal::BadSignature(e.to_string()));
            };
            return Err(Refusal::BadSignature(m));
        }
        let config = &self.inner.config;
        if !config.follow.contains(&a.trainer) {
            return Err(Refusal::UnknownTrainer(NodeId(a.trainer).to_string()));
        }
        if a.base_model != config.model_hash {
            return Err(Refusal::OtherBaseModel {
                announced: hex::encode(a.base_model),
                ours: hex::encode(config.model_hash),
            });
        }
        if a.size > config.max_bytes {
            return Err(Refusal::Adapter(format!(
                "{} bytes, more than the {} this node loads",
                a.size, config.max_bytes
            )));
        }
        self.claim(&a)?;
        let outcome = self.fetch(from, &a).await;
        // Ok(evicted versions), or Err when another trainer's file took this
        // version number meanwhile.
        let stored = {
            let mut state = self.state();
            state.fetching.remove(&(a.trainer, a.version));
            let held = outcome?;
            if state
                .held
                .get(&a.version)
                .is_some_and(|h| h.trainer != a.trainer)
            {
                Err(held)
            } else {
                let taken = state.taken.entry(a.trainer).or_default();
                *taken = (*taken).max(a.version);
                state.held.insert(a.version, held);
                state.counters.accepted += 1;
                let keep = self.inner.keep.load(Ordering::Relaxed);
                let evicted = evict(&mut state, keep);
                state.counters.evicted += evicted.len() as u64;
                Ok(evicted)
            }
        };
        let evicted = match stored {
            Ok(evicted) => evicted,
            Err(clash) => {
                self.forget(clash.root, &clash.path).await;
                return Err(Refusal::Replay {
                    version: a.version,
                    have: a.version,
                });
            }
        };
        for old in evicted {
            // A task admitted with this adapter pins it before it checks
            // the version is still served, so a pin missing here belongs to
            // no task that will run with it.
            if self.pinned(old.version, &old.digest) {
                let _ = self.inner.p2p.stop_seeding(old.root).await;
                tracing::info!(
                    path = %old.path.display(),
                    "older policy version no longer served; its file is kept for audits"
                );
            } else {
                self.forget(old.root, &old.path).await;
                tracing::info!(path = %old.path.display(), "older policy version evicted");
            }
        }
        Ok(a.version)
    }

    /// Marks `a` as being fetched, unless its version is not new.
    fn claim(&self, a: &PolicyAnnouncement) -> Result<(), Refusal> {
        let mut state = self.state();
        let taken = state.taken.get(&a.trainer).copied();
        let fetching = state
            .fetching
            .iter()
            .filter(|(t, _)| *t == a.trainer)
            .map(|(_, v)| *v)
            .find(|v| *v == a.version);
        let held_elsewhere = state
            .held
            .get(&a.version)
            .is_some_and(|h| h.trainer != a.trainer);
        let have = taken.filter(|t| *t >= a.version).or(fetching);
        if let Some(have) = have {
            return Err(Refusal::Replay {
                version: a.version,
                have,
            });
        }
        if held_elsewhere {
            return Err(Refusal::Replay {
                version: a.version,
                have: a.version,
            });
        }
        state.fetching.insert((a.trainer, a.version));
        Ok(())
    }

    /// Downloads, checks and loads the file `a` names; a refused file is
    /// deleted and no longer served.
    async fn fetch(&self, from: NodeId, a: &PolicyAnnouncement) -> Result<Held<A>, Refusal> {
        let config = &self.inner.config;
        let root = FileRoot(a.file_root);
        let path = self.file_path(a);
        let options = DownloadOptions {
            // The publisher has it; other followers are found through the
            // distribution's own announcements.
            peers: vec![from],
            star: false,
        };
        let download = self.inner.p2p.download(root, &path, options);
        let report = match tokio::time::timeout(config.download_timeout, download).await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                self.forget(root, &path).await;
                return Err(Refusal::Download(e.to_string()));
            }
            Err(_) => {
                self.forget(root, &path).await;
                return Err(Refusal::Download(format!(
                    "not complete after {} s",
                    config.download_timeout.as_secs()
                )));
            }
        };
        tracing::debug!(
            version = a.version,
            bytes = report.bytes,
            ms = report.elapsed.as_millis() as u64,
            "policy file downloaded"
        );
        let (load, announcement, file) = (self.inner.load.clone(), a.clone(), path.clone());
        let checked = tokio::task::spawn_blocking(move || check(&file, &announcement, &load))
            .await
            .map_err(|e| Refusal::Io(e.to_string()))
            .and_then(|r| r);
        match checked {
            Ok(adapter) => Ok(Held {
                trainer: a.trainer,
                version: a.version,
                digest: a.adapter_sha256,
                adapter: Arc::new(adapter),
                root,
                path,
            }),
            Err(r) => {
                self.forget(root, &path).await;
                Err(r)
            }
        }
    }

    /// Where the file `a` names is kept.
    fn file_path(&self, a: &PolicyAnnouncement) -> PathBuf {
        self.path_for(a.version, &a.adapter_sha256)
    }

    /// Where the adapter `digest` of `version` is kept: the whole digest
    /// is in the name, so that a pin finds its file, also after a restart.
    fn path_for(&self, version: u64, digest: &[u8; 32]) -> PathBuf {
        self.inner
            .config
            .dir
            .join(format!("v{version:020}-{}.adapter", hex::encode(digest)))
    }

    /// Stops serving `root` and deletes its file (and a partial download's
    /// manifest beside it).
    async fn forget(&self, root: FileRoot, path: &Path) {
        let _ = self.inner.p2p.stop_seeding(root).await;
        let _ = std::fs::remove_file(path);
        remove_sidecar(path);
    }

    async fn penalise(&self, from: NodeId, severity: Severity, detail: String) {
        let m = Misbehaviour::Application {
            protocol: Protocol::App(POLICY.name),
            severity,
            detail,
        };
        let _ = self.inner.p2p.report(from, m).await;
    }

    fn state(&self) -> MutexGuard<'_, State<A>> {
        // A panic while holding the lock leaves plain data behind.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads the downloaded file, checks its size and SHA-256 against the
/// announcement, and loads it.
fn check<A>(path: &Path, a: &PolicyAnnouncement, load: &LoadAdapter<A>) -> Result<A, Refusal> {
    let bytes = std::fs::read(path).map_err(|e| Refusal::Io(format!("{}: {e}", path.display())))?;
    let actual: [u8; 32] = Sha256::digest(&bytes).into();
    if actual != a.adapter_sha256 || bytes.len() as u64 != a.size {
        return Err(Refusal::DigestMismatch {
            announced: hex::encode(a.adapter_sha256),
            actual: hex::encode(actual),
        });
    }
    load(&bytes, a).map_err(Refusal::Adapter)
}

/// Deletes a partial download's manifest beside `path`.
fn remove_sidecar(path: &Path) {
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".strata-manifest");
    let _ = std::fs::remove_file(PathBuf::from(sidecar));
}

/// The version and digest of a file named as [`PolicyStore::path_for`]
/// names them.
fn parse_file_name(path: &Path) -> Option<(u64, [u8; 32])> {
    let name = path.file_name()?.to_str()?;
    let (version, digest) = name
        .strip_suffix(".adapter")?
        .strip_prefix('v')?
        .split_once('-')?;
    Some((
        version.parse().ok()?,
        strata_wire::parse_hex32(digest).ok()?,
    ))
}

/// Removes the oldest versions beyond `keep`; returns them.
fn evict<A>(state: &mut State<A>, keep: usize) -> Vec<Held<A>> {
    let mut out = Vec::new();
    while state.held.len() > keep {
        if let Some((_, h)) = state.held.pop_first() {
            out.push(h);
        }
    }
    out
}

/// The node's loader: the engine parses the file, checks it fits this
/// node's model (`config`, and the model file's SHA-256 `model_hash`), and
/// the adapter must say what its announcement says (version, base model)
/// and be in the canonical form whose SHA-256 is its identity
/// ([`Adapter::digest`]), so that the digest the trainer signed, the bytes
/// served and the adapter the engine applies are one thing.
pub fn engine_loader(config: strata_engine::LlamaConfig, model_hash: [u8; 32]) -> LoadAdapter {
    Arc::new(move |bytes, a| {
        let adapter = Adapter::from_bytes(bytes).map_err(|e| e.to_string())?;
        adapter
            .check_for(&config, &model_hash)
            .map_err(|e| e.to_string())?;
        if adapter.version() != a.version {
            return Err(format!(
                "the file is version {}, announced as {}",
                adapter.version(),
                a.version
            ));
        }
        if adapter.digest() != a.adapter_sha256 {
            return Err("the file is not the adapter's canonical encoding".into());
        }
        Ok(adapter)
    })
}

/// Parses a trainer's public key: base58 (as Solana prints it) or 64 hex
/// characters.
pub fn parse_trainer_key(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if let Ok(b) = strata_wire::parse_hex32(s) {
        return Ok(b);
    }
    s.parse::<strata_chain::Pubkey>()
        .map(|p| p.to_bytes())
        .map_err(|_| format!("{s:?} is neither a base58 nor a hex public key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_keys_parse_from_base58_or_hex_and_junk_is_refused() {
        let key = strata_chain::Pubkey::new_from_array([9; 32]);
        assert_eq!(parse_trainer_key(&key.to_string()), Ok([9; 32]));
        assert_eq!(parse_trainer_key(&hex::encode([9u8; 32])), Ok([9; 32]));
        for junk in ["", "abc", &hex::encode([9u8; 31]), "0OIl"] {
            assert!(parse_trainer_key(junk).is_err(), "{junk:?}");
        }
    }
}
