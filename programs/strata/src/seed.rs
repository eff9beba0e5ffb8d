//! Drawing a seed from a slot fixed in advance, through the SlotHashes sysvar
//! (the rule itself is `strata_primitives::slot_hashes`, shared with the
//! off-chain code that recomputes every draw).

use anchor_lang::prelude::*;
use strata_primitives::slot_hashes::{self, SeedDraw};

use crate::errors::StrataError;

/// What a draw produced.
pub enum Drawn {
    /// The seed slot's hash.
    Ready {
        /// The slot whose hash it is (the first at or after the seed slot).
        slot: u64,
        /// Its hash.
        hash: [u8; 32],
    },
    /// Nobody drew the seed while its slot was in SlotHashes; the draw moves
    /// to this later slot, which nobody can know the hash of yet either.
    Rearmed {
        /// The new seed slot.
        seed_slot: u64,
    },
}

/// Draws the seed of `seed_slot` from the SlotHashes account. Refuses with
/// `SeedNotReady` while the slot has not been reached.
pub fn draw(slot_hashes: &AccountInfo, seed_slot: u64, delay: u16) -> Result<Drawn> {
    let data = slot_hashes.try_borrow_data()?;
    match slot_hashes::draw(&data, seed_slot)
        .map_err(|_| error!(StrataError::SlotHashesUnavailable))?
    {
        SeedDraw::Pending => err!(StrataError::SeedNotReady),
        SeedDraw::Ready { slot, hash } => Ok(Drawn::Ready { slot, hash }),
        SeedDraw::Expired => Ok(Drawn::Rearmed {
            seed_slot: Clock::get()?
                .slot
                .checked_add(u64::from(delay))
                .ok_or(StrataError::MathOverflow)?,
        }),
    }
}
