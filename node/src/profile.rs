//! The node measures what it can offer before announcing it: decode speed of
//! one sequence on this machine, and the memory the model takes.

use std::ops::Range;
use std::time::Instant;

use strata_engine::{
    generate, Engine, GenerateRequest, HiddenStates, HopBatcher, HopInput, HopOptions,
};

/// What the profile found.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Greedy decode speed of one sequence, tokens per second.
    pub tokens_per_sec: f32,
    /// Model weights in memory, MiB.
    pub model_mb: u32,
    /// Memory available to the node (MemAvailable plus the model), MiB.
    pub memory_mb: u32,
    /// A pipeline hop's decode time per block and token, ms (0 for a
    /// whole-model node, which announces `tokens_per_sec` instead).
    pub layer_ms: f32,
}

/// Generates a short greedy completion and times it when the engine holds
/// the whole model; a pipeline hop holding blocks `shard` times `tokens`
/// decode steps through them instead ([`layer_ms`]).
pub fn profile(engine: &Engine, tokens: usize, shard: Option<Range<usize>>) -> Profile {
    let model_mb = (engine.model.weight_bytes() >> 20) as u32;
    if let Some(layers) = shard {
        return Profile {
            tokens_per_sec: 0.0,
            model_mb,
            memory_mb: mem_available_mb().saturating_add(model_mb),
            layer_ms: layer_ms(engine, layers, tokens).unwrap_or(0.0),
        };
    }
    let prompt = engine
        .tokenizer
        .encode("The quick brown fox", false)
        .unwrap_or_else(|_| vec![1]);
    let start = Instant::now();
    let made = generate(&engine.model, GenerateRequest::greedy(prompt, tokens))
        .map(|f| f.tokens.len())
        .unwrap_or(0);
    let secs = start.elapsed().as_secs_f32().max(1e-6);
    Profile {
        tokens_per_sec: made as f32 / secs,
        model_mb,
        memory_mb: mem_available_mb().saturating_add(model_mb),
        layer_ms: 0.0,
    }
}

/// A pipeline hop's decode time per block: one sequence stepped `steps`
/// times, one row a step, through the blocks it holds (from token ids on
/// the first hop, from constant states elsewhere: the arithmetic costs the
/// same whatever the values), in milliseconds per block per token. `None`
/// if the engine refuses to run (it then has nothing to announce).
pub fn layer_ms(engine: &Engine, layers: Range<usize>, steps: usize) -> Option<f32> {
    let blocks = layers.len().max(1) as f32;
    let first = layers.start == 0;
    let cols = engine.model.config().hidden_size;
    let input = |rows: usize| {
        if first {
            Some(HopInput::Tokens(vec![1; rows]))
        } else {
            HiddenStates::new(rows, cols, vec![0.01; rows * cols])
                .ok()
                .map(HopInput::States)
        }
    };
    let mut b = HopBatcher::new(&engine.model, layers).ok()?;
    b.open(1, HopOptions::greedy(steps + 2)).ok()?;
    // A short prefill first, so the steps timed are decode steps.
    b.push(1, input(8)?).ok()?;
    b.step().ok()?;
    let start = Instant::now();
    for _ in 0..steps {
        b.push(1, input(1)?).ok()?;
        b.step().ok()?;
    }
    let ms = start.elapsed().as_secs_f32() * 1000.0 / steps.max(1) as f32 / blocks;
    Some(ms.max(1e-3))
}

fn mem_available_mb() -> u32 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| (kb / 1024) as u32)
        .unwrap_or(0)
}
