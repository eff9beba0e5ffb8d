//! `strata keygen` and `strata address`, and loading `--keypair` for every
//! other command, with errors that name the file and say what to do.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use strata_chain::{keys, Keypair, Signer};

use crate::output::{Output, Report};

/// The Solana CLI's default keypair: `~/.config/solana/id.json`.
pub fn default_keypair_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("solana").join("id.json")
}

/// Reads the keypair at `path`; a missing file suggests `strata keygen`.
pub fn load(path: &Path) -> anyhow::Result<Keypair> {
    if !path.exists() {
        return Err(anyhow!(
            "no keypair file at {}: create one with `strata keygen --outfile {}` or pass --keypair",
            path.display(),
            path.display()
        ));
    }
    keys::read(path).map_err(|e| anyhow!("{e}"))
}

/// `strata keygen`: writes a new keypair and prints its public key.
pub fn keygen(outfile: &Path, force: bool, out: Output) -> anyhow::Result<()> {
    if outfile.is_dir() {
        return Err(anyhow!(
            "{} is a directory, not a keypair file",
            outfile.display()
        ));
    }
    if outfile.exists() {
        if !force {
            return Err(anyhow!(
                "{} already exists; refusing to overwrite it (pass --force to replace it)",
                outfile.display()
            ));
        }
        std::fs::remove_file(outfile)
            .map_err(|e| anyhow!("cannot replace {}: {e}", outfile.display()))?;
    }
    let keypair = Keypair::new();
    keys::write_new(outfile, &keypair).map_err(|e| anyhow!("{e}"))?;
    if out.json {
        out.report(
            &Report::new()
                .text("pubkey", keypair.pubkey())
                .text("outfile", outfile.display()),
        );
    } else {
        println!("{}", keypair.pubkey());
        eprintln!("wrote keypair to {}", outfile.display());
    }
    Ok(())
}

/// `strata address`: the public key of `--keypair`.
pub fn address(path: &Path, out: Output) -> anyhow::Result<()> {
    out.single("pubkey", load(path)?.pubkey());
    Ok(())
}
