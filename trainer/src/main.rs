//! `strata-trainer`: GRPO on LoRA adapters, fed by rollouts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sha2::{Digest, Sha256};
use strata_engine::Engine;
use strata_trainer::{
    AdamWConfig, FileOnly, GrpoConfig, Learner, LearnerSettings, LocalSampler, LocalSource,
    LoraConfig, PolicyModel, RunConfig, SampleSpec,
};

#[derive(Parser)]
#[command(version, about = "Strata's RL trainer: GRPO on LoRA adapters")]
struct Cli {
    /// The base model (GGUF); the cached default model when omitted.
    #[arg(long, global = true)]
    model: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Trains (or resumes a run in `--dir`), sampling rollouts in process.
    Train(TrainArgs),
    /// The learning curve of a run: mean greedy reward on held-out prompts
    /// for the base model and every version in `--dir`.
    Curve {
        /// The run's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Held-out prompts.
        #[arg(long, default_value_t = 64)]
        prompts: usize,
    },
    /// Measures the base model's reward on each task and one update's cost.
    Probe {
        /// Prompts per task.
        #[arg(long, default_value_t = 8)]
        prompts: usize,
        /// Completions per prompt.
        #[arg(long, default_value_t = 8)]
        group: usize,
        /// Token budget per completion.
        #[arg(long, default_value_t = 16)]
        max_tokens: usize,
        /// Sampling temperature.
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// The run's directory (checkpoints, adapters, log); an existing run
    /// there is resumed.
    #[arg(long)]
    dir: PathBuf,
    /// The `strata-rl` task.
    #[arg(long, default_value = "format")]
    task: String,
    /// Batches to train on.
    #[arg(long, default_value_t = 40)]
    steps: u64,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    prompts: usize,
    /// Completions per prompt.
    #[arg(long, default_value_t = 8)]
    group: usize,
    /// Token budget per completion.
    #[arg(long, default_value_t = 16)]
    max_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// S: versions a rollout may lag the trainer (0 = synchronous).
    #[arg(long, default_value_t = 0)]
    staleness: u64,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// β of the KL penalty to the base model (0: none).
    #[arg(long, default_value_t = 0.0)]
    kl_beta: f64,
    /// Seed of prompts, sampling and the LoRA initialisation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds slept per sampled token: stands for slower remote nodes.
    #[arg(long, default_value_t = 0)]
    throttle_ms_per_token: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let model_path = match cli.model {
        Some(p) => p,
        None => strata_engine::default_model_path().context("finding the default model")?,
    };
    match cli.cmd {
        Cmd::Train(args) => train(&model_path, args),
        Cmd::Curve { dir, prompts } => curve(&model_path, &dir, prompts),
        Cmd::Probe {
            prompts,
            group,
            max_tokens,
            temperature,
        } => probe(&model_path, prompts, group, max_tokens, temperature),
    }
}

fn file_sha256(path: &Path) -> anyhow::Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).into())
}

fn train(model: &Path, a: TrainArgs) -> anyhow::Result<()> {
    let cfg = RunConfig {
        task: a.task,
        prompts_per_step: a.prompts,
        group_size: a.group,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        steps: a.steps,
        staleness: a.staleness,
        seed: a.seed,
        learner: LearnerSettings {
            lr: a.lr,
            rank: a.rank,
            kl_beta: a.kl_beta,
        },
    };
    // Refuse another run's directory before seconds of model loading.
    strata_trainer::run::write_config(&a.dir, &cfg)?;
    let engine = Engine::load(model)?;
    let llama = engine.model.config().clone();
    let lora = LoraConfig {
        rank: a.rank,
        ..LoraConfig::default()
    };
    let policy = PolicyModel::load_gguf(model, &llama, lora, candle_core::DType::F32, a.seed)?;
    let adam = AdamWConfig {
        lr: a.lr,
        ..AdamWConfig::default()
    };
    let grpo = GrpoConfig {
        kl_beta: a.kl_beta,
        ..GrpoConfig::default()
    };
    let mut learner = Learner::new(policy, adam, grpo, file_sha256(model)?)?;
    let source = LocalSource {
        sampler: LocalSampler::new(engine),
        delay_per_token: Duration::from_millis(a.throttle_ms_per_token),
    };
    let state = strata_trainer::run(
        &cfg,
        &a.dir,
        &mut learner,
        Box::new(source),
        &mut FileOnly,
        |l| {
            println!(
            "step {:3} v{:<3} sampled by v{:<3} reward {:.3} loss {:+.4} clip {:.3} w {:.3} sample {:.1}s train {:.1}s wall {:.0}s",
            l.step, l.version, l.sampled_by, l.train_reward, l.loss, l.clip_fraction, l.mean_weight,
            l.sample_secs, l.train_secs, l.wall_secs
        );
        },
    )?;
    println!(
        "done: {} steps, version {}, {:.0} s, {} batches dropped as stale",
        state.next_step, state.version, state.wall_secs, state.dropped
    );
    Ok(())
}

fn curve(model: &Path, dir: &Path, prompts: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dir.join("run.json")).context("reading run.json")?;
    let cfg: RunConfig = serde_json::from_str(&text)?;
    let sampler = LocalSampler::new(Engine::load(model)?);
    let points = strata_trainer::curve(&sampler, dir, &cfg.task, prompts, cfg.max_tokens)?;
    let mut csv = String::from("version,held_out_reward\n");
    println!("| version | mean held-out reward ({prompts} prompts, greedy) |\n|---|---|");
    for (v, r) in &points {
        println!("| {v} | {r:.3} |");
        csv.push_str(&format!("{v},{r:.4}\n"));
    }
    std::fs::write(dir.join("curve.csv"), csv)?;
    Ok(())
}

fn probe(
    model: &Path,
    prompts: usize,
    group: usize,
    max_tokens: usize,
    temperature: f32,
) -> anyhow::Result<()> {
    let engine = Engine::load(model)?;
    let cfg = engine.model.config().clone();
    let sampler = LocalSampler::new(engine);
    let spec = SampleSpec {
        group_size: group,
        max_tokens,
        temperature,
        seed: 7,
    };
    let mut last = None;
    for task in ["format", "copy", "reverse", "arithmetic"] {
        let ps = strata_rl::generate(task, 1, prompts)?;
        let t = Instant::now();
        let batch = sampler.sample(None, 0, &ps, &spec)?;
        let toks: usize = batch.rollouts.iter().map(|r| r.completion.len()).sum();
        let secs = t.elapsed().as_secs_f64();
        let greedy = sampler.evaluate(None, &ps, max_tokens)?;
        println!(
            "{task:10} sampled mean reward {:.3} greedy {:.3}  ({toks} tokens in {secs:.1} s, {:.1} tok/s)",
            batch.mean_reward(),
            greedy,
            toks as f64 / secs
        );
        for r in batch.rollouts.iter().take(2) {
            println!(
                "    {:?} -> {:.2}",
                sampler.completion_text(&r.completion)?,
                r.reward
            );
        }
        last = Some(batch);
    }
    let t = Instant::now();
    let policy = PolicyModel::load_gguf(
        model,
        &cfg,
        LoraConfig::default(),
        candle_core::DType::F32,
        1,
    )?;
    println!("f32 policy loaded in {:.1} s", t.elapsed().as_secs_f64());
    let mut learner = Learner::new(
        policy,
        AdamWConfig::default(),
        GrpoConfig::default(),
        [0; 32],
    )?;
    if let Some(batch) = last {
        let t = Instant::now();
        let stats = learner.step(&batch)?;
        println!("one update: {:.1} s, {stats:?}", t.elapsed().as_secs_f64());
    }
    Ok(())
}
