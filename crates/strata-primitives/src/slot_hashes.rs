//! Reading a seed from the SlotHashes sysvar: the hash of the first slot at
//! or after a slot fixed in advance.
//!
//! Strata draws its randomness (which receipts are audited, which verifiers
//! judge a challenge) from the hash of a slot that did not exist yet when the
//! thing being judged was committed. The sysvar holds the most recent 512
//! (slot, hash) entries, newest first, and has no entry for a skipped slot, so
//! the seed of slot `s` is defined as the hash of the oldest entry whose slot
//! is `>= s`. That entry is certain only while the sysvar still shows a slot
//! before `s` (or `s` itself); once the window has moved past, the draw has
//! [`SeedDraw::Expired`] and the caller re-arms it at a later slot.

/// Bytes of the sysvar's length prefix.
const COUNT_LEN: usize = 8;
/// Bytes of one (slot u64, hash [32]) entry.
const ENTRY_LEN: usize = 8 + 32;
/// Entries the runtime keeps (a larger count is malformed data).
pub const MAX_ENTRIES: usize = 512;

/// The outcome of reading the seed of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedDraw {
    /// The slot has not been reached (or no block at or after it yet).
    Pending,
    /// The hash of the first slot at or after the seed slot.
    Ready {
        /// The slot whose hash it is.
        slot: u64,
        /// Its hash.
        hash: [u8; 32],
    },
    /// The window of kept slots starts after the seed slot: the first slot at
    /// or after it can no longer be told apart from later ones.
    Expired,
}

/// Why the sysvar's bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedSlotHashes;

impl core::fmt::Display for MalformedSlotHashes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed SlotHashes data")
    }
}

impl std::error::Error for MalformedSlotHashes {}

/// Reads the seed of `seed_slot` from the raw SlotHashes sysvar data
/// (`u64 count`, then `count` entries of `slot u64 LE, hash [32]`, newest first).
pub fn draw(data: &[u8], seed_slot: u64) -> Result<SeedDraw, MalformedSlotHashes> {
    let count = data
        .get(..COUNT_LEN)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(MalformedSlotHashes)?;
    let count = usize::try_from(count).map_err(|_| MalformedSlotHashes)?;
    if count > MAX_ENTRIES || data.len() < COUNT_LEN + count * ENTRY_LEN {
        return Err(MalformedSlotHashes);
    }
    let entry = |i: usize| {
        let at = COUNT_LEN + i * ENTRY_LEN;
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&data[at..at + 8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&data[at + 8..at + ENTRY_LEN]);
        (u64::from_le_bytes(slot), hash)
    };
    // Newest first: walk from the oldest end to find the first slot >= seed_slot.
    let mut found = None;
    let mut saw_earlier = false;
    for i in (0..count).rev() {
        let (slot, hash) = entry(i);
        if slot < seed_slot {
            saw_earlier = true;
            continue;
        }
        found = Some((slot, hash));
        break;
    }
    Ok(match found {
        None => SeedDraw::Pending,
        Some((slot, hash)) if saw_earlier || slot == seed_slot => SeedDraw::Ready { slot, hash },
        Some(_) => SeedDraw::Expired,
    })
}

/// Encodes entries (newest first) the way the runtime lays out the sysvar;
/// for tests and local tools that build SlotHashes themselves.
pub fn encode(entries: &[(u64, [u8; 32])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(COUNT_LEN + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (slot, hash) in entries {
        out.extend_from_slice(&slot.to_le_bytes());
        out.extend_from_slice(hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(newest: u64, oldest: u64, skip: &[u64]) -> Vec<u8> {
        let entries: Vec<_> = (oldest..=newest)
            .rev()
            .filter(|s| !skip.contains(s))
            .map(|s| (s, [s as u8; 32]))
            .collect();
        encode(&entries)
    }

    #[test]
    fn first_slot_at_or_after_the_seed_slot() {
        let w = window(120, 100, &[110, 111]);
        assert_eq!(
            draw(&w, 105),
            Ok(SeedDraw::Ready {
                slot: 105,
                hash: [105; 32]
            })
        );
        assert_eq!(
            draw(&w, 110),
            Ok(SeedDraw::Ready {
                slot: 112,
                hash: [112; 32]
            }),
            "skipped slots take the next block's hash"
        );
        assert_eq!(draw(&w, 121), Ok(SeedDraw::Pending));
        assert_eq!(
            draw(&w, 100),
            Ok(SeedDraw::Ready {
                slot: 100,
                hash: [100; 32]
            })
        );
        assert_eq!(
            draw(&w, 99),
            Ok(SeedDraw::Expired),
            "slot 99 may have had its own hash"
        );
    }

    #[test]
    fn malformed_data_is_refused() {
        assert_eq!(draw(&[], 1), Err(MalformedSlotHashes));
        assert_eq!(draw(&5u64.to_le_bytes(), 1), Err(MalformedSlotHashes));
        assert_eq!(draw(&u64::MAX.to_le_bytes(), 1), Err(MalformedSlotHashes));
        assert_eq!(draw(&encode(&[]), 1), Ok(SeedDraw::Pending));
    }

    proptest! {
        #[test]
        fn draw_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), slot in any::<u64>()) {
            let _ = draw(&data, slot);
        }
    }
}
