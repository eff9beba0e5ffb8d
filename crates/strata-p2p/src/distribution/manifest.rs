//! File manifests and their blake3 Merkle root.
//!
//! A file is cut into fixed-size chunks; each chunk's blake3 hash (keyed by a
//! domain string and the chunk index, so chunks cannot be swapped) is a leaf of
//! a binary Merkle tree. The file root commits to the tree root, the file size
//! and the chunk size. A downloader first fetches the manifest (all leaf
//! hashes, 32 bytes per chunk), checks it against the root it asked for, and
//! then verifies each chunk on arrival against its leaf: a single bad byte is
//! caught before it is written or served onward.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use strata_primitives::merkle::{self, domains::Chunks};

use crate::codec::{DecodeError, Reader};

/// Default chunk size: big enough to amortise per-request overhead, small
/// enough that a 100 MB file has hundreds of chunks to spread.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// Largest chunk size accepted from the network.
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Most chunks a manifest may list (bounds the manifest to 32 MiB of hashes;
/// 1 Mi chunks of 4 MiB covers 4 TiB).
pub const MAX_CHUNKS: usize = 1 << 20;

const ROOT_CONTEXT: &str = "strata p2p file root v1";

/// The content address of a file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRoot(pub [u8; 32]);

impl fmt::Display for FileRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FileRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileRoot({self})")
    }
}

impl FromStr for FileRoot {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.is_ascii() {
            return Err(DecodeError::Invalid("file root must be 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| DecodeError::Invalid("file root must be 64 hex digits"))?;
        }
        Ok(FileRoot(out))
    }
}

/// Leaf hash of chunk `index` (the shared tree's chunk domain, which binds
/// a chunk to its index).
pub fn chunk_hash(index: u32, data: &[u8]) -> [u8; 32] {
    Chunks::leaf(index, data)
}

/// Everything needed to verify a file chunk by chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// File length in bytes.
    pub size: u64,
    /// Chunk length (the last chunk may be shorter).
    pub chunk_size: u32,
    /// Leaf hash per chunk.
    pub chunk_hashes: Vec<[u8; 32]>,
}

/// Errors building or checking a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading the file failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid parameters or encoding.
    #[error("invalid manifest: {0}")]
    Invalid(#[from] DecodeError),
}

impl Manifest {
    /// Hash a file on disk.
    pub fn from_file(path: &Path, chunk_size: u32) -> Result<Self, ManifestError> {
        let file = std::fs::File::open(path)?;
        Self::from_reader(std::io::BufReader::with_capacity(1 << 20, file), chunk_size)
    }

    /// Hash any reader.
    pub fn from_reader(mut r: impl Read, chunk_size: u32) -> Result<Self, ManifestError> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(DecodeError::Invalid("chunk size out of range").into());
        }
        let mut hashes = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; chunk_size as usize];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = r.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            if hashes.len() >= MAX_CHUNKS {
                return Err(DecodeError::Invalid("too many chunks").into());
            }
            hashes.push(chunk_hash(hashes.len() as u32, &buf[..filled]));
            size += filled as u64;
            if filled < buf.len() {
                break;
            }
        }
        Ok(Manifest {
            size,
            chunk_size,
            chunk_hashes: hashes,
        })
    }

    /// The file's content address.
    pub fn root(&self) -> FileRoot {
        let mut h = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
        h.update(&self.size.to_be_bytes());
        h.update(&self.chunk_size.to_be_bytes());
        h.update(&merkle::root::<Chunks>(&self.chunk_hashes));
        FileRoot(*h.finalize().as_bytes())
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_hashes.len() as u32
    }

    /// Byte length of chunk `index`.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = u64::from(index) * u64::from(self.chunk_size);
        self.size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size)) as usize
    }

    /// Byte offset of chunk `index`.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Whether `data` is exactly chunk `index` of this file.
    pub fn verify_chunk(&self, index: u32, data: &[u8]) -> bool {
        match self.chunk_hashes.get(index as usize) {
            Some(expected) => {
                data.len() == self.chunk_len(index) && chunk_hash(index, data) == *expected
            }
            None => false,
        }
    }

    /// Serialise: `size u64 | chunk_size u32 | count u32 | hashes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 32 * self.chunk_hashes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&(self.chunk_hashes.len() as u32).to_be_bytes());
        for h in &self.chunk_hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Parse and check internal consistency (count matches size/chunk size).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let size = r.u64()?;
        let chunk_size = r.u32()?;
        let count = r.u32()? as usize;
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(DecodeError::Invalid("chunk size out of range"));
        }
        if count > MAX_CHUNKS {
            return Err(DecodeError::TooLarge {
                len: count,
                limit: MAX_CHUNKS,
            });
        }
        let expected = size.div_ceil(u64::from(chunk_size));
        if expected != count as u64 {
            return Err(DecodeError::Invalid("chunk count does not match size"));
        }
        let mut chunk_hashes = Vec::with_capacity(count);
        for _ in 0..count {
            chunk_hashes.push(r.array::<32>()?);
        }
        r.finish()?;
        Ok(Manifest {
            size,
            chunk_size,
            chunk_hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunks_verify_and_tampering_is_caught() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let m = Manifest::from_reader(&data[..], 1000).unwrap();
        assert_eq!(m.chunk_count(), 10);
        for i in 0..10u32 {
            let c = &data[i as usize * 1000..(i as usize + 1) * 1000];
            assert!(m.verify_chunk(i, c));
            assert!(!m.verify_chunk((i + 1) % 10, c), "chunk bound to its index");
            let mut bad = c.to_vec();
            bad[3] ^= 0x40;
            assert!(!m.verify_chunk(i, &bad));
        }
        assert!(!m.verify_chunk(10, &data[..1000]));
    }

    #[test]
    fn root_commits_to_size_and_content() {
        let a = Manifest::from_reader(&b"hello world"[..], 4).unwrap();
        let b = Manifest::from_reader(&b"hello worle"[..], 4).unwrap();
        let c = Manifest::from_reader(&b"hello world"[..], 5).unwrap();
        assert_ne!(a.root(), b.root());
        assert_ne!(a.root(), c.root());
        assert_eq!(a.root().to_string().parse::<FileRoot>().unwrap(), a.root());
        assert_eq!(a.chunk_len(2), 3);
    }

    /// The same file root as before the chunk tree moved to
    /// `strata-primitives` (commit f205cd1): manifests on the wire and file
    /// roots people share keep their meaning.
    #[test]
    fn file_root_bytes_are_pinned() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let m = Manifest::from_reader(&data[..], 1000).unwrap();
        assert_eq!(
            m.root().to_string(),
            "aaf0392e6ea0e53097dc0c50e4d77a1cbe531651402e52c57fd78bb5cc432f81"
        );
    }

    #[test]
    fn empty_file() {
        let m = Manifest::from_reader(&b""[..], 4).unwrap();
        assert_eq!(m.chunk_count(), 0);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    proptest! {
        #[test]
        fn manifest_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..3000), cs in 1u32..700) {
            let m = Manifest::from_reader(&data[..], cs).unwrap();
            let back = Manifest::decode(&m.encode()).unwrap();
            prop_assert_eq!(back.root(), m.root());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn manifest_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn file_root_parse_never_panics(s in ".{0,70}") {
            let _ = s.parse::<FileRoot>();
        }
    }
}
