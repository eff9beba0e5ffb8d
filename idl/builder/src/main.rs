//! Builds the Strata program's Anchor IDL and prints it as JSON.
//!
//! `strata-idl-build <program dir> <target dir>` runs Anchor's own builder
//! (`anchor_lang_idl::build::IdlBuilder`, what `anchor idl build` calls): it
//! compiles the program's unit tests with the `idl-build` feature into
//! `<target dir>`, runs the `__anchor_private_print_idl_*` tests that the
//! Anchor macros generate, and joins what they print into one IDL. Nothing
//! here needs Solana's SBF toolchain.
//!
//! It is not the check: `scripts/idl --check` compares its output with the
//! committed `idl/strata.json`.

use std::path::PathBuf;

use anchor_lang_idl::build::IdlBuilder;
use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [program, target] = args.as_slice() else {
        bail!("usage: strata-idl-build <program dir> <target dir>");
    };
    let program = PathBuf::from(program)
        .canonicalize()
        .with_context(|| format!("program directory {program}"))?;
    // anchor-lang-idl 0.1.4 turns a set RUSTUP_TOOLCHAIN into the literal
    // argument `+{toolchain}`, which cargo refuses; without it the nested
    // cargo takes the toolchain rustup picks for the program's directory.
    if std::env::var_os("RUSTUP_TOOLCHAIN").is_some() {
        std::env::remove_var("RUSTUP_TOOLCHAIN");
    }
    let idl = IdlBuilder::new()
        .program_path(program)
        // As Anchor.toml sets them: PDA seeds and account relations in the
        // IDL (so clients can resolve accounts), the safety-comment lint on,
        // doc comments kept.
        .resolution(true)
        .skip_lint(false)
        .no_docs(false)
        // Only the library's unit tests hold the print functions; its own
        // target dir keeps the `idl-build` features and the builder's
        // RUSTFLAGS (`-A warnings`) out of the main build.
        .cargo_args(vec!["--lib".into(), "--target-dir".into(), target.clone()])
        .build()
        .context("building the IDL (the cargo output above says why)")?;
    println!("{}", serde_json::to_string_pretty(&idl)?);
    Ok(())
}
