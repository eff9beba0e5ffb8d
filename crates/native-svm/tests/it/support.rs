//! A tiny native program written against the same solana 3.x crates Anchor 1.2.2 uses
//! (account-info, program-error, instruction, sysvar stubs, solana-invoke for CPI).
//!
//! Instruction data: one tag byte, then arguments.

use {
    solana_account_info_v3::AccountInfo,
    solana_instruction_v3::{AccountMeta, Instruction},
    solana_program_error_v3::{ProgramError, ProgramResult},
    solana_pubkey_v3::Pubkey,
    solana_sysvar_v3::{
        clock::Clock, epoch_schedule::EpochSchedule, program_stubs, rent::Rent, Sysvar,
    },
};

/// Writes runtime sysvars into account 0 (80 bytes, owned by the program):
/// clock.slot, clock.unix_timestamp, rent.minimum_balance(1000), slots_per_epoch,
/// then the first 48 bytes of SlotHashes read with `sol_get_sysvar` (count + first entry).
pub const SYSVARS: u8 = 0;
/// System transfer `amount` (u64) from account 0 (signer) to account 1 via `invoke`.
pub const TRANSFER: u8 = 1;
/// Create the PDA account 1 = ["vault", payer] with `bump`, `space` (u64) via
/// `invoke_signed`, then write `0xAB` into every byte of its data.
pub const CREATE_PDA: u8 = 2;
/// SPL Token transfer of `amount` from vault (0) to dest (1), authority = PDA ["authority"]
/// (account 2) with `bump`, token program = account 3.
pub const TOKEN_TRANSFER: u8 = 3;
/// Resize account 0 to the payload's length and copy the payload in; set return data to
/// `[stack_height, payload_len]`.
pub const WRITE: u8 = 4;
/// Fail with `ProgramError::Custom(code)` (u32).
pub const FAIL: u8 = 5;
/// `sol_log("hello from native")` and `sol_log_data(&[b"event", payload])`.
pub const LOG_DATA: u8 = 6;
/// Move all lamports above rent from program-owned account 0 to signer 1, then
/// system-transfer signer 1's whole (new) balance back to account 0 via CPI.
pub const SWEEP: u8 = 7;
/// CPI into the native program `account 1` with `WRITE payload` on account 0; require the
/// return data to be `(callee, [2, payload_len])`, else `Custom(77)`.
pub const CALL_WRITER: u8 = 8;

fn u64_at(data: &[u8], at: usize) -> Result<u64, ProgramError> {
    data.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ProgramError::InvalidInstructionData)
}

fn account<'a, 'b>(
    accounts: &'a [AccountInfo<'b>],
    i: usize,
) -> Result<&'a AccountInfo<'b>, ProgramError> {
    accounts.get(i).ok_or(ProgramError::NotEnoughAccountKeys)
}

/// The native entrypoint (plain `ProcessInstruction` signature).
pub fn process_instruction(
    program_id: &Pubkey,
    accounts: &[AccountInfo],
    data: &[u8],
) -> ProgramResult {
    let (&tag, args) = data
        .split_first()
        .ok_or(ProgramError::InvalidInstructionData)?;
    match tag {
        SYSVARS => {
            let clock = Clock::get()?;
            let rent = Rent::get()?;
            let schedule = EpochSchedule::get()?;
            let mut slot_hashes = [0u8; 48];
            solana_sysvar_v3::get_sysvar(
                &mut slot_hashes,
                &solana_sysvar_v3::slot_hashes::ID,
                0,
                48,
            )?;
            let out = account(accounts, 0)?;
            let mut d = out.try_borrow_mut_data()?;
            d[0..8].copy_from_slice(&clock.slot.to_le_bytes());
            d[8..16].copy_from_slice(&clock.unix_timestamp.to_le_bytes());
            d[16..24].copy_from_slice(&rent.minimum_balance(1000).to_le_bytes());
            d[24..32].copy_from_slice(&schedule.slots_per_epoch.to_le_bytes());
            d[32..80].copy_from_slice(&slot_hashes);
            Ok(())
        }
        TRANSFER => {
            let (from, to) = (account(accounts, 0)?, account(accounts, 1)?);
            let amount = u64_at(args, 0)?;
            let before = from.lamports();
            let ix = solana_system_interface_v3::instruction::transfer(from.key, to.key, amount);
            solana_invoke::invoke(&ix, accounts)?;
            // The callee's changes must be visible to the caller after the CPI.
            if from.lamports() != before - amount {
                return Err(ProgramError::Custom(99));
            }
            Ok(())
        }
        CREATE_PDA => {
            let (payer, pda) = (account(accounts, 0)?, account(accounts, 1)?);
            let bump = *args.first().ok_or(ProgramError::InvalidInstructionData)?;
            let space = u64_at(args, 1)?;
            let lamports = Rent::get()?.minimum_balance(space as usize);
            let ix = solana_system_interface_v3::instruction::create_account(
                payer.key, pda.key, lamports, space, program_id,
            );
            solana_invoke::invoke_signed(
                &ix,
                accounts,
                &[&[b"vault", payer.key.as_ref(), &[bump]]],
            )?;
            // Owner, length and lamports set by the system program are visible here.
            if pda.owner != program_id || pda.data_len() != space as usize {
                return Err(ProgramError::Custom(98));
            }
            pda.try_borrow_mut_data()?.fill(0xAB);
            Ok(())
        }
        TOKEN_TRANSFER => {
            let (vault, dest, authority, token_program) = (
                account(accounts, 0)?,
                account(accounts, 1)?,
                account(accounts, 2)?,
                account(accounts, 3)?,
            );
            let bump = *args.first().ok_or(ProgramError::InvalidInstructionData)?;
            let amount = u64_at(args, 1)?;
            let ix = spl_token_interface_v3::instruction::transfer(
                token_program.key,
                vault.key,
                dest.key,
                authority.key,
                &[],
                amount,
            )?;
            solana_invoke::invoke_signed(&ix, accounts, &[&[b"authority", &[bump]]])
        }
        WRITE => {
            let out = account(accounts, 0)?;
            out.resize(args.len())?;
            out.try_borrow_mut_data()?.copy_from_slice(args);
            let height = solana_sysvar_v3::program_stubs::sol_get_stack_height() as u8;
            program_stubs::sol_set_return_data(&[height, args.len() as u8]);
            Ok(())
        }
        FAIL => {
            let code = args
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(ProgramError::InvalidInstructionData)?;
            Err(ProgramError::Custom(code))
        }
        LOG_DATA => {
            program_stubs::sol_log("hello from native");
            program_stubs::sol_log_data(&[b"event", args]);
            Ok(())
        }
        SWEEP => {
            let (vault, user) = (account(accounts, 0)?, account(accounts, 1)?);
            let keep = Rent::get()?.minimum_balance(vault.data_len());
            let take = vault.lamports() - keep;
            **vault.try_borrow_mut_lamports()? -= take;
            **user.try_borrow_mut_lamports()? += take;
            // Only succeeds if the runtime sees the balances changed just above.
            let ix = solana_system_interface_v3::instruction::transfer(
                user.key,
                vault.key,
                user.lamports(),
            );
            solana_invoke::invoke(&ix, accounts)
        }
        CALL_WRITER => {
            let (target, callee) = (account(accounts, 0)?, account(accounts, 1)?);
            let mut ix_data = vec![WRITE];
            ix_data.extend_from_slice(args);
            let ix = Instruction::new_with_bytes(
                *callee.key,
                &ix_data,
                vec![AccountMeta::new(*target.key, false)],
            );
            solana_invoke::invoke(&ix, accounts)?;
            // The callee's resize + write are visible in the caller's AccountInfo.
            if &target.try_borrow_data()?[..] != args {
                return Err(ProgramError::Custom(76));
            }
            match program_stubs::sol_get_return_data() {
                Some((who, data)) if who == *callee.key && data == [2, args.len() as u8] => Ok(()),
                _ => Err(ProgramError::Custom(77)),
            }
        }
        _ => Err(ProgramError::InvalidInstructionData),
    }
}
