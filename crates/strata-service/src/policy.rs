//! Publishing a policy version, the trainer's half of policy updates
//! relayed peer to peer: seed the adapter file through the p2p layer's
//! chunked distribution and announce it, signed by the trainer, on the
//! [`POLICY`] topic. Followers fetch it from the trainer and from each
//! other (the distribution super-seeds), check it against the
//! announcement and keep seeding it, so the trainer's uplink carries
//! about one copy whatever the number of nodes.
//!
//! It knows nothing of the adapter's format: the file is opaque bytes whose
//! SHA-256 is its identity.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strata_chain::Keypair;
use strata_p2p::{P2pError, P2pHandle};
use strata_wire::policy::{PolicyAnnouncement, PolicyUpdate, MAX_ADAPTER_BYTES};
use strata_wire::protocols::POLICY;

use crate::now_ms;

/// Why a version could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The adapter file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty or larger than followers accept.
    #[error("adapter of {0} bytes: followers accept 1 to {MAX_ADAPTER_BYTES}")]
    Size(u64),
    /// Seeding or publishing failed.
    #[error(transparent)]
    P2p(#[from] P2pError),
}

/// Publishes version `version` of a policy over the base model whose file
/// hashes to `base_model`: [`prepare_policy`], then [`announce`]. Returns
/// the announcement, which [`announce`] can publish again for nodes that
/// join later (and must, when this fails with a gossip error because no
/// peer is subscribed yet: the file is already seeded).
pub async fn publish_policy(
    p2p: &P2pHandle,
    trainer: &Keypair,
    base_model: [u8; 32],
    version: u64,
    adapter: &Path,
) -> Result<PolicyAnnouncement, PublishError> {
    let announcement = prepare_policy(p2p, trainer, base_model, version, adapter).await?;
    announce(p2p, &announcement).await?;
    tracing::info!(
        version,
        size = announcement.size,
        "policy version published"
    );
    Ok(announcement)
}

/// Hashes the adapter file at `adapter`, seeds it on `p2p` (which must have
/// been started with the [`POLICY`] topic registered, as
/// `strata_wire::protocols::ALL_TOPICS` does), and returns the
/// announcement of it signed by `trainer`, not yet published.
///
/// The file must stay in place, unchanged, as long as it is to be served.
/// Versions must increase: followers ignore a version at or below one they
/// already took from this trainer.
pub async fn prepare_policy(
    p2p: &P2pHandle,
    trainer: &Keypair,
    base_model: [u8; 32],
    version: u64,
    adapter: &Path,
) -> Result<PolicyAnnouncement, PublishError> {
    let path = adapter.to_path_buf();
    let (adapter_sha256, size) = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| P2pError::Transport(e.to_string()))??;
    if size == 0 || size > MAX_ADAPTER_BYTES {
        return Err(PublishError::Size(size));
    }
    let root = p2p.seed_file(adapter).await?;
    Ok(PolicyAnnouncement::sign(
        trainer,
        PolicyUpdate {
            base_model,
            version,
            adapter_sha256,
            file_root: root.0,
            size,
            published_at_ms: now_ms(),
        },
    ))
}

/// Publishes an announcement (again) on the [`POLICY`] topic.
pub async fn announce(p2p: &P2pHandle, announcement: &PolicyAnnouncement) -> Result<(), P2pError> {
    p2p.publish(&POLICY, announcement.encode()).await
}

/// SHA-256 and length of a file, read in 1 MiB blocks.
fn sha256_file(path: &Path) -> Result<([u8; 32], u64), PublishError> {
    use std::io::Read;
    let io = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}
