//! Run natively compiled Solana programs inside a real LiteSVM runtime.
//!
//! A program built for the host (for example an Anchor 1.2.2 program compiled with plain
//! `cargo test`) exposes an entrypoint with the `ProcessInstruction` signature of the
//! solana 3.x component crates. [`add_native_program`] registers such an entrypoint as a
//! runtime builtin of a [`LiteSVM`] (or of the LiteSVM inside a surfpool `SurfnetSvm`), so
//! real signed transactions reach it through the normal message processor: signature
//! checks, account locking, privilege checks, rent and balance checks all stay with the
//! runtime.
//!
//! What the adapter does for each instruction that reaches a native program:
//! - serializes the instruction's accounts with the runtime's own SBF serializer, hands
//!   the resulting `AccountInfo`s to the program, and writes lamports, data (including
//!   `realloc`/`resize`) and owner back with the runtime's own deserializer, which applies
//!   the usual ownership / writability / realloc checks;
//! - maps the returned `ProgramError` to the `InstructionError` the runtime expects, so
//!   `Custom(code)` survives (Anchor error codes, program error codes);
//! - installs, once per process, syscall stubs on the **v3** `solana_sysvar::program_stubs`
//!   (the ones `anchor-lang` 1.x and `solana-invoke` call on non-SBF targets) so that CPI
//!   (`invoke` / `invoke_signed`), `Sysvar::get`, `sol_get_sysvar`, return data, stack
//!   height, `sol_log` and `sol_log_data` reach the runtime.
//!
//! What it is not:
//! - it does not meter compute units (each native invocation consumes a nominal 1 CU) and
//!   has no SBF stack, heap or call-depth-in-bytes limits: a program that fits here may
//!   still exceed the limits on chain;
//! - `msg!` from `solana-msg` 3.x prints to stdout on the host instead of going through
//!   the stubs, and Anchor's `emit!` (`sol_log_data`) is a no-op on the host, so neither
//!   reaches the transaction logs; `emit_cpi!` (a self-CPI) and direct calls to
//!   `solana_sysvar::program_stubs::sol_log_data` do;
//! - `solana_cpi::invoke*` 3.x is a silent no-op on the host: programs must call CPI through
//!   `solana-invoke` (what Anchor uses) or `solana_sysvar::program_stubs::sol_invoke_signed`;
//! - `sol_get_processed_sibling_instruction` is not implemented (returns `None`).
#![warn(missing_docs)]

use {
    base64::{prelude::BASE64_STANDARD, Engine},
    litesvm::LiteSVM,
    solana_account_info_v3::AccountInfo,
    solana_instruction_v3::{error::InstructionError, Instruction},
    solana_program_error_v3::{ProgramError, ProgramResult},
    solana_program_runtime::{
        invoke_context::InvokeContext,
        serialization::{deserialize_parameters, serialize_parameters},
        stable_log,
    },
    solana_pubkey_v3::Pubkey,
    solana_sysvar_v3::program_stubs::{set_syscall_stubs, SyscallStubs},
    std::{
        cell::RefCell,
        collections::HashMap,
        panic::{catch_unwind, AssertUnwindSafe},
        sync::{Arc, Once, PoisonError, RwLock},
    },
};

/// The plain native entrypoint signature (`ProcessInstruction` of the solana 3.x crates).
pub type NativeEntrypoint = fn(&Pubkey, &[AccountInfo], &[u8]) -> ProgramResult;

/// Errors of this crate's helpers.
#[derive(Debug, thiserror::Error)]
pub enum NativeSvmError {
    /// A `Program data:` log line did not hold valid base64.
    #[error("invalid base64 in program data log line {line:?}: {source}")]
    InvalidProgramData {
        /// The offending log line.
        line: String,
        /// The decoding error.
        source: base64::DecodeError,
    },
}

/// Registers `entry` as the program `program_id` of `svm`.
///
/// The program account becomes an executable builtin owned by the native loader, so
/// transactions (and CPIs from other programs) can call it. Several programs can be
/// registered; the program id → entrypoint registry is process-wide, so registering the
/// same id again (in any `LiteSVM`) replaces the entrypoint everywhere. The first call also
/// installs the v3 syscall stubs (see the crate docs); do not replace them afterwards.
pub fn add_native_program(svm: &mut LiteSVM, program_id: Pubkey, entry: NativeEntrypoint) {
    install_syscall_stubs();
    REGISTRY
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(program_id, entry);
    svm.add_builtin(program_id, NativeBuiltin::register);
}

/// Installs this crate's syscall stubs on `solana_sysvar` 3.x (idempotent).
///
/// [`add_native_program`] calls it; call it yourself only if you register native programs
/// some other way.
pub fn install_syscall_stubs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        set_syscall_stubs(Box::new(RuntimeStubs));
    });
}

/// Decodes the `Program data: <base64> <base64> ...` lines of a transaction's logs (what
/// `sol_log_data` writes), one `Vec` of fields per line, in log order.
pub fn program_data_from_logs(logs: &[String]) -> Result<Vec<Vec<Vec<u8>>>, NativeSvmError> {
    logs.iter()
        .filter_map(|line| line.strip_prefix("Program data: ").map(|rest| (line, rest)))
        .map(|(line, rest)| {
            rest.split_whitespace()
                .map(|field| BASE64_STANDARD.decode(field))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| NativeSvmError::InvalidProgramData {
                    line: line.clone(),
                    source,
                })
        })
        .collect()
}

static REGISTRY: std::sync::LazyLock<RwLock<HashMap<Pubkey, NativeEntrypoint>>> =
    std::sync::LazyLock::new(RwLock::default);

/// One native invocation in progress on this thread.
struct Frame {
    /// The runtime context of the invocation. Only valid while the frame is on the stack.
    ctx: *mut InvokeContext<'static, 'static>,
    /// A failed CPI aborts the whole instruction on chain, whatever the program does with
    /// the error; remember it here so the builtin reports it.
    cpi_error: Option<InstructionError>,
}

thread_local! {
    /// Stack of native invocations (a CPI into another native program pushes a frame).
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the invoke context of the innermost native invocation on this thread, or
/// returns `None` when no native program is running (a stub called outside the runtime).
fn with_context<R>(f: impl FnOnce(&mut InvokeContext<'_, '_>) -> R) -> Option<R> {
    let ctx = FRAMES.with(|frames| frames.borrow().last().map(|frame| frame.ctx))?;
    // SAFETY: the pointer was taken from the `&mut InvokeContext` the runtime handed to
    // `run_native`, which is suspended inside the program call until the frame is popped,
    // so the context is alive and nothing else uses it meanwhile. The RefCell borrow is
    // released before `f` runs, so nested invocations can push their own frames.
    Some(f(unsafe { &mut *ctx }))
}

mod builtin {
    // The runtime-level builtin every native program is registered as. Builtins must
    // consume compute units, so each invocation costs a nominal 1 CU.
    solana_program_runtime::declare_process_instruction!(NativeBuiltin, 1, |invoke_context| {
        super::run_native(invoke_context)
    });
}
use {
    builtin::NativeBuiltin, solana_program_runtime::solana_sbpf::program::BuiltinFunctionDefinition,
};

fn run_native(invoke_context: &mut InvokeContext) -> Result<(), InstructionError> {
    let (entry, mut buffer, accounts_metadata) = {
        let instruction_context = invoke_context
            .transaction_context
            .get_current_instruction_context()?;
        let program_id = *instruction_context.get_program_key()?;
        let entry = *REGISTRY
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&program_id)
            .ok_or(InstructionError::UnsupportedProgramId)?;
        // Same layout an SBF program sees (no direct mapping), including the realloc
        // padding and original lengths that `AccountInfo::resize` relies on.
        let (buffer, _regions, accounts_metadata, _instruction_data_offset) =
            serialize_parameters(&instruction_context, false, false, false)?;
        (entry, buffer, accounts_metadata)
    };

    FRAMES.with(|frames| {
        frames.borrow_mut().push(Frame {
            ctx: (invoke_context as *mut InvokeContext).cast(),
            cpi_error: None,
        })
    });
    let input = buffer.as_slice_mut().as_mut_ptr();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `input` is a complete, aligned serialization produced just above and
        // `buffer` outlives every `AccountInfo` built from it (they die inside this closure).
        let (program_id, account_infos, data) =
            unsafe { solana_program_entrypoint_v3::deserialize(input) };
        entry(program_id, &account_infos, data)
    }));
    let frame = FRAMES.with(|frames| frames.borrow_mut().pop());

    if let Some(err) = frame.and_then(|frame| frame.cpi_error) {
        return Err(err);
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(program_error)) => return Err(InstructionError::from(u64::from(program_error))),
        Err(_panic) => return Err(InstructionError::ProgramFailedToComplete),
    }
    let instruction_context = invoke_context
        .transaction_context
        .get_current_instruction_context()?;
    deserialize_parameters(
        &instruction_context,
        false,
        false,
        buffer.as_slice(),
        &accounts_metadata,
    )
}

/// Copies the caller's view of `info` into the runtime's account (only what changed, so
/// the runtime's permission checks apply exactly to the program's modifications).
fn push_account_info(
    ctx: &mut InvokeContext,
    info: &AccountInfo,
    index_in_caller: u16,
) -> Result<(), InstructionError> {
    let instruction_context = ctx.transaction_context.get_current_instruction_context()?;
    let mut account = instruction_context.try_borrow_instruction_account(index_in_caller)?;
    let lamports = info
        .try_borrow_lamports()
        .map_err(|_| InstructionError::AccountBorrowFailed)?;
    if account.get_lamports() != **lamports {
        account.set_lamports(**lamports)?;
    }
    let data = info
        .try_borrow_data()
        .map_err(|_| InstructionError::AccountBorrowFailed)?;
    if account.get_data() != &data[..] {
        account.set_data_from_slice(&data)?;
    }
    if account.get_owner() != info.owner {
        account.set_owner(info.owner.as_ref())?;
    }
    Ok(())
}

/// Copies the runtime's account back into the caller's `AccountInfo` after a CPI.
fn pull_account_info(
    ctx: &mut InvokeContext,
    info: &AccountInfo,
    index_in_caller: u16,
) -> Result<(), InstructionError> {
    let instruction_context = ctx.transaction_context.get_current_instruction_context()?;
    let account = instruction_context.try_borrow_instruction_account(index_in_caller)?;
    **info
        .try_borrow_mut_lamports()
        .map_err(|_| InstructionError::AccountBorrowFailed)? = account.get_lamports();
    if info.owner != account.get_owner() {
        info.assign(account.get_owner());
    }
    let new_data = account.get_data();
    // Fails with InvalidRealloc beyond the serialized realloc padding, as on chain.
    info.resize(new_data.len())
        .map_err(|err| InstructionError::from(u64::from(err)))?;
    info.try_borrow_mut_data()
        .map_err(|_| InstructionError::AccountBorrowFailed)?
        .copy_from_slice(new_data);
    Ok(())
}

/// A cross-program invocation from the native program on top of the frame stack.
fn invoke_signed(
    ctx: &mut InvokeContext,
    instruction: &Instruction,
    account_infos: &[AccountInfo],
    signers_seeds: &[&[&[u8]]],
) -> Result<(), InstructionError> {
    // Accounts of the callee that the caller has, with their index in the caller's
    // instruction and whether the callee may write them. Unknown accounts are left to
    // `native_invoke_signed`, which rejects them like the runtime does.
    let mut shared: Vec<(usize, u16, bool)> = Vec::new();
    {
        let transaction_context = &ctx.transaction_context;
        let instruction_context = transaction_context.get_current_instruction_context()?;
        for meta in &instruction.accounts {
            if let Some(entry) = shared
                .iter_mut()
                .find(|(info, _, _)| *account_infos[*info].key == meta.pubkey)
            {
                entry.2 |= meta.is_writable;
                continue;
            }
            let Some(index_in_transaction) =
                transaction_context.find_index_of_account(&meta.pubkey)
            else {
                continue;
            };
            let Ok(index_in_caller) =
                instruction_context.get_index_of_account_in_instruction(index_in_transaction)
            else {
                continue;
            };
            let info = account_infos
                .iter()
                .position(|info| *info.key == meta.pubkey)
                .ok_or(InstructionError::MissingAccount)?;
            shared.push((info, index_in_caller, meta.is_writable));
        }
    }
    for &(info, index_in_caller, _) in &shared {
        push_account_info(ctx, &account_infos[info], index_in_caller)?;
    }
    // Derives the PDA signers from the seeds and the caller's program id, checks signer
    // and writable privileges, then runs the callee (logging invoke/success/failure).
    ctx.native_invoke_signed(instruction.clone(), signers_seeds)?;
    for &(info, index_in_caller, writable) in &shared {
        if writable {
            pull_account_info(ctx, &account_infos[info], index_in_caller)?;
        }
    }
    Ok(())
}

/// Writes the runtime's current value of a sysvar to `var_addr`.
fn write_sysvar<R, T>(
    var_addr: *mut u8,
    get: impl FnOnce(&InvokeContext) -> Result<Arc<R>, InstructionError>,
    convert: impl FnOnce(&R) -> T,
) -> u64 {
    match with_context(|ctx| get(ctx)) {
        Some(Ok(value)) => {
            // SAFETY: the sysvar getters pass a pointer to a live, aligned `T` (the
            // `Self::default()` value they are about to return).
            unsafe { var_addr.cast::<T>().write(convert(&value)) };
            solana_program_entrypoint_v3::SUCCESS
        }
        _ => solana_instruction_v3::error::UNSUPPORTED_SYSVAR,
    }
}

/// The syscalls a native program makes, served from the innermost native invocation.
struct RuntimeStubs;

impl SyscallStubs for RuntimeStubs {
    fn sol_log(&self, message: &str) {
        if with_context(|ctx| stable_log::program_log(&ctx.get_log_collector(), message)).is_none()
        {
            println!("Program log: {message}");
        }
    }

    fn sol_log_data(&self, fields: &[&[u8]]) {
        if with_context(|ctx| stable_log::program_data(&ctx.get_log_collector(), fields)).is_none()
        {
            let encoded: Vec<String> = fields.iter().map(|f| BASE64_STANDARD.encode(f)).collect();
            println!("Program data: {}", encoded.join(" "));
        }
    }

    fn sol_invoke_signed(
        &self,
        instruction: &Instruction,
        account_infos: &[AccountInfo],
        signers_seeds: &[&[&[u8]]],
    ) -> ProgramResult {
        let result =
            with_context(|ctx| invoke_signed(ctx, instruction, account_infos, signers_seeds))
                .ok_or(ProgramError::InvalidArgument)?;
        result.map_err(|err| {
            let program_error =
                ProgramError::try_from(err.clone()).unwrap_or(ProgramError::InvalidArgument);
            FRAMES.with(|frames| {
                if let Some(frame) = frames.borrow_mut().last_mut() {
                    frame.cpi_error.get_or_insert(err);
                }
            });
            program_error
        })
    }

    fn sol_get_sysvar(
        &self,
        sysvar_id_addr: *const u8,
        var_addr: *mut u8,
        offset: u64,
        length: u64,
    ) -> u64 {
        // Return codes of the real syscall.
        const OFFSET_LENGTH_EXCEEDS_SYSVAR: u64 = 1;
        const SYSVAR_NOT_FOUND: u64 = 2;
        // SAFETY: `solana_sysvar::get_sysvar` passes a `&Pubkey` and a buffer of at least
        // `length` bytes.
        let sysvar_id = unsafe { &*sysvar_id_addr.cast::<Pubkey>() };
        with_context(|ctx| {
            let cache = ctx.environment_config.sysvar_cache();
            let Some(bytes) = cache.sysvar_id_to_buffer(sysvar_id) else {
                return SYSVAR_NOT_FOUND;
            };
            let range = usize::try_from(offset).ok().and_then(|start| {
                let end = start.checked_add(usize::try_from(length).ok()?)?;
                bytes.get(start..end)
            });
            match range {
                Some(src) => {
                    // SAFETY: see above; `src.len() == length`.
                    unsafe { var_addr.copy_from_nonoverlapping(src.as_ptr(), src.len()) };
                    solana_program_entrypoint_v3::SUCCESS
                }
                None => OFFSET_LENGTH_EXCEEDS_SYSVAR,
            }
        })
        .unwrap_or(SYSVAR_NOT_FOUND)
    }

    fn sol_get_clock_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(
            var_addr,
            |ctx| ctx.environment_config.sysvar_cache().get_clock(),
            Clone::clone,
        )
    }

    fn sol_get_epoch_schedule_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(
            var_addr,
            |ctx| ctx.environment_config.sysvar_cache().get_epoch_schedule(),
            Clone::clone,
        )
    }

    fn sol_get_epoch_rewards_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(
            var_addr,
            |ctx| ctx.environment_config.sysvar_cache().get_epoch_rewards(),
            Clone::clone,
        )
    }

    fn sol_get_last_restart_slot(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(
            var_addr,
            |ctx| {
                ctx.environment_config
                    .sysvar_cache()
                    .get_last_restart_slot()
            },
            Clone::clone,
        )
    }

    // The runtime holds a solana-rent 4.x value; programs read the 3.x type (same fields,
    // renamed and deprecated in 4.x).
    #[allow(deprecated)]
    fn sol_get_rent_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(
            var_addr,
            |ctx| ctx.environment_config.sysvar_cache().get_rent(),
            |rent| solana_rent_v3::Rent {
                lamports_per_byte_year: rent.lamports_per_byte,
                exemption_threshold: f64::from_le_bytes(rent.exemption_threshold),
                burn_percent: rent.burn_percent,
            },
        )
    }

    fn sol_get_return_data(&self) -> Option<(Pubkey, Vec<u8>)> {
        with_context(|ctx| {
            let (program_id, data) = ctx.transaction_context.get_return_data();
            (!data.is_empty()).then(|| (*program_id, data.to_vec()))
        })
        .flatten()
    }

    fn sol_set_return_data(&self, data: &[u8]) {
        with_context(|ctx| {
            let program_id = ctx
                .transaction_context
                .get_current_instruction_context()
                .and_then(|ic| ic.get_program_key().copied());
            if let Ok(program_id) = program_id {
                // Only fails beyond MAX_RETURN_DATA, where the syscall would abort too;
                // the data is then simply not set.
                let _ = ctx
                    .transaction_context
                    .set_return_data(program_id, data.to_vec());
            }
        });
    }

    fn sol_get_stack_height(&self) -> u64 {
        with_context(|ctx| ctx.get_stack_height() as u64).unwrap_or(0)
    }
}
