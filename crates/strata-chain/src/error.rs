//! The client's error type.

use thiserror::Error;

/// Everything the chain client can fail with.
#[derive(Debug, Error)]
pub enum ChainError {
    /// A keypair file is missing, unreadable or malformed.
    #[error("keypair file {path}: {reason}")]
    Keypair {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// `--url` was neither a known cluster name nor an http(s) URL.
    #[error("unknown cluster {0:?}: use localnet, devnet, testnet, mainnet or an http(s) URL")]
    UnknownCluster(String),
    /// The RPC endpoint could not be reached or refused the call.
    #[error("RPC error at {url}: {message}")]
    Rpc {
        /// Endpoint.
        url: String,
        /// The underlying error.
        message: String,
    },
    /// The program refused the transaction with one of its named errors.
    #[error("program error {code} ({name}): {message}")]
    Program {
        /// Anchor error code (6000+ for the program's own errors).
        code: u32,
        /// Error name.
        name: String,
        /// Error message.
        message: String,
    },
    /// An account that must exist does not.
    #[error("account not found: {0}")]
    AccountNotFound(String),
    /// Account data did not decode as the expected type.
    #[error("account {address} is not a valid {kind}")]
    Decode {
        /// Account address.
        address: String,
        /// Expected type.
        kind: &'static str,
    },
    /// The transaction is larger than Solana's packet limit.
    #[error("transaction is {0} bytes, over the 1232-byte limit")]
    TooLarge(usize),
    /// Bad input to a builder.
    #[error("invalid input: {0}")]
    Invalid(String),
}
