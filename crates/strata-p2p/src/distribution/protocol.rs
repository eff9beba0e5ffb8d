//! The chunk-exchange request-response protocol (`/strata/chunks/1`).

use std::time::Duration;

use libp2p::request_response::{self, ProtocolSupport};
use libp2p::StreamProtocol;

use crate::codec::{DecodeError, FrameCodec, Reader, WireMessage};
use crate::distribution::manifest::{FileRoot, MAX_CHUNKS, MAX_CHUNK_SIZE};

/// Protocol name of the chunk exchange.
pub(crate) const CHUNK_PROTOCOL: &str = "/strata/chunks/1";

/// The chunk exchange's request-response behaviour.
pub(crate) type ChunkRr = request_response::Behaviour<FrameCodec<ChunkRequest, ChunkResponse>>;

/// The chunk exchange, with `timeout` per request. Many streams may be open
/// at once: a download keeps several chunk requests in flight per peer while
/// serving others.
pub(crate) fn behaviour(timeout: Duration) -> ChunkRr {
    request_response::Behaviour::with_codec(
        FrameCodec::new(MAX_REQUEST, MAX_RESPONSE),
        [(StreamProtocol::new(CHUNK_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(256),
    )
}

/// Requests a peer may make about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRequest {
    /// The manifest of `root`.
    Manifest(FileRoot),
    /// Which chunks of `root` the peer holds and is fetching.
    Have(FileRoot),
    /// The bytes of one chunk.
    Chunk(FileRoot, u32),
}

/// Answers to [`ChunkRequest`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkResponse {
    /// The encoded manifest.
    Manifest(Vec<u8>),
    /// Bitmaps (bit i = chunk i, LSB first) of chunks held and being fetched.
    Have {
        /// Chunks the peer holds (verified).
        have: Vec<u8>,
        /// Chunks the peer is fetching right now (will soon hold).
        fetching: Vec<u8>,
    },
    /// The chunk bytes.
    Chunk(Vec<u8>),
    /// The peer does not have what was asked for.
    NotFound,
}

/// Largest encoded request.
pub const MAX_REQUEST: usize = 64;
/// Largest bitmap: one bit per chunk.
const MAX_BITMAP: usize = MAX_CHUNKS / 8;
/// Largest encoded response: a manifest of MAX_CHUNKS hashes plus a small header.
pub const MAX_RESPONSE: usize = 32 * MAX_CHUNKS + 64;

impl WireMessage for ChunkRequest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37);
        match self {
            ChunkRequest::Manifest(r) => {
                out.push(1);
                out.extend_from_slice(&r.0);
            }
            ChunkRequest::Have(r) => {
                out.push(2);
                out.extend_from_slice(&r.0);
            }
            ChunkRequest::Chunk(r, i) => {
                out.push(3);
                out.extend_from_slice(&r.0);
                out.extend_from_slice(&i.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8()?;
        let root = FileRoot(r.array::<32>()?);
        let req = match tag {
            1 => ChunkRequest::Manifest(root),
            2 => ChunkRequest::Have(root),
            3 => {
                let index = r.u32()?;
                if index as usize >= MAX_CHUNKS {
                    return Err(DecodeError::Invalid("chunk index out of range"));
                }
                ChunkRequest::Chunk(root, index)
            }
            t => return Err(DecodeError::UnknownTag(t)),
        };
        r.finish()?;
        Ok(req)
    }
}

impl WireMessage for ChunkResponse {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        match self {
            ChunkResponse::Manifest(m) => {
                out.push(1);
                put(&mut out, m);
            }
            ChunkResponse::Have { have, fetching } => {
                out.push(2);
                put(&mut out, have);
                put(&mut out, fetching);
            }
            ChunkResponse::Chunk(c) => {
                out.reserve(c.len() + 5);
                out.push(3);
                put(&mut out, c);
            }
            ChunkResponse::NotFound => out.push(4),
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let resp = match r.u8()? {
            1 => ChunkResponse::Manifest(r.bytes(MAX_RESPONSE)?.to_vec()),
            2 => ChunkResponse::Have {
                have: r.bytes(MAX_BITMAP)?.to_vec(),
                fetching: r.bytes(MAX_BITMAP)?.to_vec(),
            },
            3 => ChunkResponse::Chunk(r.bytes(MAX_CHUNK_SIZE as usize)?.to_vec()),
            4 => ChunkResponse::NotFound,
            t => return Err(DecodeError::UnknownTag(t)),
        };
        r.finish()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_request() -> impl Strategy<Value = ChunkRequest> {
        let root = any::<[u8; 32]>().prop_map(FileRoot);
        prop_oneof![
            root.clone().prop_map(ChunkRequest::Manifest),
            root.clone().prop_map(ChunkRequest::Have),
            (root, 0u32..MAX_CHUNKS as u32).prop_map(|(r, i)| ChunkRequest::Chunk(r, i)),
        ]
    }

    fn arb_response() -> impl Strategy<Value = ChunkResponse> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            bytes.clone().prop_map(ChunkResponse::Manifest),
            (bytes.clone(), bytes.clone())
                .prop_map(|(have, fetching)| ChunkResponse::Have { have, fetching }),
            bytes.prop_map(ChunkResponse::Chunk),
            Just(ChunkResponse::NotFound),
        ]
    }

    proptest! {
        #[test]
        fn request_roundtrip(req in arb_request()) {
            prop_assert_eq!(ChunkRequest::decode(&req.encode()).unwrap(), req);
        }

        #[test]
        fn response_roundtrip(resp in arb_response()) {
            prop_assert_eq!(ChunkResponse::decode(&resp.encode()).unwrap(), resp);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ChunkRequest::decode(&bytes);
            let _ = ChunkResponse::decode(&bytes);
        }
    }

    #[test]
    fn oversized_fields_refused() {
        // A Chunk response announcing more than MAX_CHUNK_SIZE bytes.
        let mut b = vec![3u8];
        b.extend_from_slice(&(MAX_CHUNK_SIZE + 1).to_be_bytes());
        assert!(matches!(
            ChunkResponse::decode(&b),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
