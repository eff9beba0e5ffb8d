//! The node measures what it can offer before announcing it: decode speed of
//! one sequence on this machine, and the memory the model takes.

use std::time::Instant;

use strata_engine::{generate, Engine, GenerateRequest};

/// What the profile found.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Greedy decode speed of one sequence, tokens per second.
    pub tokens_per_sec: f32,
    /// Model weights in memory, MiB.
    pub model_mb: u32,
    /// Memory available to the node (MemAvailable plus the model), MiB.
    pub memory_mb: u32,
}

/// Generates a short greedy completion and times it (when the engine holds
/// the `whole` model; a pipeline hop reports its memory only).
pub fn profile(engine: &Engine, tokens: usize, whole: bool) -> Profile {
    let model_mb = (engine.model.weight_bytes() >> 20) as u32;
    if !whole {
        return Profile {
            tokens_per_sec: 0.0,
            model_mb,
            memory_mb: mem_available_mb().saturating_add(model_mb),
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
    }
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
