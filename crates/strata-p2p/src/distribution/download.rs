//! One running download: the candidates that may hold the file, the manifest
//! fetch, the have-map polls, the scheduler that picks which chunk to ask of
//! whom, and the counters reported at the end.
//!
//! It sends on the chunk behaviour it is handed and records what it asked
//! in [`InFlight`]; deciding what a response means for the file on disk is
//! the caller's (`file.rs`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::request_response::{OutboundFailure, OutboundRequestId};
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::manifest::FileRoot;
use super::protocol::{ChunkRequest, ChunkRr};
use super::scheduler::Scheduler;
use super::store::ChunkStore;
use crate::codec::Incoming;
use crate::error::P2pError;
use crate::identity::{node_of, NodeId};

/// Options of a download.
#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// Peers known to have (part of) the file, e.g. the publisher.
    pub peers: Vec<NodeId>,
    /// Star mode: fetch only from `peers`, never from other downloaders
    /// (the baseline the benchmark compares against).
    pub star: bool,
}

/// Outcome of a finished download.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// The file.
    pub root: FileRoot,
    /// Size in bytes.
    pub bytes: u64,
    /// Chunks fetched in this run (excludes chunks resumed from disk).
    pub chunks_fetched: u32,
    /// Chunks already on disk at start.
    pub chunks_resumed: u32,
    /// Chunks refused because they did not verify.
    pub chunks_rejected: u32,
    /// Bytes received per peer.
    pub bytes_from: Vec<(NodeId, u64)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// What a chunk request in flight asked for, and of whom.
pub(super) enum PendingChunk {
    Manifest(FileRoot, PeerId),
    Have(FileRoot, PeerId),
    Chunk(FileRoot, PeerId, u32),
}

/// Chunk requests in flight, by libp2p request id.
pub(super) type InFlight = HashMap<OutboundRequestId, PendingChunk>;

/// Chunk requests allowed in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) per_peer: usize,
    pub(super) per_download: usize,
}

type Reply = oneshot::Sender<Result<DownloadReport, P2pError>>;

/// One running download.
pub(super) struct Download {
    pub(super) dest: PathBuf,
    pub(super) options: DownloadOptions,
    /// Peers that may hold the file: the named sources, announcers and peers
    /// asking us for it.
    pub(super) candidates: HashSet<PeerId>,
    pub(super) have_pending: HashSet<PeerId>,
    manifest_tried: HashSet<PeerId>,
    pub(super) manifest_pending: bool,
    pub(super) scheduler: Option<Scheduler<PeerId>>,
    reply: Option<Reply>,
    started: Instant,
    fetched: u32,
    pub(super) resumed: u32,
    rejected: u32,
    bytes_from: HashMap<PeerId, u64>,
}

impl Download {
    /// A download into `dest`, asking `options.peers` first.
    pub(super) fn new(dest: PathBuf, options: DownloadOptions, reply: Reply) -> Self {
        Download {
            dest,
            candidates: options.peers.iter().map(|n| n.peer_id()).collect(),
            options,
            have_pending: HashSet::new(),
            manifest_tried: HashSet::new(),
            manifest_pending: false,
            scheduler: None,
            reply: Some(reply),
            started: Instant::now(),
            fetched: 0,
            resumed: 0,
            rejected: 0,
            bytes_from: HashMap::new(),
        }
    }

    /// Starts scheduling over `store`'s missing chunks (counting those
    /// already there as resumed); the named sources are asked only for what
    /// no other peer holds.
    pub(super) fn schedule(&mut self, store: &ChunkStore, limits: Limits) {
        let m = store.manifest();
        let mut s = Scheduler::new(
            m.chunk_count(),
            |i| store.has(i),
            rand::random(),
            limits.per_peer,
            limits.per_download,
        );
        for o in &self.options.peers {
            s.set_origin(o.peer_id());
        }
        self.resumed = store.have_count();
        self.scheduler = Some(s);
    }

    /// Ends the download with `err` (its caller is told once).
    pub(super) fn fail(&mut self, err: P2pError) {
        if let Some(r) = self.reply.take() {
            let _ = r.send(Err(err));
        }
    }

    /// Ends the download with its report: `store` is complete.
    pub(super) fn finish(mut self, root: FileRoot, store: &ChunkStore) {
        let report = DownloadReport {
            root,
            bytes: store.manifest().size,
            chunks_fetched: self.fetched,
            chunks_resumed: self.resumed,
            chunks_rejected: self.rejected,
            bytes_from: self
                .bytes_from
                .iter()
                .map(|(p, b)| (node_of(p), *b))
                .collect(),
            elapsed: self.started.elapsed(),
        };
        if let Some(r) = self.reply.take() {
            let _ = r.send(Ok(report));
        }
    }

    /// Without a manifest yet: asks the next candidate not yet tried.
    pub(super) fn request_manifest(
        &mut self,
        root: FileRoot,
        chunks: &mut ChunkRr,
        in_flight: &mut InFlight,
    ) {
        if self.manifest_pending {
            return;
        }
        let next = self
            .candidates
            .iter()
            .find(|p| !self.manifest_tried.contains(*p))
            .copied();
        if let Some(peer) = next {
            self.manifest_tried.insert(peer);
            self.manifest_pending = true;
            let id = chunks.send_request(&peer, Incoming::Valid(ChunkRequest::Manifest(root)));
            in_flight.insert(id, PendingChunk::Manifest(root, peer));
        } else if !self.manifest_tried.is_empty() && self.options.star {
            // Every named source was asked: retry them after a pause.
            self.manifest_tried.clear();
        }
    }

    /// Sends the chunk requests the scheduler allows now.
    pub(super) fn request_chunks(
        &mut self,
        root: FileRoot,
        chunks: &mut ChunkRr,
        in_flight: &mut InFlight,
    ) {
        let Some(sched) = self.scheduler.as_mut() else {
            return;
        };
        for (peer, i) in sched.next_requests() {
            let id = chunks.send_request(&peer, Incoming::Valid(ChunkRequest::Chunk(root, i)));
            in_flight.insert(id, PendingChunk::Chunk(root, peer, i));
        }
    }

    /// Asks every candidate not already asked what it holds.
    pub(super) fn poll_have_maps(
        &mut self,
        root: FileRoot,
        chunks: &mut ChunkRr,
        in_flight: &mut InFlight,
    ) {
        if self.scheduler.is_none() {
            return;
        }
        let peers: Vec<PeerId> = self
            .candidates
            .iter()
            .filter(|p| !self.have_pending.contains(*p))
            .copied()
            .collect();
        for peer in peers {
            self.have_pending.insert(peer);
            let id = chunks.send_request(&peer, Incoming::Valid(ChunkRequest::Have(root)));
            in_flight.insert(id, PendingChunk::Have(root, peer));
        }
    }

    /// A peer asked what we hold of this file: it is fetching it too, so a
    /// trading partner (unless we only take from named sources). Returns what
    /// we are fetching, for its scheduler.
    pub(super) fn on_have_request(&mut self, peer: PeerId) -> Vec<u8> {
        if !self.options.star {
            self.candidates.insert(peer);
        }
        self.scheduler
            .as_ref()
            .map(|s| s.fetching_bitmap())
            .unwrap_or_default()
    }

    /// `peer` told us what it holds and fetches (`None`: it did not answer).
    pub(super) fn on_have(&mut self, peer: PeerId, view: Option<(Vec<u8>, Vec<u8>)>) {
        self.have_pending.remove(&peer);
        if let Some(s) = self.scheduler.as_mut() {
            match view {
                Some((have, fetching)) => s.set_peer_view(peer, have, fetching),
                None => s.forget_view(&peer),
            }
        }
    }

    /// Chunk `i` from `peer` (`len` bytes) verified and written.
    pub(super) fn chunk_written(&mut self, peer: PeerId, i: u32, len: u64) {
        self.fetched += 1;
        *self.bytes_from.entry(peer).or_default() += len;
        if let Some(s) = self.scheduler.as_mut() {
            s.finished(&peer, i, true);
        }
    }

    /// Chunk `i` from `peer` did not verify.
    pub(super) fn chunk_rejected(&mut self, peer: PeerId, i: u32) {
        self.rejected += 1;
        if let Some(s) = self.scheduler.as_mut() {
            s.finished(&peer, i, false);
        }
    }

    /// `peer` does not have chunk `i` (or withholds it while super-seeding):
    /// stop asking it until its next have-map says otherwise.
    pub(super) fn chunk_refused(&mut self, peer: PeerId, i: u32) {
        if let Some(s) = self.scheduler.as_mut() {
            s.finished(&peer, i, false);
            s.peer_lacks(&peer, i);
        }
    }

    /// Our request for chunk `i` to `peer` failed; an unreachable peer is
    /// dropped from the schedule.
    pub(super) fn chunk_failed(&mut self, peer: PeerId, i: u32, error: &OutboundFailure) {
        if let Some(s) = self.scheduler.as_mut() {
            s.finished(&peer, i, false);
            if matches!(error, OutboundFailure::DialFailure) {
                s.remove_peer(&peer);
            }
        }
    }

    /// A banned peer is asked for nothing any more.
    pub(super) fn remove_peer(&mut self, peer: &PeerId) {
        self.candidates.remove(peer);
        if let Some(s) = self.scheduler.as_mut() {
            s.remove_peer(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(
        star: bool,
    ) -> (
        Download,
        oneshot::Receiver<Result<DownloadReport, P2pError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let origin = crate::identity::NodeIdentity::generate().node_id();
        let options = DownloadOptions {
            peers: vec![origin],
            star,
        };
        (Download::new("/tmp/x".into(), options, tx), rx)
    }

    #[test]
    fn peers_asking_for_have_maps_become_candidates_unless_star() {
        let (mut d, _rx) = download(false);
        let peer = PeerId::random();
        assert!(d.on_have_request(peer).is_empty());
        assert!(d.candidates.contains(&peer));
        let (mut star, _rx) = download(true);
        star.on_have_request(peer);
        assert!(!star.candidates.contains(&peer));
        assert_eq!(star.candidates.len(), 1);
    }

    #[test]
    fn the_caller_is_told_once() {
        let (mut d, mut rx) = download(false);
        d.fail(P2pError::Shutdown);
        d.fail(P2pError::Busy("again".into()));
        assert!(matches!(rx.try_recv(), Ok(Err(P2pError::Shutdown))));
    }
}
