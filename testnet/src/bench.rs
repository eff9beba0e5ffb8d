//! The whole-path benchmark: paid tasks per second through gateway, p2p,
//! node, receipts and relayer, at 1 and at many concurrent clients, against
//! a reference run of the same requests straight on the engine in the same
//! process; the difference is the share of time spent outside the model.
//! Also the chain fees the relayer paid per settled task.

use std::time::{Duration, Instant};

use strata_engine::{Batcher, ChatMessage, Engine, GenerateRequest};

/// Runs `requests` chat prompts of `max_tokens` each through one engine
/// with `concurrency` sequences batched at a time; returns the wall time.
pub fn engine_reference(
    engine: &Engine,
    prompts: &[String],
    max_tokens: usize,
    concurrency: usize,
) -> Duration {
    let start = Instant::now();
    let mut queue = prompts.iter();
    let mut batcher = Batcher::new(&engine.model);
    let stop: Vec<u32> = engine
        .tokenizer
        .token_id("<|im_end|>")
        .into_iter()
        .collect();
    loop {
        while batcher.active_len() < concurrency {
            let Some(p) = queue.next() else { break };
            let Ok(prompt) = engine.chat_prompt(&[ChatMessage::new("user", p)]) else {
                continue;
            };
            let mut req = GenerateRequest::greedy(prompt, max_tokens);
            req.stop_tokens = stop.clone();
            req.record_commitments = true;
            if batcher.add(req).is_err() {
                continue;
            }
        }
        if batcher.is_idle() {
            break;
        }
        if batcher.step().is_err() {
            break;
        }
        batcher.take_finished();
    }
    start.elapsed()
}

/// The prompts `clients` load-generator clients send, `per_client` each.
pub fn load_prompts(clients: usize, per_client: usize) -> Vec<String> {
    (0..clients)
        .flat_map(|i| (1..=per_client).map(move |n| crate::loadgen::prompt(i, n)))
        .collect()
}
