//! Verified chunked distribution of large files (model weights, policy
//! updates): content-addressed manifests, on-disk chunk stores with resume,
//! rarest-first scheduling, super-seeding, the chunk exchange protocol and
//! file announcements.
//!
//! [`Distribution`] (`exchange.rs`) is the state machine the event loop
//! drives. Below it, each depending only on those after it: `file.rs` (what
//! a message means for one file), `download.rs` (one download's
//! bookkeeping), `upload.rs` (paced sending), and the pieces that know
//! nothing of the swarm: `announce.rs`, `scheduler.rs`, `super_seed.rs`,
//! `store.rs`, `protocol.rs`, `manifest.rs`.

mod announce;
mod download;
mod exchange;
mod file;
mod manifest;
mod protocol;
mod scheduler;
mod store;
mod super_seed;
mod upload;

pub(crate) use announce::ANNOUNCEMENTS;
pub use download::{DownloadOptions, DownloadReport};
pub(crate) use exchange::Distribution;
pub(crate) use file::Progress;
pub(crate) use manifest::DEFAULT_CHUNK_SIZE;
pub use manifest::{FileRoot, Manifest, ManifestError};
pub(crate) use protocol::{behaviour as chunk_behaviour, ChunkRr, CHUNK_PROTOCOL};
pub(crate) use store::{ChunkStore, StoreError};

impl From<StoreError> for crate::error::P2pError {
    fn from(e: StoreError) -> Self {
        crate::error::P2pError::Store(e.to_string())
    }
}
