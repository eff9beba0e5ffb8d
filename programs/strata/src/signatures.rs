//! Reads the ed25519 signatures that the runtime's signature-verify precompile
//! checked in the instruction just before this one. The precompile fails the
//! whole transaction on a bad signature, so what we read here is verified; we
//! only have to make sure it signed what we expect, by whom we expect.

use anchor_lang::prelude::*;
use solana_instructions_sysvar::{load_current_index_checked, load_instruction_at_checked};

use crate::errors::StrataError;

/// Size of one offsets record in the precompile's data.
const OFFSETS_LEN: usize = 14;
/// Header: signature count and a padding byte.
const HEADER_LEN: usize = 2;
/// "This instruction" in the precompile's instruction-index fields.
const THIS_INSTRUCTION: u16 = u16::MAX;

/// One (public key, message) pair the precompile verified (the signature
/// itself stays in the precompile instruction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMessage {
    /// The signer.
    pub signer: Pubkey,
    /// The signed bytes.
    pub message: Vec<u8>,
}

/// Returns the pairs verified by the ed25519 instruction immediately before
/// the current one. Offsets that point into other instructions are refused so
/// that each signature's data is exactly what we read.
pub fn verified_before_current(instructions_sysvar: &AccountInfo) -> Result<Vec<VerifiedMessage>> {
    require_keys_eq!(
        *instructions_sysvar.key,
        solana_sdk_ids::sysvar::instructions::ID,
        StrataError::InvalidAccount
    );
    let current = load_current_index_checked(instructions_sysvar)
        .map_err(|_| error!(StrataError::MissingSignatures))?;
    let previous = current
        .checked_sub(1)
        .ok_or(error!(StrataError::MissingSignatures))?;
    let ix = load_instruction_at_checked(usize::from(previous), instructions_sysvar)
        .map_err(|_| error!(StrataError::MissingSignatures))?;
    require_keys_eq!(
        ix.program_id,
        solana_sdk_ids::ed25519_program::ID,
        StrataError::MissingSignatures
    );
    parse_precompile_data(&ix.data)
}

/// Parses the precompile's instruction data.
pub fn parse_precompile_data(data: &[u8]) -> Result<Vec<VerifiedMessage>> {
    let count = usize::from(
        *data
            .first()
            .ok_or(error!(StrataError::MalformedSignatures))?,
    );
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let start = HEADER_LEN + i * OFFSETS_LEN;
        let rec = data
            .get(start..start + OFFSETS_LEN)
            .ok_or(error!(StrataError::MalformedSignatures))?;
        let field = |k: usize| u16::from_le_bytes([rec[2 * k], rec[2 * k + 1]]);
        let (sig_ix, key_off, key_ix, msg_off, msg_len, msg_ix) =
            (field(1), field(2), field(3), field(4), field(5), field(6));
        require!(
            sig_ix == THIS_INSTRUCTION && key_ix == THIS_INSTRUCTION && msg_ix == THIS_INSTRUCTION,
            StrataError::MalformedSignatures
        );
        let key = slice(data, key_off, 32)?;
        let message = slice(data, msg_off, msg_len)?;
        out.push(VerifiedMessage {
            signer: Pubkey::try_from(key).map_err(|_| error!(StrataError::MalformedSignatures))?,
            message: message.to_vec(),
        });
    }
    Ok(out)
}

fn slice(data: &[u8], offset: u16, len: u16) -> Result<&[u8]> {
    let start = usize::from(offset);
    data.get(start..start + usize::from(len))
        .ok_or(error!(StrataError::MalformedSignatures))
}
