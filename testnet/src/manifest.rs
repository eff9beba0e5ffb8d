//! `testnet.json`: what a running local testnet is, for the other tools.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest inside the state directory.
pub const FILE: &str = "testnet.json";

/// Where a local testnet's services and keys are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetManifest {
    /// JSON-RPC URL of the chain.
    pub rpc_url: String,
    /// Websocket URL of the chain.
    pub ws_url: String,
    /// The Strata program id.
    pub program_id: String,
    /// The stake/payment/reward mint.
    pub mint: String,
    /// Keypair file of the mint authority (the faucet).
    pub faucet_keypair: PathBuf,
    /// Keypair file of the program admin.
    pub admin_keypair: PathBuf,
    /// Keypair file of the relayer (also the reward authority).
    pub relayer_keypair: PathBuf,
    /// Keypair file of the funded demo client.
    pub client_keypair: PathBuf,
    /// Keypair files of the registered nodes.
    pub node_keypairs: Vec<PathBuf>,
    /// The nodes' public keys (base58), in the same order.
    pub nodes: Vec<String>,
    /// Keypair files of the verifiers.
    #[serde(default)]
    pub verifier_keypairs: Vec<PathBuf>,
    /// The verifiers' public keys (base58), in the same order.
    #[serde(default)]
    pub verifiers: Vec<String>,
    /// The address the services listen on when other machines may join
    /// (`strata-testnet up --listen`); absent on a loopback-only testnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The relayer's p2p multiaddrs, each ending in `/p2p/<peer id>`: what a
    /// node passes as `--relayer` (empty until the services are up).
    #[serde(default)]
    pub relayer_multiaddrs: Vec<String>,
    /// The relayer's HTTP API and explorer (once the services are up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relayer_url: Option<String>,
    /// The gateway's base URL, without `/v1` (once the services are up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
}

impl TestnetManifest {
    /// Writes the manifest into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join(FILE);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        Ok(path)
    }

    /// Reads the manifest from `dir`.
    pub fn read(dir: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(dir.join(FILE))?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}
