//! `strata faucet`: SOL by airdrop and Strata tokens minted by the local
//! testnet's mint authority, which `strata-testnet up` records in its
//! manifest (`<testnet-dir>/testnet.json`).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::Deserialize;
use strata_chain::{token, Pubkey};

use crate::output::{Output, Report};
use crate::{chain, keys};
use strata_chain::amount::{format_sol, format_tokens};

/// File name of the manifest inside the testnet directory.
pub const MANIFEST_FILE: &str = "testnet.json";

/// The part of the local testnet's manifest the CLI needs. Other fields
/// the testnet writes are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TestnetManifest {
    /// JSON-RPC URL of the testnet's chain.
    pub rpc_url: String,
    /// The stake/payment/reward mint (base58).
    pub mint: String,
    /// Keypair file of the mint authority.
    pub faucet_keypair: PathBuf,
}

impl TestnetManifest {
    /// Reads `dir/testnet.json`, with an error that says how to create one.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(anyhow!(
                "no local testnet manifest at {}: start one with `strata-testnet up` (or pass --testnet-dir)",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} is not a valid testnet manifest: {e}", path.display()))
    }

    /// The mint as a public key.
    pub fn mint(&self) -> anyhow::Result<Pubkey> {
        self.mint.parse().map_err(|_| {
            anyhow!(
                "testnet manifest: mint {:?} is not a base58 public key",
                self.mint
            )
        })
    }

    /// The faucet keypair's path; a relative path that does not exist from
    /// the working directory is tried inside `dir`.
    pub fn faucet_keypair_path(&self, dir: &Path) -> PathBuf {
        let path = &self.faucet_keypair;
        if path.is_relative() && !path.exists() {
            dir.join(path)
        } else {
            path.clone()
        }
    }
}

/// What the faucet is asked for.
#[derive(Debug, Clone)]
pub struct FaucetRequest {
    /// Lamports to airdrop.
    pub lamports: u64,
    /// Token base units to mint.
    pub tokens: u64,
    /// Recipient.
    pub to: Pubkey,
}

/// Runs the faucet against `url` (or the manifest's RPC URL when `url` is `None`).
pub async fn run(
    url: Option<&str>,
    testnet_dir: &Path,
    request: FaucetRequest,
    out: Output,
) -> anyhow::Result<()> {
    let manifest = TestnetManifest::read(testnet_dir)?;
    let mint = manifest.mint()?;
    let authority = keys::load(&manifest.faucet_keypair_path(testnet_dir))?;
    let client = chain::connect(url.unwrap_or(&manifest.rpc_url)).await?;
    let ata = token::faucet(
        &client,
        &authority,
        &mint,
        &request.to,
        request.lamports,
        request.tokens,
    )
    .await
    .map_err(chain::explain)?;
    out.report(
        &Report::new()
            .text("to", request.to)
            .field("lamports", request.lamports, format_sol(request.lamports))
            .field("tokens", request.tokens, format_tokens(request.tokens))
            .text("token_account", ata),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_reads_and_explains_absence() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TestnetManifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            missing.contains("no local testnet manifest at"),
            "{missing}"
        );
        assert!(missing.contains("strata-testnet up"), "{missing}");

        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            r#"{"rpc_url":"http://127.0.0.1:8899","ws_url":"ws://x","mint":"11111111111111111111111111111111","faucet_keypair":"keys/faucet.json","nodes":[]}"#,
        )
        .unwrap();
        let m = TestnetManifest::read(dir.path()).unwrap();
        assert_eq!(m.mint().unwrap(), Pubkey::default());
        assert_eq!(
            m.faucet_keypair_path(dir.path()),
            dir.path().join("keys/faucet.json")
        );

        std::fs::write(dir.path().join(MANIFEST_FILE), "{}").unwrap();
        let bad = TestnetManifest::read(dir.path()).unwrap_err().to_string();
        assert!(bad.contains("not a valid testnet manifest"), "{bad}");
    }
}
