//! Generates a chat reply with the default model: `cargo run --release -p strata-engine --example generate -- "question"`.
use strata_engine::{generate, ChatMessage, Engine, GenerateRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the capital of France?".into());
    let engine = Engine::load_default()?;
    let prompt = engine.chat_prompt(&[ChatMessage::new("user", &q)])?;
    println!("prompt tokens: {}", prompt.len());
    let mut req = GenerateRequest::greedy(prompt, 64);
    req.stop_tokens = engine.tokenizer.eos().into_iter().collect();
    let t = std::time::Instant::now();
    let out = generate(&engine.model, req)?;
    let dt = t.elapsed().as_secs_f64();
    println!("{}", engine.tokenizer.decode(&out.tokens, true)?);
    println!(
        "{} tokens in {:.2}s = {:.1} tok/s",
        out.tokens.len(),
        dt,
        out.tokens.len() as f64 / dt
    );
    Ok(())
}
