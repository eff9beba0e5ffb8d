//! One file's state: what of it is on disk, its download if one runs, and
//! its super-seeding record if we published it; and what each chunk-exchange
//! message about it means: how to answer a request, what a response or a
//! failure changes.
//!
//! Penalties and further driving are left to the caller, which sees every
//! file: a ban must reach all downloads before the next request goes out.

use std::sync::Arc;
use std::time::Instant;

use libp2p::request_response::OutboundFailure;
use libp2p::PeerId;

use super::download::{Download, InFlight, Limits, PendingChunk};
use super::manifest::{FileRoot, Manifest};
use super::protocol::{ChunkRequest, ChunkResponse, ChunkRr};
use super::store::ChunkStore;
use super::super_seed::SuperSeed;
use crate::error::P2pError;
use crate::peers::Misbehaviour;

/// A verified chunk was written: how far its download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) root: FileRoot,
    pub(crate) have: u32,
    pub(crate) total: u32,
    pub(crate) bytes: u64,
    pub(crate) size: u64,
}

/// How to answer a chunk request.
pub(super) enum Answer {
    /// At once.
    Now(ChunkResponse),
    /// With chunk `.1` of the store, read off the event loop.
    Read(Arc<ChunkStore>, u32),
}

/// What handling a response leaves to the caller, in this order: charge the
/// peer, then drive the download on.
#[derive(Default)]
pub(super) struct Step {
    pub(super) progress: Option<Progress>,
    pub(super) penalty: Option<(PeerId, Misbehaviour)>,
    pub(super) drive: bool,
}

impl Step {
    fn drive() -> Self {
        Step {
            drive: true,
            ..Step::default()
        }
    }
}

/// One file.
#[derive(Default)]
pub(super) struct FileEntry {
    pub(super) store: Option<Arc<ChunkStore>>,
    pub(super) download: Option<Download>,
    pub(super) super_seed: Option<SuperSeed<PeerId>>,
}

impl FileEntry {
    /// The answer to `peer`'s request about this file.
    pub(super) fn answer(&mut self, peer: PeerId, req: ChunkRequest, now: Instant) -> Answer {
        let resp = match (req, self.store.clone()) {
            (ChunkRequest::Manifest(_), Some(s)) => ChunkResponse::Manifest(s.manifest().encode()),
            (ChunkRequest::Have(_), store) => {
                let fetching = self
                    .download
                    .as_mut()
                    .map(|d| d.on_have_request(peer))
                    .unwrap_or_default();
                let mut have = store.map(|s| s.have_bitmap()).unwrap_or_default();
                if let Some(ss) = self.store.as_ref().and(self.super_seed.as_ref()) {
                    ss.mask(&mut have, &peer, now);
                }
                ChunkResponse::Have { have, fetching }
            }
            (ChunkRequest::Chunk(_, i), Some(_))
                if self
                    .super_seed
                    .as_mut()
                    .is_some_and(|ss| !ss.admit(&peer, i, now)) =>
            {
                // Sent to another downloader moments ago: fetch it there.
                ChunkResponse::NotFound
            }
            (ChunkRequest::Chunk(_, i), Some(s)) if s.has(i) => return Answer::Read(s, i),
            _ => ChunkResponse::NotFound,
        };
        Answer::Now(resp)
    }

    /// Sends what the download needs next: the manifest, or chunks; reports
    /// the download once the file is complete.
    pub(super) fn drive(&mut self, root: FileRoot, chunks: &mut ChunkRr, in_flight: &mut InFlight) {
        let Some(store) = self.store.clone() else {
            if let Some(d) = self.download.as_mut() {
                d.request_manifest(root, chunks, in_flight);
            }
            return;
        };
        if store.is_complete() {
            if let Some(d) = self.download.take() {
                d.finish(root, &store);
            }
        } else if let Some(d) = self.download.as_mut() {
            d.request_chunks(root, chunks, in_flight);
        }
    }

    /// The answer to one of our requests about this file.
    pub(super) fn on_response(
        &mut self,
        pending: PendingChunk,
        resp: ChunkResponse,
        chunks: &mut ChunkRr,
        in_flight: &mut InFlight,
        limits: Limits,
    ) -> Step {
        match (pending, resp) {
            (PendingChunk::Manifest(root, peer), ChunkResponse::Manifest(bytes)) => {
                let manifest = Manifest::decode(&bytes).ok().filter(|m| m.root() == root);
                match manifest {
                    Some(m) => self.on_manifest(root, m, chunks, in_flight, limits),
                    None => {
                        if let Some(d) = self.download.as_mut() {
                            d.manifest_pending = false;
                        }
                        Step {
                            penalty: Some((peer, Misbehaviour::WrongManifest { root: root.0 })),
                            ..Step::drive()
                        }
                    }
                }
            }
            (PendingChunk::Manifest(..), _) => {
                if let Some(d) = self.download.as_mut() {
                    d.manifest_pending = false;
                }
                Step::drive()
            }
            (PendingChunk::Have(_, peer), ChunkResponse::Have { have, fetching }) => {
                if let Some(d) = self.download.as_mut() {
                    d.on_have(peer, Some((have, fetching)));
                }
                Step::drive()
            }
            (PendingChunk::Have(_, peer), _) => {
                if let Some(d) = self.download.as_mut() {
                    d.on_have(peer, None);
                }
                Step::drive()
            }
            (PendingChunk::Chunk(root, peer, i), ChunkResponse::Chunk(data)) => {
                self.on_chunk(root, peer, i, &data)
            }
            (PendingChunk::Chunk(_, peer, i), _) => {
                if let Some(d) = self.download.as_mut() {
                    d.chunk_refused(peer, i);
                }
                Step::drive()
            }
        }
    }

    /// A verified manifest: open the destination (keeping chunks already
    /// there), start scheduling and ask everyone what they hold.
    fn on_manifest(
        &mut self,
        root: FileRoot,
        manifest: Manifest,
        chunks: &mut ChunkRr,
        in_flight: &mut InFlight,
        limits: Limits,
    ) -> Step {
        let Some(d) = self.download.as_mut() else {
            return Step::default();
        };
        d.manifest_pending = false;
        match ChunkStore::open_download(&d.dest, manifest) {
            Ok(store) => {
                let store = Arc::new(store);
                d.schedule(&store, limits);
                d.poll_have_maps(root, chunks, in_flight);
                self.store = Some(store);
                Step::drive()
            }
            Err(err) => {
                self.fail(P2pError::Store(err.to_string()));
                Step::default()
            }
        }
    }

    /// Chunk `i` from `peer`: written if it verifies, charged if not.
    fn on_chunk(&mut self, root: FileRoot, peer: PeerId, i: u32, data: &[u8]) -> Step {
        let Some(store) = self.store.clone() else {
            return Step::default();
        };
        match store.write_chunk(i, data) {
            Ok(true) => {
                if let Some(d) = self.download.as_mut() {
                    d.chunk_written(peer, i, data.len() as u64);
                }
                let have = store.have_count();
                let m = store.manifest();
                Step {
                    progress: Some(Progress {
                        root,
                        have,
                        total: m.chunk_count(),
                        bytes: (u64::from(have) * u64::from(m.chunk_size)).min(m.size),
                        size: m.size,
                    }),
                    ..Step::drive()
                }
            }
            Ok(false) => {
                if let Some(d) = self.download.as_mut() {
                    d.chunk_rejected(peer, i);
                }
                let m = Misbehaviour::CorruptChunk {
                    root: root.0,
                    index: i,
                };
                Step {
                    penalty: Some((peer, m)),
                    ..Step::drive()
                }
            }
            Err(e) => {
                self.fail(P2pError::Store(e.to_string()));
                Step::default()
            }
        }
    }

    /// One of our requests about this file failed (time-out, closed
    /// connection, unreachable peer); returns whether to drive on.
    pub(super) fn on_failure(&mut self, pending: PendingChunk, error: &OutboundFailure) -> bool {
        tracing::debug!("chunk request failed: {error}");
        let Some(d) = self.download.as_mut() else {
            return false;
        };
        match pending {
            PendingChunk::Manifest(..) => {
                d.manifest_pending = false;
                false
            }
            PendingChunk::Have(_, peer) => {
                d.on_have(peer, None);
                true
            }
            PendingChunk::Chunk(_, peer, i) => {
                d.chunk_failed(peer, i, error);
                true
            }
        }
    }

    /// Ends the running download, if any, with `err`.
    pub(super) fn fail(&mut self, err: P2pError) {
        if let Some(mut d) = self.download.take() {
            d.fail(err);
        }
    }
}
