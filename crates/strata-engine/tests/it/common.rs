//! Shared set-up for tests that need the real model (CI runs scripts/fetch-model
//! first; a missing file fails with the message telling how to fetch it).

use std::sync::OnceLock;

use strata_engine::{ChatMessage, Engine};

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| match Engine::load_default() {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    })
}

pub fn chat(q: &str) -> Vec<u32> {
    engine()
        .chat_prompt(&[ChatMessage::new("user", q)])
        .expect("chat template")
}
