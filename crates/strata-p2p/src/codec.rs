//! Length-prefixed, size-limited framing for request-response protocols.
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes. The
//! length is checked against the protocol's limit *before* anything is
//! allocated or read, so a peer announcing a 4 GiB frame costs us four bytes.
//! Decoding failures surface as `io::ErrorKind::InvalidData`, which the event
//! loop treats as misbehaviour (penalty and disconnect); nothing from such a
//! stream reaches the application.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the format needs.
    #[error("message truncated")]
    Truncated,
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// An unknown tag or version.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A field is larger than its limit.
    #[error("field of {len} bytes exceeds limit {limit}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Allowed maximum.
        limit: usize,
    },
    /// A field has a value the format does not allow.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// A message type with a binary encoding. Decoders must never panic on
/// arbitrary input (checked by proptests).
pub trait WireMessage: Sized + Send + 'static {
    /// Serialise.
    fn encode(&self) -> Vec<u8>;
    /// Parse, refusing anything malformed.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl WireMessage for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

/// A request as read off the wire: decoded, or evidence that the peer sent
/// something malformed. libp2p's request-response drops failed *inbound*
/// reads silently, without naming the peer, so the codec reports them as a
/// value instead; the event loop then penalises the sender and nothing of the
/// message reaches the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<T> {
    /// A well-formed message.
    Valid(T),
    /// The peer sent an oversized or undecodable frame.
    Malformed(DecodeError),
}

/// Read one length-prefixed frame of at most `limit` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            DecodeError::TooLarge { len, limit },
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Write one length-prefixed frame; refuses (locally) frames over `limit`.
pub async fn write_frame<T: AsyncWrite + Unpin>(
    io: &mut T,
    bytes: &[u8],
    limit: usize,
) -> io::Result<()> {
    if bytes.len() > limit || bytes.len() > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            DecodeError::TooLarge {
                len: bytes.len(),
                limit,
            },
        ));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

/// The [`DecodeError`] inside an `InvalidData` I/O error from this codec.
pub(crate) fn as_decode_error(e: &io::Error) -> Option<DecodeError> {
    if e.kind() != io::ErrorKind::InvalidData {
        return None;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DecodeError>())
        .cloned()
}

fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A request-response codec for one protocol: framed, size-limited, typed.
pub struct FrameCodec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.max_request, self.max_response)
    }
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    /// A codec with the given per-direction limits in bytes.
    pub fn new(max_request: usize, max_response: usize) -> Self {
        FrameCodec {
            max_request,
            max_response,
            _types: PhantomData,
        }
    }
}

impl<Req: WireMessage, Resp: WireMessage> libp2p::request_response::Codec
    for FrameCodec<Req, Resp>
{
    type Protocol = StreamProtocol;
    type Request = Incoming<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Incoming<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = match read_frame(io, self.max_request).await {
            Ok(f) => f,
            Err(e) => {
                return match as_decode_error(&e) {
                    Some(d) => Ok(Incoming::Malformed(d)),
                    None => Err(e),
                }
            }
        };
        Ok(match Req::decode(&frame) {
            Ok(r) => Incoming::Valid(r),
            Err(d) => Incoming::Malformed(d),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.max_response).await?;
        Resp::decode(&frame).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Incoming<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Incoming::Valid(req) => write_frame(io, &req.encode(), self.max_request).await,
            Incoming::Malformed(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode(), self.max_response).await
    }
}

/// Helper for hand-written decoders: a cursor that never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// A u32-length-prefixed byte string of at most `limit` bytes.
    pub(crate) fn bytes(&mut self, limit: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > limit {
            return Err(DecodeError::TooLarge { len, limit });
        }
        self.take(len)
    }
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/strata/test/1")
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::new(1024, 1024);
        // Announces 4 GiB, sends 4 bytes: must fail fast, not allocate.
        let mut io = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
        let got = block_on(codec.read_request(&proto(), &mut io)).unwrap();
        assert!(matches!(
            got,
            Incoming::Malformed(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::new(1024, 1024);
        let mut io = futures::io::Cursor::new(vec![0, 0, 0, 10, 1, 2]);
        assert!(block_on(codec.read_response(&proto(), &mut io)).is_err());
    }

    #[test]
    fn writer_refuses_oversized() {
        let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::new(4, 4);
        let mut io = futures::io::Cursor::new(Vec::new());
        assert!(
            block_on(codec.write_request(&proto(), &mut io, Incoming::Valid(vec![0; 5]))).is_err()
        );
    }

    proptest! {
        #[test]
        fn frame_roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..4096), limit in 0usize..5000) {
            let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::new(limit, limit);
            let mut io = futures::io::Cursor::new(Vec::new());
            let wrote = block_on(codec.write_request(&proto(), &mut io, Incoming::Valid(payload.clone())));
            prop_assert_eq!(wrote.is_ok(), payload.len() <= limit);
            if wrote.is_ok() {
                let mut rd = futures::io::Cursor::new(io.into_inner());
                let back = block_on(codec.read_request(&proto(), &mut rd)).unwrap();
                prop_assert_eq!(back, Incoming::Valid(payload));
            }
        }

        #[test]
        fn frame_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::new(1000, 1000);
            let mut io = futures::io::Cursor::new(bytes.clone());
            if let Ok(Incoming::Valid(v)) = block_on(codec.read_request(&proto(), &mut io)) {
                prop_assert!(v.len() <= 1000);
                prop_assert_eq!(&v[..], &bytes[4..4 + v.len()]);
            }
        }
    }
}
