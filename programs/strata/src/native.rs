//! The program's entrypoint with the plain `ProcessInstruction` signature,
//! for hosts that run it natively inside a real Solana runtime (LiteSVM and
//! the embedded local chain through `native-svm`). Never built for SBF.

use anchor_lang::prelude::*;
use anchor_lang::solana_program::entrypoint::ProgramResult;

/// Calls Anchor's generated `entry`.
pub fn process_instruction(
    program_id: &Pubkey,
    accounts: &[AccountInfo],
    data: &[u8],
) -> ProgramResult {
    // SAFETY: Anchor's `entry` ties the slice's lifetime to the lifetime inside
    // `AccountInfo` ('info), which a plain fn-pointer signature cannot state.
    // Only the lifetime parameters change; the slice and the data it borrows
    // outlive this call, and `entry` keeps nothing past its return.
    let accounts: &[AccountInfo<'_>] = unsafe { core::mem::transmute(accounts) };
    crate::entry(program_id, accounts, data)
}
