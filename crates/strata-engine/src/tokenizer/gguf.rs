//! The tokenizer of a GGUF file, from its metadata (`tokenizer.ggml.*`).

use candle_core::quantized::gguf_file::Value;

use crate::error::{EngineError, Result};
use crate::loader::gguf::GgufFile;

use super::{Tokenizer, Vocab, GPT2_PATTERN};

/// Llama-3's pre-tokenizer pattern (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token type of control tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    match file.content.metadata.get(key) {
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(EngineError::Tokenizer(format!("{key} holds a non-string"))),
            })
            .collect(),
        _ => Err(EngineError::Tokenizer(format!("missing metadata {key}"))),
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a GGUF model file.
    pub fn from_gguf(path: &std::path::Path) -> Result<Self> {
        Self::from_gguf_file(&GgufFile::open(path)?)
    }

    pub(crate) fn from_gguf_file(file: &GgufFile) -> Result<Self> {
        let meta = &file.content.metadata;
        match meta.get("tokenizer.ggml.model") {
            Some(Value::String(m)) if m == "gpt2" => {}
            Some(Value::String(m)) => {
                return Err(EngineError::Tokenizer(format!(
                    "tokenizer model {m:?} is not supported (byte-level BPE \"gpt2\" only)"
                )))
            }
            _ => {
                return Err(EngineError::Tokenizer(
                    "missing tokenizer.ggml.model".into(),
                ))
            }
        }
        let tokens = string_array(file, "tokenizer.ggml.tokens")?;
        let merges = string_array(file, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(EngineError::Tokenizer(format!("malformed merge {m:?}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<i64> = match meta.get("tokenizer.ggml.token_type") {
            Some(Value::Array(vs)) => vs.iter().map(|v| int_of(v).unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(EngineError::Tokenizer(
                "token_type and tokens differ in length".into(),
            ));
        }
        let pre = match meta.get("tokenizer.ggml.pre") {
            Some(Value::String(p)) => p.clone(),
            _ => "gpt2".to_string(),
        };
        let (pattern, split_digits) = match pre.as_str() {
            "llama-bpe" | "llama3" => (LLAMA3_PATTERN, false),
            "smollm" | "starcoder" | "refact" | "codeshell" => (GPT2_PATTERN, true),
            _ => (GPT2_PATTERN, false),
        };
        let special = types
            .iter()
            .map(|&t| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .collect();
        let get_id = |key: &str| {
            meta.get(key)
                .and_then(int_of)
                .and_then(|v| u32::try_from(v).ok())
        };
        let chat_template = match meta.get("tokenizer.chat_template") {
            Some(Value::String(t)) => Some(t.clone()),
            _ => None,
        };
        Self::from_vocab(Vocab {
            tokens,
            special,
            merges,
            pattern: pattern.to_string(),
            split_digits,
            bos: get_id("tokenizer.ggml.bos_token_id"),
            eos: get_id("tokenizer.ggml.eos_token_id"),
            chat_template,
        })
    }
}
