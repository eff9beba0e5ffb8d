//! The training loop: rollouts sampled under the latest published policy,
//! one GRPO update per batch, each update published as the next version.
//!
//! Sampling runs on its own thread, ahead of training by at most the
//! staleness budget S: batch k is sampled once update k − S has been
//! published, under whatever version is newest then. S = 0 is synchronous
//! (sample, train, publish, sample…); S ≥ 1 overlaps sampling of the next
//! batches with training on this one, at the price of training on rollouts
//! up to S versions old (corrected by the truncated importance weight).
//! The trainer also checks every batch's versions and drops one older than
//! S (a network source can deliver late).
//!
//! Every update writes `adapters/v<version>.safetensors` and a checkpoint;
//! a killed run started again with the same directory resumes after its
//! last checkpoint, re-sampling the batches that were in flight (their
//! prompts and seeds derive from the step number).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_engine::Adapter;
use strata_rl::TaskPrompt;

use crate::checkpoint;
use crate::error::{io, Result, TrainerError};
use crate::rollout::{LocalSampler, RolloutBatch, SampleSpec};
use crate::train::Learner;

/// Where rollouts come from: the network (a gateway's rollout jobs) or the
/// engine in this process.
pub trait RolloutSource: Send {
    /// Samples `spec.group_size` completions of each prompt under policy
    /// `version` (`adapter`, or the base model for version 0).
    fn sample(
        &mut self,
        version: u64,
        adapter: Option<&Arc<Adapter>>,
        prompts: &[TaskPrompt],
        spec: &SampleSpec,
    ) -> Result<RolloutBatch>;
}

/// The in-process engine as a source, optionally slowed down to stand for
/// remote nodes slower than this machine (`delay` per sampled token, slept:
/// it costs wall time, not this machine's cores, as a remote node's would).
#[derive(Debug)]
pub struct LocalSource {
    /// The engine.
    pub sampler: LocalSampler,
    /// Wall time added per sampled token (the throttle of the sweep).
    pub delay_per_token: Duration,
}

impl RolloutSource for LocalSource {
    fn sample(
        &mut self,
        version: u64,
        adapter: Option<&Arc<Adapter>>,
        prompts: &[TaskPrompt],
        spec: &SampleSpec,
    ) -> Result<RolloutBatch> {
        let batch = self.sampler.sample(adapter, version, prompts, spec)?;
        if !self.delay_per_token.is_zero() {
            let tokens: usize = batch.rollouts.iter().map(|r| r.completion.len()).sum();
            std::thread::sleep(self.delay_per_token * tokens as u32);
        }
        Ok(batch)
    }
}

/// Where a new version goes once written: nodes (p2p distribution and a
/// signed announcement) or nowhere but the file.
pub trait Publisher {
    /// Makes `adapter`, written at `path`, available to the samplers.
    fn publish(&mut self, adapter: &Arc<Adapter>, path: &Path) -> Result<()>;
}

/// Keeps versions as files only (the local source reads them in process).
#[derive(Debug, Default)]
pub struct FileOnly;

impl Publisher for FileOnly {
    fn publish(&mut self, _: &Arc<Adapter>, _: &Path) -> Result<()> {
        Ok(())
    }
}

/// The loop's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The `strata-rl` task trained on.
    pub task: String,
    /// Prompts per batch.
    pub prompts_per_step: usize,
    /// Completions per prompt.
    pub group_size: usize,
    /// Token budget per completion.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Batches to train on in all.
    pub steps: u64,
    /// S: how many versions a rollout may lag the trainer.
    pub staleness: u64,
    /// Seed of prompts and sampling.
    pub seed: u64,
    /// The learner's settings (learning rate, LoRA rank, KL β), recorded so
    /// that a resume cannot silently change them (absent in a `run.json`
    /// written before they were recorded).
    #[serde(default)]
    pub learner: LearnerSettings,
}

/// What the learner was built with, as recorded in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnerSettings {
    /// AdamW's learning rate.
    pub lr: f64,
    /// LoRA rank.
    pub rank: usize,
    /// β of the KL penalty.
    pub kl_beta: f64,
}

/// One update, as the log and the curve see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Batch index.
    pub step: u64,
    /// The version this update published (unchanged when the batch
    /// carried no signal).
    pub version: u64,
    /// The oldest version that sampled the batch.
    pub sampled_by: u64,
    /// Mean reward of the batch's completions.
    pub train_reward: f64,
    /// Seconds of wall time since the run started (across resumes) when the
    /// version was published.
    pub wall_secs: f64,
    /// Seconds the update took.
    pub train_secs: f64,
    /// Seconds sampling the batch took.
    pub sample_secs: f64,
    /// The loss's value (0 when skipped).
    pub loss: f64,
    /// Share of clipped tokens.
    pub clip_fraction: f64,
    /// Mean truncated importance weight.
    pub mean_weight: f64,
}

/// What a checkpoint carries besides tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Next batch index.
    pub next_step: u64,
    /// Current policy version.
    pub version: u64,
    /// Wall seconds spent before this process started.
    pub wall_secs: f64,
    /// Every update so far.
    pub log: Vec<StepLog>,
    /// Batches dropped as too stale.
    pub dropped: u64,
}

/// The training prompts of batch `step`: seeds below 2⁶³ (the held-out
/// range is never trained on).
pub fn step_prompts(cfg: &RunConfig, step: u64) -> Result<Vec<TaskPrompt>> {
    let seed = mix(cfg.seed ^ mix(step)) & !(1 << 63);
    Ok(strata_rl::generate(&cfg.task, seed, cfg.prompts_per_step)?)
}

fn step_spec(cfg: &RunConfig, step: u64) -> SampleSpec {
    SampleSpec {
        group_size: cfg.group_size,
        max_tokens: cfg.max_tokens,
        temperature: cfg.temperature,
        seed: mix(cfg.seed.wrapping_add(step)),
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The file of version `v` under the run's directory.
pub fn adapter_path(dir: &Path, v: u64) -> PathBuf {
    dir.join("adapters").join(format!("v{v:06}.safetensors"))
}

/// What the sampler thread sees of the trainer's progress.
struct Progress {
    /// Batches the trainer has finished with.
    done: u64,
    version: u64,
    adapter: Option<Arc<Adapter>>,
    stop: bool,
}

/// Runs (or resumes) training under `dir` until `cfg.steps` batches have
/// been used; returns the final state. `on_step` sees each update's log
/// line as it happens.
pub fn run(
    cfg: &RunConfig,
    dir: &Path,
    learner: &mut Learner,
    source: Box<dyn RolloutSource>,
    publisher: &mut dyn Publisher,
    mut on_step: impl FnMut(&StepLog),
) -> Result<RunState> {
    if cfg.group_size < 2 || cfg.prompts_per_step == 0 || cfg.max_tokens == 0 {
        return Err(TrainerError::Invalid(
            "a batch needs at least one prompt, groups of 2 or more and a token budget".into(),
        ));
    }
    fs::create_dir_all(dir.join("adapters")).map_err(io(dir))?;
    write_config(dir, cfg)?;
    let ckpt = dir.join("checkpoints");
    let mut state: RunState =
        checkpoint::load_latest(&ckpt, &learner.model, &mut learner.opt)?.unwrap_or_default();
    let adapter = match state.version {
        0 => None,
        v => Some(learner.adapter(v)?),
    };
    let started = Instant::now();
    let progress = Arc::new((
        Mutex::new(Progress {
            done: state.next_step,
            version: state.version,
            adapter,
            stop: false,
        }),
        Condvar::new(),
    ));
    let (tx, rx) =
        mpsc::sync_channel::<Result<(u64, RolloutBatch, f64)>>(cfg.staleness as usize + 1);
    let sampler = {
        let (cfg, progress) = (cfg.clone(), progress.clone());
        let first = state.next_step;
        let mut source = source;
        std::thread::spawn(move || {
            for k in first..cfg.steps {
                let (version, adapter) = {
                    let (lock, cv) = &*progress;
                    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while p.done + cfg.staleness < k && !p.stop {
                        p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    if p.stop {
                        return;
                    }
                    (p.version, p.adapter.clone())
                };
                let t = Instant::now();
                let batch = step_prompts(&cfg, k).and_then(|prompts| {
                    source.sample(version, adapter.as_ref(), &prompts, &step_spec(&cfg, k))
                });
                let failed = batch.is_err();
                if tx
                    .send(batch.map(|b| (k, b, t.elapsed().as_secs_f64())))
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        })
    };
    let result = train_loop(
        cfg,
        dir,
        &ckpt,
        learner,
        publisher,
        &rx,
        &progress,
        &mut state,
        started,
        &mut on_step,
    );
    {
        let (lock, cv) = &*progress;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
    }
    drop(rx);
    let _ = sampler.join();
    result.map(|()| state)
}

#[allow(clippy::too_many_arguments)]
fn train_loop(
    cfg: &RunConfig,
    dir: &Path,
    ckpt: &Path,
    learner: &mut Learner,
    publisher: &mut dyn Publisher,
    rx: &mpsc::Receiver<Result<(u64, RolloutBatch, f64)>>,
    progress: &Arc<(Mutex<Progress>, Condvar)>,
    state: &mut RunState,
    started: Instant,
    on_step: &mut impl FnMut(&StepLog),
) -> Result<()> {
    let wall0 = state.wall_secs;
    while state.next_step < cfg.steps {
        let (k, batch, sample_secs) = rx
            .recv()
            .map_err(|_| TrainerError::Rollouts("the sampler stopped".into()))??;
        if k != state.next_step {
            return Err(TrainerError::Invalid(format!(
                "batch {k} arrived while {} was expected",
                state.next_step
            )));
        }
        let sampled_by = batch.oldest_version();
        let t = Instant::now();
        let stats = if state.version.saturating_sub(sampled_by) > cfg.staleness {
            state.dropped += 1;
            None
        } else {
            learner.step(&batch)?
        };
        if stats.is_some() {
            state.version += 1;
            let adapter = learner.adapter(state.version)?;
            let path = adapter_path(dir, state.version);
            write_atomic(&path, &adapter.to_bytes())?;
            publisher.publish(&adapter, &path)?;
            let (lock, _) = &**progress;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            p.version = state.version;
            p.adapter = Some(adapter);
        }
        let loss = stats.map(|s| s.loss).unwrap_or_default();
        let line = StepLog {
            step: k,
            version: state.version,
            sampled_by,
            train_reward: batch.mean_reward(),
            wall_secs: wall0 + started.elapsed().as_secs_f64(),
            train_secs: t.elapsed().as_secs_f64(),
            sample_secs,
            loss: loss.loss,
            clip_fraction: loss.clip_fraction,
            mean_weight: loss.mean_weight,
        };
        on_step(&line);
        state.log.push(line);
        state.next_step = k + 1;
        state.wall_secs = wall0 + started.elapsed().as_secs_f64();
        checkpoint::save(ckpt, state.next_step, &learner.model, &learner.opt, &*state)?;
        let (lock, cv) = &**progress;
        lock.lock().unwrap_or_else(|e| e.into_inner()).done = state.next_step;
        cv.notify_all();
    }
    Ok(())
}

/// Records `cfg` in `dir/run.json`, or checks it against the run already
/// there: a directory holds one run, resumed only with its own settings.
pub fn write_config(dir: &Path, cfg: &RunConfig) -> Result<()> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("run.json");
    if let Ok(text) = fs::read_to_string(&path) {
        let old: RunConfig = serde_json::from_str(&text)
            .map_err(|e| TrainerError::Checkpoint(format!("{}: {e}", path.display())))?;
        if old != *cfg {
            return Err(TrainerError::Checkpoint(format!(
                "{} holds a run with other settings ({old:?}); use another directory",
                dir.display()
            )));
        }
        return Ok(());
    }
    let text =
        serde_json::to_string_pretty(cfg).map_err(|e| TrainerError::Checkpoint(e.to_string()))?;
    write_atomic(&path, text.as_bytes())
}

/// The state of the run under `dir` as its last checkpoint recorded it.
pub fn read_state(dir: &Path) -> Result<Option<RunState>> {
    checkpoint::read_state(&dir.join("checkpoints"))
}

/// Writes through a temporary file and a rename: readers see the old file
/// or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Mean greedy reward on `n` held-out prompts of `task` for the base model
/// and every `every`-th version written under `dir` (and the last): the
/// learning curve.
pub fn curve(
    sampler: &LocalSampler,
    dir: &Path,
    task: &str,
    n: usize,
    max_tokens: usize,
    every: u64,
) -> Result<Vec<(u64, f64)>> {
    let prompts = strata_rl::generate(task, *strata_rl::HELD_OUT_SEEDS.start() + 17, n)?;
    let mut versions: Vec<u64> = fs::read_dir(dir.join("adapters"))
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix('v')?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    let last = versions.last().copied();
    versions.retain(|&v| v % every.max(1) == 0 || Some(v) == last);
    let mut out = vec![(0, sampler.evaluate(None, &prompts, max_tokens)?)];
    for v in versions {
        let adapter = Arc::new(Adapter::load(&adapter_path(dir, v))?);
        out.push((v, sampler.evaluate(Some(&adapter), &prompts, max_tokens)?));
    }
    Ok(out)
}
