//! Cluster names accepted by `--url`, as in the Solana CLI.

use crate::ChainError;

/// Default RPC port of the embedded local chain.
pub const LOCALNET_RPC_PORT: u16 = 8899;

/// Resolves `localnet|devnet|testnet|mainnet|<http(s) URL>` to an RPC URL.
pub fn resolve(url: &str) -> Result<String, ChainError> {
    let resolved = match url {
        "localnet" | "l" | "localhost" => format!("http://127.0.0.1:{LOCALNET_RPC_PORT}"),
        "devnet" | "d" => "https://api.devnet.solana.com".to_string(),
        "testnet" | "t" => "https://api.testnet.solana.com".to_string(),
        "mainnet" | "mainnet-beta" | "m" => "https://api.mainnet-beta.solana.com".to_string(),
        other if other.starts_with("http://") || other.starts_with("https://") => other.to_string(),
        other => return Err(ChainError::UnknownCluster(other.to_string())),
    };
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(resolve("localnet").unwrap(), "http://127.0.0.1:8899");
        assert_eq!(resolve("devnet").unwrap(), "https://api.devnet.solana.com");
        assert_eq!(
            resolve("http://10.0.0.1:9000").unwrap(),
            "http://10.0.0.1:9000"
        );
        assert!(matches!(
            resolve("ftp://x"),
            Err(ChainError::UnknownCluster(_))
        ));
        assert!(matches!(resolve(""), Err(ChainError::UnknownCluster(_))));
    }
}
