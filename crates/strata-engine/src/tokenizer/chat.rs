//! The ChatML chat template (SmolLM2's): turns messages into token ids.

use crate::error::{EngineError, Result};

use super::Tokenizer;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

impl Tokenizer {
    /// Applies the ChatML chat template (the SmolLM2 template: a default system
    /// prompt when the first message is not a system message) and, with
    /// `add_generation_prompt`, opens the assistant's turn. Message contents are
    /// encoded as plain text: a user cannot inject control tokens.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let start = self
            .token_id("<|im_start|>")
            .ok_or_else(|| EngineError::Tokenizer("model has no <|im_start|> token".into()))?;
        let end = self
            .token_id("<|im_end|>")
            .ok_or_else(|| EngineError::Tokenizer("model has no <|im_end|> token".into()))?;
        let mut out = Vec::new();
        let turn = |role: &str, content: &str, out: &mut Vec<u32>| -> Result<()> {
            out.push(start);
            self.encode_plain(&format!("{role}\n"), out)?;
            self.encode_plain(content, out)?;
            out.push(end);
            self.encode_plain("\n", out)
        };
        if messages.first().map(|m| m.role != "system").unwrap_or(true) {
            if let Some(sys) = &self.default_system {
                turn("system", sys, &mut out)?;
            }
        }
        for m in messages {
            turn(&m.role, &m.content, &mut out)?;
        }
        if add_generation_prompt {
            out.push(start);
            self.encode_plain("assistant\n", &mut out)?;
        }
        Ok(out)
    }
}

/// The system prompt SmolLM's ChatML template inserts when a chat has none,
/// read from the template's Jinja text.
pub(super) fn default_system_prompt(t: &str) -> Option<String> {
    // The template may hold a real newline or an escaped `\n`.
    ["'<|im_start|>system\n", "'<|im_start|>system\\n"]
        .iter()
        .find_map(|start| t.find(start).map(|i| t[i + start.len()..].to_string()))
        .and_then(|rest| {
            rest.find("<|im_end|>")
                .map(|j| rest[..j].replace("\\n", "\n"))
        })
}
