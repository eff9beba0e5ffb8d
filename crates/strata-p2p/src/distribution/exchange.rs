//! The distribution state machine: every file this node holds or fetches,
//! and the chunk requests it has in flight.
//!
//! It does not own the swarm: the event loop hands it chunk-exchange events
//! and the chunk behaviour to send on, and it answers with what the loop must
//! do elsewhere (progress to report, announcements to publish, addresses to
//! learn). Penalties go straight to [`Peers`]. What a message means for one
//! file is `file.rs`'s; a download's bookkeeping is `download.rs`'s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::request_response::{self, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::announce::{decode_announcement, encode_announcement};
use super::download::{Download, DownloadOptions, DownloadReport, InFlight, Limits, PendingChunk};
use super::file::{Answer, FileEntry, Progress};
use super::manifest::FileRoot;
use super::protocol::{ChunkRequest, ChunkResponse, ChunkRr};
use super::store::ChunkStore;
use super::super_seed::{SuperSeed, SUPER_SEED_WINDOW};
use super::upload::Uploads;
use crate::codec::Incoming;
use crate::config::P2pConfig;
use crate::error::P2pError;
use crate::peers::{Direction, Misbehaviour, Peers, Protocol};

/// How often the files held or fetched are announced again.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(3);

/// A chunk-exchange event.
type ChunkEvent = request_response::Event<Incoming<ChunkRequest>, ChunkResponse>;

/// Files, downloads and chunk requests in flight.
pub(crate) struct Distribution {
    files: HashMap<FileRoot, FileEntry>,
    in_flight: InFlight,
    uploads: Uploads,
    limits: Limits,
    super_seed: bool,
    last_announce: Instant,
}

impl Distribution {
    /// Nothing held yet; the first announcement is due at once.
    pub(crate) fn new(config: &P2pConfig) -> Self {
        let now = Instant::now();
        Distribution {
            files: HashMap::new(),
            in_flight: HashMap::new(),
            uploads: Uploads::new(config.upload_rate_limit, config.test_corrupt_uploads),
            limits: Limits {
                per_peer: config.max_requests_per_peer,
                per_download: config.max_requests_per_download,
            },
            super_seed: config.super_seed,
            last_announce: now.checked_sub(ANNOUNCE_EVERY).unwrap_or(now),
        }
    }

    /// Starts serving a complete local file (super-seeded if so configured).
    /// The caller announces it.
    pub(crate) fn seed(&mut self, store: Arc<ChunkStore>) {
        let entry = self.files.entry(store.root()).or_default();
        entry.store = Some(store);
        if self.super_seed {
            entry.super_seed = Some(SuperSeed::new(SUPER_SEED_WINDOW));
        }
    }

    /// Stops serving `root` and ends its download, if one runs. Chunk
    /// requests still in flight for it find no file and are dropped.
    pub(crate) fn forget(&mut self, root: FileRoot) {
        if let Some(mut entry) = self.files.remove(&root) {
            entry.fail(P2pError::Stopped(root.to_string()));
        }
    }

    /// Registers a download of `root` into `dest`, resuming what a previous
    /// run left there. Returns `true` when it started (the caller then
    /// announces and drives it); otherwise `reply` has the refusal.
    pub(crate) fn start_download(
        &mut self,
        root: FileRoot,
        dest: PathBuf,
        options: DownloadOptions,
        reply: oneshot::Sender<Result<DownloadReport, P2pError>>,
    ) -> bool {
        let entry = self.files.entry(root).or_default();
        if entry.download.is_some() {
            let _ = reply.send(Err(P2pError::Busy(root.to_string())));
            return false;
        }
        if entry.store.as_ref().is_some_and(|s| s.is_complete()) {
            let _ = reply.send(Err(P2pError::Busy(format!(
                "{root} is already complete here"
            ))));
            return false;
        }
        let mut d = Download::new(dest.clone(), options, reply);
        // Resume from the sidecar when it is this same file.
        match ChunkStore::resume(&dest) {
            Ok(Some(store)) if store.root() == root => {
                let store = Arc::new(store);
                d.schedule(&store, self.limits);
                entry.store = Some(store);
            }
            Ok(Some(_)) => {
                d.fail(P2pError::Store(format!(
                    "{} holds a partial download of another file",
                    dest.display()
                )));
                return false;
            }
            _ => {}
        }
        entry.download = Some(d);
        true
    }

    /// Advance the download of `root`, if one runs.
    pub(crate) fn drive(&mut self, chunks: &mut ChunkRr, root: FileRoot) {
        if let Some(entry) = self.files.get_mut(&root) {
            entry.drive(root, chunks, &mut self.in_flight);
        }
    }

    /// An event of the chunk exchange. Returns the download's progress when
    /// a verified chunk was written.
    pub(crate) fn on_event(
        &mut self,
        chunks: &mut ChunkRr,
        peers: &mut Peers,
        event: ChunkEvent,
        now: Instant,
    ) -> Option<Progress> {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                if peers.is_banned(&peer, now) {
                    return None;
                }
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => match request {
                        Incoming::Valid(_) if !peers.admit(peer, Protocol::Chunks, now) => {}
                        Incoming::Valid(r) => self.serve(chunks, peer, r, channel, now),
                        Incoming::Malformed(e) => {
                            drop(channel);
                            let m = Misbehaviour::bad_frame(
                                Protocol::Chunks,
                                Direction::Request,
                                Some(&e),
                                e.to_string(),
                            );
                            self.penalise(peers, peer, m, now);
                        }
                    },
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(p) = self.in_flight.remove(&request_id) {
                            return self.on_response(chunks, peers, p, response, now);
                        }
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(p) = self.in_flight.remove(&request_id) {
                    let root = root_of(&p);
                    let drive = self
                        .files
                        .get_mut(&root)
                        .is_some_and(|e| e.on_failure(p, &error));
                    if drive {
                        self.drive(chunks, root);
                    }
                }
                if let Some(m) = Misbehaviour::of_outbound(Protocol::Chunks, &error) {
                    self.penalise(peers, peer, m, now);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let Some(m) = Misbehaviour::of_inbound(Protocol::Chunks, &error) {
                    self.penalise(peers, peer, m, now);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
        None
    }

    /// Answers `peer`'s request (already admitted against its budget).
    fn serve(
        &mut self,
        chunks: &mut ChunkRr,
        peer: PeerId,
        req: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
        now: Instant,
    ) {
        let root = match &req {
            ChunkRequest::Manifest(r) | ChunkRequest::Have(r) | ChunkRequest::Chunk(r, _) => *r,
        };
        let answer = match self.files.get_mut(&root) {
            Some(entry) => entry.answer(peer, req, now),
            None => Answer::Now(ChunkResponse::NotFound),
        };
        match answer {
            Answer::Now(resp) => {
                let _ = chunks.send_response(channel, resp);
            }
            Answer::Read(store, i) => self.uploads.send_chunk(store, i, channel),
        }
    }

    /// The answer to one of our requests: charge the sender if it lied, then
    /// drive its download on.
    fn on_response(
        &mut self,
        chunks: &mut ChunkRr,
        peers: &mut Peers,
        pending: PendingChunk,
        resp: ChunkResponse,
        now: Instant,
    ) -> Option<Progress> {
        let root = root_of(&pending);
        let entry = self.files.get_mut(&root)?;
        let step = entry.on_response(pending, resp, chunks, &mut self.in_flight, self.limits);
        if let Some((peer, m)) = step.penalty {
            self.penalise(peers, peer, m, now);
        }
        if step.drive {
            self.drive(chunks, root);
        }
        step.progress
    }

    /// Charges `m` to `peer`; a ban also drops the peer from every download
    /// at once, before the next request could go to it.
    fn penalise(&mut self, peers: &mut Peers, peer: PeerId, m: Misbehaviour, now: Instant) {
        if peers.penalise(peer, m, now) {
            self.remove_peer(&peer);
        }
    }

    /// A banned peer: no download asks it for anything any more.
    pub(crate) fn remove_peer(&mut self, peer: &PeerId) {
        for d in self.files.values_mut().filter_map(|e| e.download.as_mut()) {
            d.remove_peer(peer);
        }
    }

    /// The last connection to `peer` closed: its have-poll will not be
    /// answered, and chunks withheld for it are released.
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        for entry in self.files.values_mut() {
            if let Some(d) = entry.download.as_mut() {
                d.have_pending.remove(peer);
            }
            if let Some(ss) = entry.super_seed.as_mut() {
                ss.forget_peer(peer);
            }
        }
    }

    /// Whether the periodic announcement is due.
    pub(crate) fn announce_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_announce) >= ANNOUNCE_EVERY
            && !self.files.is_empty()
    }

    /// The announcement of every file held or fetched (except star-mode
    /// downloads, which want no other sources), listing `addrs`.
    pub(crate) fn announcements(&mut self, addrs: &[String]) -> Vec<(FileRoot, Vec<u8>)> {
        self.last_announce = Instant::now();
        self.files
            .iter()
            .filter(|(_, e)| e.download.as_ref().is_none_or(|d| !d.options.star))
            .map(|(root, _)| (*root, encode_announcement(root, addrs)))
            .collect()
    }

    /// `from` announced a file: if we are fetching it from the swarm, `from`
    /// becomes a candidate source and its addresses (returned) are worth
    /// knowing.
    pub(crate) fn on_announcement(&mut self, from: PeerId, payload: &[u8]) -> Vec<Multiaddr> {
        let Ok((root, addrs)) = decode_announcement(payload) else {
            return Vec::new();
        };
        let Some(d) = self.files.get_mut(&root).and_then(|e| e.download.as_mut()) else {
            return Vec::new();
        };
        if d.options.star {
            return Vec::new();
        }
        d.candidates.insert(from);
        addrs.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// The periodic step: poll have-maps and drive every download.
    pub(crate) fn on_tick(&mut self, chunks: &mut ChunkRr) {
        for (root, entry) in self.files.iter_mut() {
            if let Some(d) = entry.download.as_mut() {
                d.poll_have_maps(*root, chunks, &mut self.in_flight);
                entry.drive(*root, chunks, &mut self.in_flight);
            }
        }
    }

    /// The next chunk read off the event loop, ready to send.
    pub(crate) async fn next_upload(
        &mut self,
    ) -> Option<(ResponseChannel<ChunkResponse>, ChunkResponse)> {
        self.uploads.next().await
    }

    /// Chunk bytes uploaded and chunk requests served so far.
    pub(crate) fn upload_stats(&self) -> (u64, u64) {
        self.uploads.stats()
    }

    /// The node is stopping: every running download fails with
    /// [`P2pError::Shutdown`].
    pub(crate) fn shutdown(&mut self) {
        for d in self.files.values_mut().filter_map(|e| e.download.as_mut()) {
            d.fail(P2pError::Shutdown);
        }
    }
}

fn root_of(pending: &PendingChunk) -> FileRoot {
    match pending {
        PendingChunk::Manifest(r, _) | PendingChunk::Have(r, _) | PendingChunk::Chunk(r, _, _) => {
            *r
        }
    }
}
