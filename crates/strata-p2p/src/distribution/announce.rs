//! File announcements: the layer's own gossip topic, on which peers say which
//! files (roots) they hold or fetch and where they listen, so downloaders of
//! the same file find each other.

use strata_primitives::protocol::TopicSpec;

use crate::codec::{DecodeError, Reader};
use crate::distribution::manifest::FileRoot;

/// The announcement topic. Its tag and name are the layer's: an application
/// registering either is refused at start.
pub(crate) const ANNOUNCEMENTS: TopicSpec = TopicSpec {
    tag: 4,
    name: "/strata/distribution/1",
    max_payload: 64 * 1024,
};

/// Addresses per announcement, and the longest one carried.
const MAX_ADDRS: usize = 16;
const MAX_ADDR_LEN: usize = 512;

/// Announcement payload: `root [32] | count u8 | (len u16 | utf8 addr)*`.
/// Addresses beyond the first 16 or longer than 512 bytes are left out.
pub(crate) fn encode_announcement(root: &FileRoot, addrs: &[String]) -> Vec<u8> {
    let mut out = root.0.to_vec();
    let addrs: Vec<&String> = addrs
        .iter()
        .filter(|a| a.len() <= MAX_ADDR_LEN)
        .take(MAX_ADDRS)
        .collect();
    out.push(addrs.len() as u8);
    for a in addrs {
        out.extend_from_slice(&(a.len() as u16).to_be_bytes());
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// Parse an announcement; never panics.
pub(crate) fn decode_announcement(bytes: &[u8]) -> Result<(FileRoot, Vec<String>), DecodeError> {
    let mut r = Reader::new(bytes);
    let root = FileRoot(r.array::<32>()?);
    let n = r.u8()?;
    if usize::from(n) > MAX_ADDRS {
        return Err(DecodeError::TooLarge {
            len: n.into(),
            limit: MAX_ADDRS,
        });
    }
    let mut addrs = Vec::new();
    for _ in 0..n {
        let len = r.u16()? as usize;
        if len > MAX_ADDR_LEN {
            return Err(DecodeError::TooLarge {
                len,
                limit: MAX_ADDR_LEN,
            });
        }
        let s = std::str::from_utf8(r.take(len)?)
            .map_err(|_| DecodeError::Invalid("address not utf-8"))?;
        addrs.push(s.to_string());
    }
    r.finish()?;
    Ok((root, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_largest_announcement_fits_the_topic() {
        let addrs = vec!["a".repeat(MAX_ADDR_LEN); MAX_ADDRS + 4];
        let enc = encode_announcement(&FileRoot([1; 32]), &addrs);
        assert!(enc.len() <= ANNOUNCEMENTS.max_payload);
        assert_eq!(decode_announcement(&enc).unwrap().1.len(), MAX_ADDRS);
    }

    proptest! {
        #[test]
        fn announcement_roundtrip(root in any::<[u8; 32]>(), addrs in proptest::collection::vec("[a-z0-9/.]{0,40}", 0..16)) {
            let enc = encode_announcement(&FileRoot(root), &addrs);
            let (r, a) = decode_announcement(&enc).unwrap();
            prop_assert_eq!(r, FileRoot(root));
            prop_assert_eq!(a, addrs);
        }

        #[test]
        fn announcement_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_announcement(&bytes);
        }
    }
}
