//! Strata engine benchmark against llama.cpp on the same GGUF and prompts:
//! `cargo run --release -p engine-bench` (set up llama.cpp first with
//! `scripts/bench-llamacpp-setup`; without it the llama.cpp column says so).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use strata_engine::{
    default_model_path, Batcher, ChatMessage, Engine, GenerateRequest, Model, Segment,
};

const N_NEW: usize = 128;
/// New tokens per sequence in the 8- and 32-stream runs.
const STREAM_NEW: usize = 64;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Decode tokens/s of one stream (the first token, which includes prefill, excluded).
fn one_stream(m: &Model, prompt: &[u32], commit: bool) -> Result<(f64, Vec<u32>)> {
    let mut b = Batcher::new(m);
    let mut req = GenerateRequest::greedy(prompt.to_vec(), N_NEW);
    req.record_commitments = commit;
    b.add(req)?;
    b.step()?;
    let t = Instant::now();
    let mut steps = 0;
    while !b.is_idle() {
        b.step()?;
        steps += 1;
    }
    let dt = t.elapsed().as_secs_f64();
    let tokens = b.take_finished().pop().context("no output")?.tokens;
    Ok((steps as f64 / dt, tokens))
}

/// Aggregate decode tokens/s of `n` concurrent streams (after all prefilled).
fn streams(m: &Model, prompts: &[Vec<u32>], n: usize, new: usize) -> Result<f64> {
    let mut b = Batcher::new(m);
    for i in 0..n {
        b.add(GenerateRequest::greedy(
            prompts[i % prompts.len()].clone(),
            new,
        ))?;
    }
    b.step()?;
    let t = Instant::now();
    let mut produced = 0;
    while !b.is_idle() {
        produced += b.step()?.len();
    }
    Ok(produced as f64 / t.elapsed().as_secs_f64())
}

/// Time to first token of a prompt (prefill plus the head and sampling).
fn ttft(m: &Model, prompt: &[u32]) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut b = Batcher::new(m);
        b.add(GenerateRequest::greedy(prompt.to_vec(), 1))?;
        let t = Instant::now();
        b.step()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Share of forward time spent recording commitments: the recorder's own work
/// (hash of inputs, sketch of outputs) measured on the rows of a decode, against
/// the forward pass of the same rows.
fn commitment_overhead(m: &Model, prompt: &[u32]) -> Result<f64> {
    let n = m.n_layers();
    let reps = 64;
    let mut cache = m.new_cache(0..n)?;
    let mut x = m.embed(prompt)?;
    let rows = x.rows();
    m.forward_layers(
        0..n,
        &mut x,
        &mut [Segment {
            cache: &mut cache,
            rows,
            observer: None,
            adapter: None,
        }],
    )?;
    let mut fwd = 0f64;
    let mut rec_t = 0f64;
    let mut rec = strata_engine::CommitmentRecorder::new(0..n, n, m.config().hidden_size);
    for i in 0..reps {
        let mut x = m.embed(&[(100 + i) as u32])?;
        let t = Instant::now();
        let mut hist = Vec::with_capacity(n);
        for l in 0..n {
            hist.push(x.as_slice().to_vec());
            m.forward_layers(
                l..l + 1,
                &mut x,
                &mut [Segment {
                    cache: &mut cache,
                    rows: 1,
                    observer: None,
                    adapter: None,
                }],
            )?;
        }
        fwd += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for l in 0..n {
            rec.record_input(l, &hist[l])?;
            let out = if l + 1 < n {
                &hist[l + 1]
            } else {
                x.as_slice()
            };
            rec.record_output(l, out)?;
        }
        let _ = rec.entries();
        rec_t += t.elapsed().as_secs_f64();
    }
    Ok(rec_t / fwd)
}

struct LlamaCpp {
    decode: f64,
    ttft: f64,
    rss: f64,
    agg8: f64,
    agg32: f64,
    greedy: Vec<u32>,
}

fn llama_cpp(
    prompt: &[u32],
    long: &[u32],
    stream_prompts: &[Vec<u32>],
    threads: usize,
) -> Result<LlamaCpp> {
    let home = std::env::var("STRATA_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/strata")
        });
    let py = home.join("llamacpp-venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-llamacpp.py");
    let join = |t: &[u32]| {
        t.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let out = Command::new(&py)
        .arg(script)
        .arg(default_model_path()?)
        .arg(join(prompt))
        .arg(join(long))
        .arg(N_NEW.to_string())
        .arg(threads.to_string())
        .arg(
            stream_prompts
                .iter()
                .map(|p| join(p))
                .collect::<Vec<_>>()
                .join(";"),
        )
        .arg(STREAM_NEW.to_string())
        .output()
        .with_context(|| {
            format!(
                "running {} (run scripts/bench-llamacpp-setup first)",
                py.display()
            )
        })?;
    anyhow::ensure!(
        out.status.success(),
        "llama.cpp bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout)?;
    let get = |k: &str| -> Result<String> {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
            .with_context(|| format!("llama.cpp output lacks {k}"))
    };
    Ok(LlamaCpp {
        decode: get("decode_tok_s")?.parse()?,
        ttft: get("ttft_s")?.parse()?,
        rss: get("peak_rss_mb")?.parse()?,
        agg8: get("agg8_tok_s")?.parse()?,
        agg32: get("agg32_tok_s")?.parse()?,
        greedy: get("greedy")?
            .split(',')
            .filter_map(|t| t.parse().ok())
            .collect(),
    })
}

fn main() -> Result<()> {
    // `--threads N` runs both engines with N threads (default: all cores).
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    // candle sizes its thread pool from this variable when first used, below.
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    let engine = Engine::load_default()?;
    let m = &engine.model;
    let tk = &engine.tokenizer;
    let chat = |q: &str| engine.chat_prompt(&[ChatMessage::new("user", q)]);
    let prompt = chat("Write a short story about a robot who learns to paint.")?;
    let others: Vec<Vec<u32>> = [
        "Explain how rainbows form.",
        "Give me three tips for better sleep.",
        "What is the history of the bicycle?",
        "Describe a day in the life of a honeybee.",
        "Why do cats purr?",
        "How does a compiler work?",
        "Write a poem about the ocean.",
        "What are prime numbers?",
    ]
    .iter()
    .map(|q| chat(q))
    .collect::<strata_engine::Result<_>>()?;
    let text =
        "The history of computing is a story of abstraction layered upon abstraction. ".repeat(40);
    let long: Vec<u32> = tk.encode(&text, false)?.into_iter().take(256).collect();

    println!(
        "strata-engine bench: {} ({} layers, kernel {}, {threads} threads)",
        default_model_path()?.display(),
        m.n_layers(),
        strata_engine::kernel_name()
    );
    let _ = one_stream(m, &prompt, false)?; // warm-up
    let (s1, greedy) = one_stream(m, &prompt, false)?;
    let t256 = ttft(m, &long)?;
    let (s1c, _) = one_stream(m, &prompt, true)?;
    // What llama.cpp is measured on (one sequence): comparable peaks.
    let rss = peak_rss_mb();
    let s8 = streams(m, &others, 8, STREAM_NEW)?;
    let s32 = streams(m, &others, 32, STREAM_NEW)?;
    let overhead = commitment_overhead(m, &prompt)?;
    // 32 sequences' f32 KV caches come on top.
    let rss_all = peak_rss_mb();

    let ll = llama_cpp(&prompt, &long, &others, threads);
    println!();
    println!("| metric                              | strata      | llama.cpp   | ratio strata/llama.cpp |");
    println!("|-------------------------------------|-------------|-------------|------------------------|");
    match &ll {
        Ok(l) => {
            println!(
                "| decode tok/s, 1 stream ({N_NEW} tokens)  | {s1:>11.1} | {:>11.1} | {:>22.2} |",
                l.decode,
                s1 / l.decode
            );
            println!(
                "| aggregate tok/s, 8 streams          | {s8:>11.1} | {:>11.1} | {:>22.2} |",
                l.agg8,
                s8 / l.agg8
            );
            println!(
                "| aggregate tok/s, 32 streams         | {s32:>11.1} | {:>11.1} | {:>22.2} |",
                l.agg32,
                s32 / l.agg32
            );
            println!(
                "| time to first token, 256-token prompt (s) | {t256:>5.3} | {:>11.3} | {:>22.2} |",
                l.ttft,
                t256 / l.ttft
            );
            println!(
                "| peak memory, 1 stream (RSS MB)      | {rss:>11.1} | {:>11.1} | {:>22.2} |",
                l.rss,
                rss / l.rss
            );
            println!(
                "| peak memory, with 32 streams (MB)   | {rss_all:>11.1} | {:>11} | {:>22} |",
                "n/a", "n/a"
            );
        }
        Err(e) => {
            println!("| decode tok/s, 1 stream              | {s1:>11.1} | unavailable: {e}");
            println!("| aggregate tok/s, 8 streams          | {s8:>11.1} |");
            println!("| aggregate tok/s, 32 streams         | {s32:>11.1} |");
            println!("| time to first token, 256 tokens (s) | {t256:>11.3} |");
            println!("| peak memory, 1 stream (RSS MB)      | {rss:>11.1} |");
            println!("| peak memory, with 32 streams (MB)   | {rss_all:>11.1} |");
        }
    }
    println!();
    println!(
        "32 streams / 1 stream: {:.2}x (goal >= 6x); 8 streams / 1 stream: {:.2}x",
        s32 / s1,
        s8 / s1
    );
    if let Ok(l) = &ll {
        println!(
            "llama.cpp on the same prompts: 32 streams / 1 stream {:.2}x, 8 streams / 1 stream {:.2}x",
            l.agg32 / l.decode,
            l.agg8 / l.decode
        );
    }
    println!("commitment recording: {:.2}% of forward time (goal < 3%); 1-stream decode with commitments on: {s1c:.1} tok/s", overhead * 100.0);
    if let Ok(l) = &ll {
        let agree = greedy
            .iter()
            .zip(&l.greedy)
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "greedy agreement with llama.cpp: first {agree} of {} tokens identical",
            greedy.len().min(l.greedy.len())
        );
        if agree < greedy.len().min(l.greedy.len()) {
            println!(
                "  diverges at token {agree}: strata {:?} vs llama.cpp {:?}",
                tk.decode(&greedy[agree..(agree + 1)], false)?,
                tk.decode(&l.greedy[agree..(agree + 1)], false)?
            );
            println!("  strata   : {:?}", tk.decode(&greedy, false)?);
            println!("  llama.cpp: {:?}", tk.decode(&l.greedy, false)?);
        }
    }
    Ok(())
}
