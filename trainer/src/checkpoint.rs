//! Checkpoints: the LoRA pairs, the optimizer's moments and the loop's state,
//! written so that a kill at any instant leaves the last complete checkpoint
//! readable, and a resumed run continues from it.
//!
//! Layout under the run's directory: `ckpt-<step>/` holds `lora.safetensors`,
//! `optim.safetensors` and `state.json`; `LATEST` names the newest complete
//! one. A checkpoint is written into a temporary directory, synced, renamed
//! into place, and only then named by `LATEST` (itself replaced by rename),
//! so a reader never sees a half-written one. The two newest are kept.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{io, Result, TrainerError};
use crate::optim::AdamW;
use crate::policy::PolicyModel;

const LATEST: &str = "LATEST";
const KEEP: usize = 2;

fn pair_names(model: &PolicyModel, i: usize) -> (String, String) {
    let p = &model.pairs()[i];
    let base = format!("blk.{}.{}", p.layer, p.target.name());
    (format!("{base}.lora_a"), format!("{base}.lora_b"))
}

/// Writes checkpoint `step` of `model`, `opt` and `state` under `dir`, then
/// points `LATEST` at it and removes older ones beyond the two newest.
pub fn save(
    dir: &Path,
    step: u64,
    model: &PolicyModel,
    opt: &AdamW,
    state: &impl Serialize,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("ckpt-{step:06}");
    let tmp = dir.join(format!(".tmp-{name}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    let mut lora = HashMap::new();
    let mut moments = HashMap::new();
    for (i, p) in model.pairs().iter().enumerate() {
        let (a, b) = pair_names(model, i);
        lora.insert(a, p.a.as_tensor().clone());
        lora.insert(b, p.b.as_tensor().clone());
    }
    for (i, (m, v)) in opt.moments().iter().enumerate() {
        moments.insert(format!("m.{i}"), m.clone());
        moments.insert(format!("v.{i}"), v.clone());
    }
    candle_core::safetensors::save(&lora, tmp.join("lora.safetensors"))?;
    candle_core::safetensors::save(&moments, tmp.join("optim.safetensors"))?;
    let json = serde_json::json!({ "optimizer_steps": opt.steps(), "state": state });
    write_synced(&tmp.join("state.json"), json.to_string().as_bytes())?;
    sync_dir(&tmp)?;

    let dest = dir.join(&name);
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    sync_dir(dir)?;
    let latest_tmp = dir.join(".LATEST.tmp");
    write_synced(&latest_tmp, name.as_bytes())?;
    fs::rename(&latest_tmp, dir.join(LATEST)).map_err(io(dir))?;
    sync_dir(dir)?;
    prune(dir)?;
    Ok(dest)
}

/// Loads the checkpoint `LATEST` names into `model` and `opt` and returns
/// its state; `None` when the directory holds none (a fresh run).
pub fn load_latest<S: DeserializeOwned>(
    dir: &Path,
    model: &PolicyModel,
    opt: &mut AdamW,
) -> Result<Option<S>> {
    let Some(ck) = latest_dir(dir)? else {
        return Ok(None);
    };
    let bad = |what: String| TrainerError::Checkpoint(format!("{}: {what}", ck.display()));
    let lora = candle_core::safetensors::load(ck.join("lora.safetensors"), &Device::Cpu)?;
    if lora.len() != 2 * model.pairs().len() {
        return Err(bad(format!(
            "{} LoRA tensors, this model has {} pairs (rank or targets changed?)",
            lora.len(),
            model.pairs().len()
        )));
    }
    for i in 0..model.pairs().len() {
        let (an, bn) = pair_names(model, i);
        let (Some(a), Some(b)) = (lora.get(&an), lora.get(&bn)) else {
            return Err(bad(format!("missing {an} or {bn}")));
        };
        let p = &model.pairs()[i];
        if a.shape() != p.a.shape() || b.shape() != p.b.shape() {
            return Err(bad(format!(
                "{an}: shape {:?}, model {:?}",
                a.shape(),
                p.a.shape()
            )));
        }
        model.set_pair(i, a, b)?;
    }
    let moments = candle_core::safetensors::load(ck.join("optim.safetensors"), &Device::Cpu)?;
    let take = |k: String| -> Result<Tensor> {
        moments
            .get(&k)
            .cloned()
            .ok_or_else(|| bad(format!("optimizer state lacks {k}")))
    };
    let restored = (0..opt.moments().len())
        .map(|i| Ok((take(format!("m.{i}"))?, take(format!("v.{i}"))?)))
        .collect::<Result<Vec<_>>>()?;
    let (steps, state) = read_saved::<S>(&ck)?;
    opt.restore(restored, steps)?;
    Ok(Some(state))
}

/// The loop's state in the checkpoint `LATEST` names, without loading any
/// tensor (for reports); `None` without a checkpoint.
pub fn read_state<S: DeserializeOwned>(dir: &Path) -> Result<Option<S>> {
    let Some(ck) = latest_dir(dir)? else {
        return Ok(None);
    };
    read_saved::<S>(&ck).map(|(_, s)| Some(s))
}

fn latest_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let latest = dir.join(LATEST);
    let name = match fs::read_to_string(&latest) {
        Ok(n) => n.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&latest)(e)),
    };
    if !name.starts_with("ckpt-") || name.contains(['/', '\\']) {
        return Err(TrainerError::Checkpoint(format!("LATEST names `{name}`")));
    }
    Ok(Some(dir.join(name)))
}

fn read_saved<S: DeserializeOwned>(ck: &Path) -> Result<(u64, S)> {
    let path = ck.join("state.json");
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    #[derive(serde::Deserialize)]
    struct Saved<S> {
        optimizer_steps: u64,
        state: S,
    }
    let saved: Saved<S> = serde_json::from_str(&text)
        .map_err(|e| TrainerError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok((saved.optimizer_steps, saved.state))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn prune(dir: &Path) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    names.sort();
    let old = names.len().saturating_sub(KEEP);
    for n in &names[..old] {
        let _ = fs::remove_dir_all(dir.join(n));
    }
    Ok(())
}
