//! `strata-audit-bench`: false positives of the audit path, counted.
//!
//! Honest tasks are served by the real engine in child processes with 1 and
//! 2 threads, each in three batch mixes (alone, 8 at once with staggered
//! joins, 16 at once), with greedy and sampled decoding, incrementally (one
//! token per step). This process then audits every task the way the network
//! does: the node's own code re-derives the states in one prefill pass and
//! builds the opening (`strata_node::openings::build_opening`), the opening
//! crosses the wire encoding, and the verifier's own checker
//! (`strata_verifier::check::check_opening`) re-runs **every** layer and
//! re-samples every generated step. It prints the number of layer re-checks
//! and how many failed (the goal: none), with the largest deviation seen.
//!
//! ```sh
//! cargo run -p strata-verifier --bin strata-audit-bench -- --tasks-per-run 60   # the dev profile builds the engine optimised
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use strata_chain::{Keypair, Signer};
use strata_engine::{Batcher, ChatMessage, Engine, GenerateRequest};
use strata_node::archive::TaskRecord;
use strata_node::openings::{build_opening, sampling_params};
use strata_wire::audit::{OpeningResponse, TaskOpening};
use strata_wire::{tokens_hash, Receipt, ReceiptBody, Sampling, Voucher};

#[derive(Parser)]
#[command(
    name = "strata-audit-bench",
    version,
    about = "Count false positives of the audit path"
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Tasks served per (thread count, batch mix) run; 6 runs in all.
    #[arg(long, default_value_t = 60)]
    tasks_per_run: usize,
    /// Tokens generated per task.
    #[arg(long, default_value_t = 24)]
    max_tokens: usize,
}

#[derive(Subcommand)]
enum Role {
    /// (internal) Serve tasks and write their records; run with CANDLE_NUM_THREADS set.
    Serve {
        /// Tasks to serve.
        #[arg(long)]
        tasks: usize,
        /// Sequences joining the batch at once (1 = each task alone).
        #[arg(long)]
        concurrent: usize,
        /// Tokens generated per task.
        #[arg(long)]
        max_tokens: usize,
        /// Where the records go.
        #[arg(long)]
        out: PathBuf,
    },
}

const MIXES: [(&str, usize); 3] = [("alone", 1), ("batch of 8", 8), ("batch of 16", 16)];
const THREADS: [usize; 2] = [1, 2];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Serve {
            tasks,
            concurrent,
            max_tokens,
            out,
        }) => serve(tasks, concurrent, max_tokens, &out),
        None => audit_all(&cli),
    }
}

fn engine() -> anyhow::Result<Engine> {
    Engine::load(&strata_engine::default_model_path()?)
        .context("loading the default model (scripts/fetch-model)")
}

/// Serves `tasks` tasks, `concurrent` joining the batch together (staggered
/// by one step each), and writes their records to `out`.
fn serve(tasks: usize, concurrent: usize, max_tokens: usize, out: &Path) -> anyhow::Result<()> {
    let engine = engine()?;
    let node = Keypair::new();
    let client = Keypair::new();
    std::fs::create_dir_all(out)?;
    let topics = [
        "rivers",
        "mountains",
        "bread",
        "stars",
        "rain",
        "cats",
        "ships",
        "music",
    ];
    let mut served = 0;
    while served < tasks {
        let mut batcher = Batcher::new(&engine.model);
        let mut jobs = Vec::new();
        for j in 0..concurrent.min(tasks - served) {
            let i = served + j;
            let prompt = engine.chat_prompt(&[ChatMessage::new(
                "user",
                &format!(
                    "Tell me something about {} (#{i}).",
                    topics[i % topics.len()]
                ),
            )])?;
            // Half greedy, half sampled.
            let sampling = Sampling {
                temperature: if i % 2 == 0 { 0.0 } else { 0.8 },
                top_p: 0.95,
                top_k: 40,
                seed: i as u64,
            };
            let mut req = GenerateRequest::greedy(prompt.clone(), max_tokens);
            req.sampling = sampling_params(&sampling);
            req.record_commitments = true;
            let id = batcher.add(req)?;
            jobs.push((id, prompt, sampling));
            // Staggered joins: a new sequence's prefill shares a pass with
            // the others' one-token decode rows.
            batcher.step()?;
        }
        let finished = batcher.run_to_completion()?;
        for (id, prompt, sampling) in jobs {
            let f = finished
                .iter()
                .find(|f| f.id == id)
                .context("a task did not finish")?;
            let root = f.commitments.as_ref().context("no commitments")?.root();
            let body = ReceiptBody {
                version: strata_wire::receipt::RECEIPT_VERSION,
                task_id: blake3::hash(format!("{:?}-{served}-{id}", out).as_bytes()).into(),
                node: node.pubkey().to_bytes(),
                model_hash: [0; 32],
                input_hash: tokens_hash(&prompt),
                output_hash: tokens_hash(&f.tokens),
                prompt_tokens: prompt.len() as u32,
                completion_tokens: f.tokens.len() as u32,
                commitment_root: root,
                sampling,
                price: 1,
                voucher: Voucher::sign(&client, &node.pubkey(), 1),
                finished_at_ms: 0,
                hop: None,
                adapter: None,
            };
            let record = TaskRecord {
                receipt: Receipt::sign(&node, body)?,
                prompt,
                output: f.tokens.clone(),
            };
            std::fs::write(
                out.join(format!("{:05}.task", served)),
                strata_wire::encode(&record),
            )?;
            served += 1;
        }
    }
    Ok(())
}

/// Serves in child processes (each thread count × mix), then audits every
/// task here, every layer and every step.
fn audit_all(cli: &Cli) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut runs = Vec::new();
    for threads in THREADS {
        for (mix, concurrent) in MIXES {
            let out = dir.path().join(format!("t{threads}-c{concurrent}"));
            let status = Command::new(&exe)
                .env("CANDLE_NUM_THREADS", threads.to_string())
                .args(["serve", "--tasks", &cli.tasks_per_run.to_string()])
                .args(["--concurrent", &concurrent.to_string()])
                .args(["--max-tokens", &cli.max_tokens.to_string()])
                .arg("--out")
                .arg(&out)
                .status()
                .context("serving in a child process")?;
            if !status.success() {
                bail!("serving with {threads} threads, {mix}: {status}");
            }
            runs.push((threads, mix, out));
        }
    }
    let engine = engine()?;
    let n_layers = engine.model.n_layers() as u32;
    let all_layers: Vec<u32> = (0..n_layers).collect();
    println!(
        "audit path false positives: serving with 1 and 2 threads (incremental decode), auditing with {} (prefill re-derivation, every layer, every step)\n",
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "all cores".into())
    );
    println!("| serving threads | batch mix | tasks | layer re-checks | failed | sampled steps re-checked | failed | largest deviation |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let (mut layer_total, mut layer_failed) = (0u64, 0u64);
    let (mut steps_total, mut tasks_failed) = (0u64, 0u64);
    for (threads, mix, out) in runs {
        let mut files: Vec<_> = std::fs::read_dir(&out)?
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        let (mut layers, mut failed, mut steps, mut steps_failed, mut worst) =
            (0u64, 0u64, 0u64, 0u64, 0f32);
        for file in &files {
            let record: TaskRecord = strata_wire::decode(&std::fs::read(file)?, 1 << 20)?;
            let (opening, root) = build_opening(&engine.model, &record, &all_layers, None)?;
            if root != record.receipt.body.commitment_root {
                bail!(
                    "{}: the re-derived root differs from the served one",
                    file.display()
                );
            }
            // Across the wire encoding, as the verifier receives it.
            let bytes = strata_wire::encode(&OpeningResponse::Opened(Box::new(opening)));
            let OpeningResponse::Opened(opening) = OpeningResponse::decode(&bytes)? else {
                bail!("the opening did not survive its encoding");
            };
            let opening: TaskOpening = *opening;
            let all_steps: Vec<u32> = (0..record.output.len() as u32).collect();
            let checked = strata_verifier::check::check_opening(
                &engine.model,
                &record.receipt.body.model_hash,
                &record.receipt.body,
                &all_layers,
                &all_steps,
                &opening,
            );
            layers += u64::from(n_layers);
            steps += all_steps.len() as u64;
            worst = worst.max(checked.max_rel_dev);
            if !checked.passed() {
                tasks_failed += 1;
                match checked.failed_check() {
                    Some(strata_wire::audit::FailedCheck::Sampling(_)) => steps_failed += 1,
                    _ => failed += 1,
                }
                eprintln!("{}: {:?}", file.display(), checked.outcome);
            }
        }
        println!(
            "| {threads} | {mix} | {} | {layers} | {failed} | {steps} | {steps_failed} | {worst:.2e} |",
            files.len()
        );
        layer_total += layers;
        layer_failed += failed;
        steps_total += steps;
    }
    println!(
        "\n{layer_total} honest layer re-checks, {layer_failed} failed; {steps_total} sampled steps re-checked; {tasks_failed} honest tasks failed their audit"
    );
    if tasks_failed > 0 {
        bail!("false positives: {tasks_failed} honest tasks failed");
    }
    Ok(())
}
