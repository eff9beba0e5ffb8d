//! On-disk chunk storage with resume.
//!
//! A download writes straight into the destination file at each chunk's
//! offset, next to a sidecar `<file>.strata-manifest` holding the manifest.
//! Resuming needs no trusted state: on open, every chunk already on disk is
//! re-hashed against the manifest, so a chunk survives a crash only if it is
//! provably correct. When the last chunk arrives the sidecar is removed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::distribution::manifest::{FileRoot, Manifest, ManifestError};

/// Errors from the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Filesystem error.
    #[error("io error on {path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Underlying error.
        source: io::Error,
    },
    /// Manifest problem.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The sidecar belongs to another file.
    #[error("{0} holds a partial download of another file")]
    Mismatch(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One file's chunks on disk, shared between the event loop (writes) and
/// serving tasks (reads).
#[derive(Debug)]
pub struct ChunkStore {
    manifest: Manifest,
    root: FileRoot,
    path: PathBuf,
    file: File,
    have: Mutex<Vec<u8>>,
}

impl ChunkStore {
    /// Sidecar path for a destination file.
    pub fn sidecar(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(".strata-manifest");
        PathBuf::from(s)
    }

    /// Share a complete local file (hashes it once).
    pub fn seed(path: &Path, chunk_size: u32) -> Result<Self, StoreError> {
        let manifest = Manifest::from_file(path, chunk_size)?;
        let file = File::open(path).map_err(io_err(path))?;
        let n = manifest.chunk_count() as usize;
        let mut have = vec![0u8; n.div_ceil(8)];
        for i in 0..n {
            have[i / 8] |= 1 << (i % 8);
        }
        Ok(ChunkStore {
            root: manifest.root(),
            manifest,
            path: path.to_path_buf(),
            file,
            have: Mutex::new(have),
        })
    }

    /// Start or resume downloading `manifest` into `path`.
    pub fn open_download(path: &Path, manifest: Manifest) -> Result<Self, StoreError> {
        let root = manifest.root();
        let sidecar = Self::sidecar(path);
        if let Ok(bytes) = std::fs::read(&sidecar) {
            if let Ok(old) = Manifest::decode(&bytes) {
                if old.root() != root {
                    return Err(StoreError::Mismatch(path.display().to_string()));
                }
            }
        }
        std::fs::write(&sidecar, manifest.encode()).map_err(io_err(&sidecar))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        let existing = file.metadata().map_err(io_err(path))?.len();
        file.set_len(manifest.size).map_err(io_err(path))?;
        let n = manifest.chunk_count() as usize;
        let mut have = vec![0u8; n.div_ceil(8)];
        if existing > 0 {
            // Resume: keep whatever on disk is provably right.
            let mut buf = vec![0u8; manifest.chunk_size as usize];
            for i in 0..manifest.chunk_count() {
                let len = manifest.chunk_len(i);
                if manifest.chunk_offset(i) + len as u64 > existing {
                    break;
                }
                let b = &mut buf[..len];
                if file.read_exact_at(b, manifest.chunk_offset(i)).is_ok()
                    && manifest.verify_chunk(i, b)
                {
                    have[i as usize / 8] |= 1 << (i % 8);
                }
            }
        }
        let store = ChunkStore {
            manifest,
            root,
            path: path.to_path_buf(),
            file,
            have: Mutex::new(have),
        };
        store.finish_if_complete();
        Ok(store)
    }

    /// Resume from the sidecar alone (the manifest need not be fetched again).
    pub fn resume(path: &Path) -> Result<Option<Self>, StoreError> {
        let sidecar = Self::sidecar(path);
        match std::fs::read(&sidecar) {
            Ok(bytes) => {
                let manifest = Manifest::decode(&bytes).map_err(ManifestError::from)?;
                Ok(Some(Self::open_download(path, manifest)?))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&sidecar)(e)),
        }
    }

    /// The file's root.
    pub fn root(&self) -> FileRoot {
        self.root
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn bits(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means another thread panicked mid-update of a
        // bitmap; the bits themselves are still meaningful.
        self.have.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether chunk `i` is held.
    pub fn has(&self, i: u32) -> bool {
        bit(&self.bits(), i)
    }

    /// Bitmap of held chunks.
    pub fn have_bitmap(&self) -> Vec<u8> {
        self.bits().clone()
    }

    /// Number of chunks held.
    pub fn have_count(&self) -> u32 {
        self.bits().iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.have_count() == self.manifest.chunk_count()
    }

    /// Read a held chunk.
    pub fn read_chunk(&self, i: u32) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.has(i) {
            return Ok(None);
        }
        let mut buf = vec![0u8; self.manifest.chunk_len(i)];
        self.file
            .read_exact_at(&mut buf, self.manifest.chunk_offset(i))
            .map_err(io_err(&self.path))?;
        Ok(Some(buf))
    }

    /// Verify and store chunk `i`. Returns `Ok(false)` (and writes nothing)
    /// if the data does not match the manifest.
    pub fn write_chunk(&self, i: u32, data: &[u8]) -> Result<bool, StoreError> {
        if !self.manifest.verify_chunk(i, data) {
            return Ok(false);
        }
        if self.has(i) {
            return Ok(true);
        }
        self.file
            .write_all_at(data, self.manifest.chunk_offset(i))
            .map_err(io_err(&self.path))?;
        self.bits()[i as usize / 8] |= 1 << (i % 8);
        self.finish_if_complete();
        Ok(true)
    }

    fn finish_if_complete(&self) {
        if self.is_complete() {
            // Data must be durable before the sidecar (the resume marker) goes.
            let _ = self.file.sync_data();
            let _ = std::fs::remove_file(Self::sidecar(&self.path));
        }
    }
}

/// Bit `i` of an LSB-first bitmap (false when out of range).
pub fn bit(map: &[u8], i: u32) -> bool {
    map.get(i as usize / 8)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_resume_and_reject_bad_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let seed = ChunkStore::seed(&src, 4096).unwrap();
        assert!(seed.is_complete());
        let manifest = seed.manifest().clone();
        let n = manifest.chunk_count();

        let dst = dir.path().join("dst.bin");
        {
            let d = ChunkStore::open_download(&dst, manifest.clone()).unwrap();
            let mut bad = seed.read_chunk(0).unwrap().unwrap();
            bad[0] ^= 1;
            assert!(!d.write_chunk(0, &bad).unwrap());
            assert!(!d.has(0));
            for i in (0..n).step_by(2) {
                assert!(d
                    .write_chunk(i, &seed.read_chunk(i).unwrap().unwrap())
                    .unwrap());
            }
            assert!(!d.is_complete());
        } // "crash"
        let d = ChunkStore::resume(&dst).unwrap().expect("sidecar present");
        assert_eq!(d.have_count(), n.div_ceil(2));
        for i in (1..n).step_by(2) {
            assert!(d
                .write_chunk(i, &seed.read_chunk(i).unwrap().unwrap())
                .unwrap());
        }
        assert!(d.is_complete());
        assert!(!ChunkStore::sidecar(&dst).exists());
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }
}
