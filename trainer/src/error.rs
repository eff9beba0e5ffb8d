//! [`TrainerError`].

/// Why training, a checkpoint or a rollout could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// A tensor operation failed (shapes, dtypes).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The engine refused (model file, adapter, generation).
    #[error("engine: {0}")]
    Engine(#[from] strata_engine::EngineError),
    /// A reward or task of `strata-rl` refused.
    #[error("reward: {0}")]
    Rl(#[from] strata_rl::RlError),
    /// A checkpoint could not be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Rollouts could not be had from the network.
    #[error("rollouts: {0}")]
    Rollouts(String),
    /// Input the trainer cannot use.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, TrainerError>;

/// Wraps an I/O failure with its path.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainerError + '_ {
    move |source| TrainerError::Io {
        path: path.display().to_string(),
        source,
    }
}
