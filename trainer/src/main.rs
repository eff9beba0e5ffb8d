//! `strata-trainer`: GRPO on LoRA adapters, fed by rollouts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sha2::{Digest, Sha256};
use strata_engine::Engine;
use strata_trainer::{
    AdamWConfig, FileOnly, GatewaySource, GrpoConfig, Learner, LearnerSettings, LocalSampler,
    LocalSource, LoraConfig, P2pPublisher, PolicyModel, Publisher, RolloutSource, RunConfig,
    SampleSpec,
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
        /// Evaluate every N-th version (and the last).
        #[arg(long, default_value_t = 1)]
        every: u64,
    },
    /// Staleness sweep: the same training run for each S, reporting wall
    /// time to a training reward and the final held-out reward.
    Sweep {
        /// The runs' parent directory (one subdirectory per S).
        #[arg(long)]
        dir: PathBuf,
        /// Staleness budgets to run.
        #[arg(long, value_delimiter = ',', default_value = "0,1,2,4")]
        staleness: Vec<u64>,
        /// Training reward (mean of 3 consecutive batches) to time.
        #[arg(long, default_value_t = 0.3)]
        target: f64,
        /// Held-out prompts for the final reward.
        #[arg(long, default_value_t = 32)]
        eval_prompts: usize,
        #[command(flatten)]
        train: SweepArgs,
    },
    /// Picks rollout workers from a gateway's nodes (Echo-2): the cheapest
    /// set that meets a target throughput under a staleness budget, shown
    /// as a table.
    Workers {
        /// The gateway (e.g. `http://127.0.0.1:8080`).
        #[arg(long)]
        gateway: String,
        /// The model name the gateway serves.
        #[arg(long, default_value = "SmolLM2-135M-Instruct")]
        model_name: String,
        /// Policy version the rollouts need (0: the base model).
        #[arg(long, default_value_t = 0)]
        policy_version: u64,
        /// Target completion tokens per second.
        #[arg(long)]
        target: f64,
        /// Completions per policy version (prompts × group).
        #[arg(long, default_value_t = 32)]
        completions: u32,
        /// Token budget per completion.
        #[arg(long, default_value_t = 16)]
        max_tokens: u32,
        /// S, the staleness budget.
        #[arg(long, default_value_t = 0)]
        staleness: u32,
        /// Seconds one training step takes.
        #[arg(long, default_value_t = 20.0)]
        train_step_secs: f64,
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
    #[command(flatten)]
    network: NetworkArgs,
}

/// Training on the network: rollouts from a gateway, versions to the nodes.
#[derive(Args, Default)]
struct NetworkArgs {
    /// Take rollouts from this gateway's rollout jobs instead of sampling in
    /// process (e.g. `http://127.0.0.1:8080`).
    #[arg(long, requires_all = ["api_key", "trainer_keypair"])]
    gateway: Option<String>,
    /// The gateway API key whose escrow pays for the rollouts.
    #[arg(long)]
    api_key: Option<String>,
    /// The model name the gateway serves.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model_name: String,
    /// The trainer's Solana keypair file: its public key is what nodes
    /// follow (`strata-node --follow-trainer`), it signs every announcement.
    #[arg(long)]
    trainer_keypair: Option<PathBuf>,
    /// The trainer's p2p listen address.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    p2p_listen: String,
    /// p2p addresses of nodes to dial (repeatable).
    #[arg(long)]
    peer: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let model_path = match cli.model {
        Some(p) => p,
        None => strata_engine::default_model_path().context("finding the default model")?,
    };
    match cli.cmd {
        Cmd::Train(args) => train(&model_path, args),
        Cmd::Curve {
            dir,
            prompts,
            every,
        } => curve(&model_path, &dir, prompts, every),
        Cmd::Sweep {
            dir,
            staleness,
            target,
            eval_prompts,
            train: t,
        } => sweep(&model_path, &dir, &staleness, target, eval_prompts, t),
        Cmd::Workers {
            gateway,
            model_name,
            policy_version,
            target,
            completions,
            max_tokens,
            staleness,
            train_step_secs,
        } => {
            let demand = strata_rl::workers::RolloutDemand {
                completions,
                max_tokens,
                staleness,
                train_step_secs,
            };
            workers(&gateway, &model_name, policy_version, target, &demand)
        }
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
    let base_model = file_sha256(model)?;
    let mut learner = Learner::new(policy, adam, grpo, base_model)?;
    let (source, mut publisher): (Box<dyn RolloutSource>, Box<dyn Publisher>) =
        match &a.network.gateway {
            None => (
                Box::new(LocalSource {
                    sampler: LocalSampler::new(engine),
                    delay_per_token: Duration::from_millis(a.throttle_ms_per_token),
                }),
                Box::new(FileOnly),
            ),
            Some(url) => network(url, &a.network, engine, base_model)?,
        };
    let state = strata_trainer::run(
        &cfg,
        &a.dir,
        &mut learner,
        source,
        publisher.as_mut(),
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

/// The gateway source and the p2p publisher of `--gateway`.
fn network(
    url: &str,
    n: &NetworkArgs,
    engine: Engine,
    base_model: [u8; 32],
) -> anyhow::Result<(Box<dyn RolloutSource>, Box<dyn Publisher>)> {
    let rt = std::sync::Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
    );
    let api_key = n.api_key.clone().context("--api-key")?;
    let key_path = n.trainer_keypair.as_ref().context("--trainer-keypair")?;
    let key = strata_chain::keys::read_or_create(key_path)
        .with_context(|| format!("trainer keypair {}", key_path.display()))?;
    let config = strata_p2p::P2pConfig {
        listen: vec![n.p2p_listen.clone()],
        ..strata_p2p::P2pConfig::default()
    };
    let key_pub = key.insecure_clone();
    let publisher = P2pPublisher::start(rt.clone(), key, base_model, config, &n.peer)?;
    println!(
        "trainer {} (nodes follow it with --follow-trainer), p2p peer {}",
        strata_chain::Signer::pubkey(&key_pub),
        publisher.p2p().node_id()
    );
    let source = GatewaySource::new(rt, url, &api_key, &n.model_name, engine.tokenizer.clone());
    Ok((Box::new(source), Box::new(publisher)))
}

/// Reads the gateway's workers and prints the selection for `demand`.
fn workers(
    gateway: &str,
    model: &str,
    version: u64,
    target: f64,
    demand: &strata_rl::workers::RolloutDemand,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/v1/workers", gateway.trim_end_matches('/'));
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(&url)
            .query(&[("model", model), ("policy_version", &version.to_string())])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    })?;
    let offers = strata_trainer::network::offers(&body)?;
    let selection = strata_rl::select(&offers, target, demand)?;
    println!("{selection}");
    Ok(())
}

fn curve(model: &Path, dir: &Path, prompts: usize, every: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dir.join("run.json")).context("reading run.json")?;
    let cfg: RunConfig = serde_json::from_str(&text)?;
    let state = strata_trainer::run::read_state(dir)?.unwrap_or_default();
    let sampler = LocalSampler::new(Engine::load(model)?);
    let points = strata_trainer::curve(&sampler, dir, &cfg.task, prompts, cfg.max_tokens, every)?;
    let mut csv = String::from("version,wall_secs,train_reward,held_out_reward\n");
    println!(
        "| version | wall time (s) | batch reward | held-out reward ({prompts} prompts, greedy) |\n|---|---|---|---|"
    );
    for (v, r) in &points {
        // The update that published version v, and the batch it learned from.
        let line = state.log.iter().find(|l| l.version == *v && *v > 0);
        let (wall, batch) = line.map_or((0.0, f64::NAN), |l| (l.wall_secs, l.train_reward));
        println!("| {v} | {wall:.0} | {batch:.3} | {r:.3} |");
        csv.push_str(&format!("{v},{wall:.1},{batch:.4},{r:.4}\n"));
    }
    std::fs::write(dir.join("curve.csv"), csv)?;
    println!("wrote {}", dir.join("curve.csv").display());
    Ok(())
}

/// The training settings a sweep shares across its runs.
#[derive(Args)]
struct SweepArgs {
    /// The `strata-rl` task.
    #[arg(long, default_value = "copy")]
    task: String,
    /// Batches per run.
    #[arg(long, default_value_t = 10)]
    steps: u64,
    /// Prompts per batch.
    #[arg(long, default_value_t = 2)]
    prompts: usize,
    /// Completions per prompt.
    #[arg(long, default_value_t = 8)]
    group: usize,
    /// Token budget per completion.
    #[arg(long, default_value_t = 12)]
    max_tokens: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Milliseconds slept per sampled token: stands for slower remote nodes.
    #[arg(long, default_value_t = 0)]
    throttle_ms_per_token: u64,
}

fn sweep(
    model: &Path,
    dir: &Path,
    budgets: &[u64],
    target: f64,
    eval_prompts: usize,
    t: SweepArgs,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &s in budgets {
        let run_dir = dir.join(format!("s{s}"));
        train(
            model,
            TrainArgs {
                dir: run_dir.clone(),
                task: t.task.clone(),
                steps: t.steps,
                prompts: t.prompts,
                group: t.group,
                max_tokens: t.max_tokens,
                temperature: 1.0,
                staleness: s,
                lr: t.lr,
                rank: 8,
                kl_beta: 0.0,
                seed: 1,
                throttle_ms_per_token: t.throttle_ms_per_token,
                network: NetworkArgs::default(),
            },
        )?;
        let state = strata_trainer::run::read_state(&run_dir)?.unwrap_or_default();
        let rewards: Vec<f64> = state.log.iter().map(|l| l.train_reward).collect();
        let reached = (2..rewards.len())
            .find(|&i| rewards[i - 2..=i].iter().sum::<f64>() / 3.0 >= target)
            .map(|i| state.log[i].wall_secs);
        let sampler = LocalSampler::new(Engine::load(model)?);
        let prompts = strata_rl::generate(
            &t.task,
            *strata_rl::HELD_OUT_SEEDS.start() + 17,
            eval_prompts,
        )?;
        let last = strata_trainer::run::adapter_path(&run_dir, state.version);
        let adapter = match state.version {
            0 => None,
            _ => Some(std::sync::Arc::new(strata_engine::Adapter::load(&last)?)),
        };
        let held_out = sampler.evaluate(adapter.as_ref(), &prompts, t.max_tokens)?;
        // How many versions behind the learner a batch was when trained on
        // (a logged version is the one the update published: one past it).
        let lag = state
            .log
            .iter()
            .map(|l| l.version.saturating_sub(1).saturating_sub(l.sampled_by))
            .max()
            .unwrap_or(0);
        rows.push((
            s,
            state.wall_secs,
            reached,
            held_out,
            rewards.last().copied().unwrap_or(0.0),
            lag,
            state.dropped,
        ));
    }
    println!(
        "\n| S | wall time (s) | time to batch reward ≥ {target} (3-batch mean) | final held-out reward | last batch reward | largest lag (versions) | dropped |\n|---|---|---|---|---|---|---|"
    );
    let base = rows.first().map(|r| r.1).unwrap_or(1.0);
    for (s, wall, reached, held, last, lag, dropped) in rows {
        let reached = reached.map_or("not reached".to_string(), |w| format!("{w:.0}"));
        println!(
            "| {s} | {wall:.0} ({:.2}x of S={}) | {reached} | {held:.3} | {last:.3} | {lag} | {dropped} |",
            wall / base,
            budgets[0]
        );
    }
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
