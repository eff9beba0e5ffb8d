//! The tokenizer of a Hugging Face model directory: `tokenizer.json`
//! (byte-level BPE), with `tokenizer_config.json` and `config.json` for the
//! special tokens.

use std::path::Path;

use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::loader::read_json;

use super::{Tokenizer, Vocab, GPT2_PATTERN};

/// How many ids a `tokenizer.json` may leave unused (ids index a table).
const MAX_ID_GAPS: usize = 1 << 16;

/// A token id in JSON (a non-negative integer that fits `u32`).
fn json_id(v: &Json) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// The pre-tokenizer regex and digit splitting a `tokenizer.json` asks for.
/// Supported: `ByteLevel` (GPT-2's regex unless `use_regex` is false), `Digits`
/// (individual digits) and `Split` on a regex with `Isolated` behaviour (how
/// Llama-3 writes its pattern), alone or in a `Sequence`.
fn pre_tokenizer(pre: Option<&Json>) -> Result<(String, bool)> {
    let bad =
        |what: String| EngineError::Tokenizer(format!("tokenizer.json pre_tokenizer: {what}"));
    let steps: Vec<&Json> = match pre {
        None | Some(Json::Null) => Vec::new(),
        Some(p) if p.get("type").and_then(Json::as_str) == Some("Sequence") => p
            .get("pretokenizers")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("Sequence without pretokenizers".into()))?
            .iter()
            .collect(),
        Some(p) => vec![p],
    };
    let (mut split_regex, mut byte_level_regex, mut split_digits) = (None, false, false);
    for step in steps {
        match step.get("type").and_then(Json::as_str).unwrap_or("") {
            "ByteLevel" => {
                if step.get("add_prefix_space").and_then(Json::as_bool) == Some(true) {
                    return Err(bad("ByteLevel add_prefix_space is not supported".into()));
                }
                byte_level_regex |= step
                    .get("use_regex")
                    .and_then(Json::as_bool)
                    .unwrap_or(true)
            }
            "Digits" => {
                if step.get("individual_digits").and_then(Json::as_bool) != Some(true) {
                    return Err(bad("Digits without individual_digits".into()));
                }
                split_digits = true;
            }
            "Split" => {
                let regex = step
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Json::as_str);
                let isolated = step.get("behavior").and_then(Json::as_str) == Some("Isolated");
                let inverted = step.get("invert").and_then(Json::as_bool) == Some(true);
                match (regex, isolated, inverted, &split_regex) {
                    (Some(r), true, false, None) => split_regex = Some(r.to_string()),
                    _ => {
                        return Err(bad(
                            "only one Split on a regex, Isolated, is supported".into()
                        ))
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "{other:?} is not supported (byte-level BPE only)"
                )))
            }
        }
    }
    let pattern = match (split_regex, byte_level_regex) {
        (Some(r), false) => r,
        (None, true) => GPT2_PATTERN.to_string(),
        (None, false) => return Err(bad("no pre-tokenizer regex (ByteLevel or Split)".into())),
        (Some(_), true) => {
            return Err(bad(
                "a Split regex and ByteLevel's own regex together".into()
            ))
        }
    };
    Ok((pattern, split_digits))
}

impl Tokenizer {
    /// Loads the tokenizer of a Hugging Face model directory: `tokenizer.json`
    /// (byte-level BPE), plus, when present, `tokenizer_config.json` (special
    /// tokens and chat template) and `config.json` (`bos_token_id`,
    /// `eos_token_id`, used when `tokenizer_config.json` does not name them).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tokenizer = read_json(dir, "tokenizer.json", true)?.unwrap_or_default();
        let config = read_json(dir, "tokenizer_config.json", false)?;
        let model_config = read_json(dir, "config.json", false)?;
        Self::from_hf_json(&tokenizer, config.as_ref(), model_config.as_ref())
    }

    /// Builds the tokenizer from parsed `tokenizer.json`, `tokenizer_config.json`
    /// and `config.json` (see [`Tokenizer::from_hf_dir`]).
    fn from_hf_json(
        tokenizer: &Json,
        config: Option<&Json>,
        model_config: Option<&Json>,
    ) -> Result<Self> {
        let bad = |what: &str| EngineError::Tokenizer(format!("tokenizer.json: {what}"));
        let model = tokenizer.get("model").ok_or_else(|| bad("no \"model\""))?;
        match model.get("type").and_then(Json::as_str) {
            Some("BPE") | None => {}
            Some(t) => {
                return Err(bad(&format!(
                    "model type {t:?} is not supported (byte-level BPE only)"
                )))
            }
        }
        // SentencePiece-style BPE (Llama 2, Mistral) rewrites text first and
        // falls back to byte tokens: a different algorithm, refused by name.
        if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
            return Err(bad(
                "byte_fallback BPE is not supported (byte-level BPE only)",
            ));
        }
        if !matches!(tokenizer.get("normalizer"), None | Some(Json::Null)) {
            return Err(bad("a normalizer is not supported (byte-level BPE only)"));
        }
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("model.vocab is not an object"))?;
        let added = match tokenizer.get("added_tokens") {
            None | Some(Json::Null) => &[][..],
            Some(Json::Array(a)) => a.as_slice(),
            Some(_) => return Err(bad("added_tokens is not an array")),
        };
        let mut entries: Vec<(u32, String, bool)> = Vec::with_capacity(vocab.len() + added.len());
        for (token, id) in vocab {
            let id = json_id(id).ok_or_else(|| bad(&format!("token {token:?} has a bad id")))?;
            entries.push((id, token.clone(), false));
        }
        for a in added {
            let id = a.get("id").and_then(json_id);
            let content = a.get("content").and_then(Json::as_str);
            let (Some(id), Some(content)) = (id, content) else {
                return Err(bad("an added token lacks an id or content"));
            };
            // Added tokens are matched verbatim before BPE whether or not they
            // are flagged `special`, as llama.cpp's control and user-defined
            // types are: both are this tokenizer's "special" tokens.
            entries.push((id, content.to_string(), true));
        }
        // Ids index a table: refuse sparse ids that would make it huge.
        let size = entries.iter().map(|e| e.0 as usize + 1).max().unwrap_or(0);
        if size > entries.len() + MAX_ID_GAPS {
            return Err(bad(&format!(
                "token ids reach {size} for {} tokens",
                entries.len()
            )));
        }
        // Unused ids (rare) stay empty: no text encodes to them, they decode to nothing.
        let mut tokens = vec![String::new(); size];
        let mut special = vec![false; size];
        for (id, token, is_special) in entries {
            tokens[id as usize] = token;
            special[id as usize] |= is_special;
        }
        let merges = match model.get("merges") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(ms)) => ms
                .iter()
                .map(|m| match m {
                    // Older files: "a b"; newer ones: ["a", "b"] (tokens may hold spaces).
                    Json::String(s) => s.split_once(' ').map(|(a, b)| (a.into(), b.into())),
                    Json::Array(p) => match p.as_slice() {
                        [Json::String(a), Json::String(b)] => Some((a.clone(), b.clone())),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<(String, String)>>>()
                .ok_or_else(|| bad("malformed merge"))?,
            Some(_) => return Err(bad("model.merges is not an array")),
        };
        let (pattern, split_digits) = pre_tokenizer(tokenizer.get("pre_tokenizer"))?;
        let by_name = |key: &str| {
            let v = config?.get(key)?;
            let name = v.as_str().or_else(|| v.get("content")?.as_str())?;
            let id = vocab.get(name).and_then(json_id);
            id.or_else(|| {
                added.iter().find_map(|a| {
                    (a.get("content")?.as_str()? == name).then(|| a.get("id").and_then(json_id))?
                })
            })
        };
        let by_id = |key: &str| {
            let v = model_config?.get(key)?;
            // Some configs list several end tokens; the first is the main one.
            json_id(v).or_else(|| v.as_array()?.first().and_then(json_id))
        };
        let chat_template = config
            .and_then(|c| c.get("chat_template"))
            .and_then(Json::as_str)
            .map(str::to_string);
        Self::from_vocab(Vocab {
            tokens,
            special,
            merges,
            pattern,
            split_digits,
            bos: by_name("bos_token").or_else(|| by_id("bos_token_id")),
            eos: by_name("eos_token").or_else(|| by_id("eos_token_id")),
            chat_template,
        })
    }
}
