//! A byte-level BPE tokenizer built from a GGUF file's own metadata
//! (`tokenizer.ggml.tokens`, `.token_type`, `.merges`, `.pre`), as GPT-2 and the
//! SmolLM/StarCoder family use: text is split into pre-tokens (for SmolLM every
//! digit on its own first, then GPT-2's regex), each pre-token's UTF-8 bytes are
//! mapped to printable characters, and merges are applied by rank. Special
//! (control) tokens such as `<|im_start|>` are matched verbatim when allowed.
//!
//! Byte-level BPE spells text byte by byte, so `decode(encode(s)) == s` for all
//! scripts and emoji. One caveat: SmolLM's vocabulary has no token for six C0
//! control characters (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D) nor for bytes that
//! never occur in UTF-8 except 0xF1/0xF2 (planes 4–11): such characters are
//! dropped, exactly as llama.cpp does with the same file.
//!
//! The same tokenizer is built from a Hugging Face `tokenizer.json` (byte-level
//! BPE: `model.vocab`, `model.merges`, `added_tokens`, `pre_tokenizer`) for
//! models loaded from a directory; both sources reduce to one `Vocab`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use fancy_regex::Regex;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::weights::GgufFile;

/// GPT-2's pre-tokenizer pattern.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama-3's pre-tokenizer pattern (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token type of control tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Largest JSON file read from a model directory (tokenizer.json files of
/// large vocabularies are tens of MB); a bound so a hostile file cannot exhaust memory.
const MAX_JSON_BYTES: u64 = 256 << 20;
/// How many ids a `tokenizer.json` may leave unused (ids index a table).
const MAX_ID_GAPS: usize = 1 << 16;

/// A vocabulary as both sources describe it, before the lookup tables are built.
struct Vocab {
    /// Token strings by id (byte-level: bytes mapped to printable characters).
    tokens: Vec<String>,
    /// Tokens matched verbatim in trusted text and skipped when decoding.
    special: Vec<bool>,
    /// Merges by rank.
    merges: Vec<(String, String)>,
    /// Pre-tokenizer regex.
    pattern: String,
    /// Whether every decimal digit is its own pre-token first.
    split_digits: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    /// The Jinja chat template, read only for SmolLM's default system prompt.
    chat_template: Option<String>,
}

/// Reads and parses `dir/name`; a missing optional file is `None`.
pub(crate) fn read_json(dir: &Path, name: &str, required: bool) -> Result<Option<Json>> {
    let path = dir.join(name);
    if !path.is_file() {
        return if required {
            Err(EngineError::MissingModelFile {
                dir: dir.to_path_buf(),
                file: name.to_string(),
            })
        } else {
            Ok(None)
        };
    }
    let io = |source| EngineError::Io {
        path: path.clone(),
        source,
    };
    let len = std::fs::metadata(&path).map_err(io)?.len();
    if len > MAX_JSON_BYTES {
        return Err(EngineError::InvalidModel(format!(
            "{} is {len} bytes, more than the {MAX_JSON_BYTES} allowed",
            path.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", path.display())))
}

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

/// The tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    special: Vec<bool>,
    /// Special tokens by descending length, for greedy verbatim matching.
    specials_by_len: Vec<(String, u32)>,
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Token of each byte's character; a few vocabularies (SmolLM's among them)
    /// lack some control and never-in-UTF-8 bytes, which then cannot be encoded.
    byte_to_id: [Option<u32>; 256],
    char_to_byte: HashMap<char, u8>,
    pattern: Regex,
    split_digits: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    default_system: Option<String>,
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_chars() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
            c
        };
    }
    map
}

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

    /// The one constructor both sources (GGUF metadata, `tokenizer.json`) feed.
    fn from_vocab(v: Vocab) -> Result<Self> {
        let Vocab {
            tokens,
            special,
            merges: merges_raw,
            pattern,
            split_digits,
            bos,
            eos,
            chat_template,
        } = v;
        let pattern = Regex::new(&pattern).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let id_of = |i: usize| {
            u32::try_from(i).map_err(|_| EngineError::Tokenizer("vocabulary too large".into()))
        };
        let mut ids = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(id_of(i)?);
        }
        let mut specials_by_len: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| special[*i] && !t.is_empty())
            .map(|(i, t)| Ok((t.clone(), id_of(i)?)))
            .collect::<Result<_>>()?;
        specials_by_len.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let chars = bytes_to_chars();
        let mut byte_to_id = [None; 256];
        let mut char_to_byte = HashMap::with_capacity(256);
        for (b, c) in chars.iter().enumerate() {
            byte_to_id[b] = ids.get(&c.to_string()).copied();
            char_to_byte.insert(*c, b as u8);
        }
        if byte_to_id.iter().filter(|b| b.is_some()).count() < 128 {
            return Err(EngineError::Tokenizer(
                "vocabulary lacks most byte tokens: not a byte-level BPE vocabulary".into(),
            ));
        }
        let mut merges = HashMap::with_capacity(merges_raw.len());
        for (rank, (a, b)) in merges_raw.iter().enumerate() {
            let (Some(&ia), Some(&ib), Some(&ic)) =
                (ids.get(a), ids.get(b), ids.get(&format!("{a}{b}")))
            else {
                continue;
            };
            merges.entry((ia, ib)).or_insert((id_of(rank)?, ic));
        }
        let in_vocab = |id: Option<u32>| id.filter(|v| (*v as usize) < tokens.len());
        // SmolLM's ChatML template inserts this system prompt when none is given.
        let default_system = chat_template.and_then(|t| {
            // The template may hold a real newline or an escaped `\n`.
            ["'<|im_start|>system\n", "'<|im_start|>system\\n"]
                .iter()
                .find_map(|start| t.find(start).map(|i| t[i + start.len()..].to_string()))
                .and_then(|rest| {
                    rest.find("<|im_end|>")
                        .map(|j| rest[..j].replace("\\n", "\n"))
                })
        });
        Ok(Self {
            bos: in_vocab(bos),
            eos: in_vocab(eos),
            tokens,
            ids,
            special,
            specials_by_len,
            merges,
            byte_to_id,
            char_to_byte,
            pattern,
            split_digits,
            default_system,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    /// Beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    /// End-of-sequence token (for ChatML models `<|im_end|>`).
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// Id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }
    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text. With `allow_special`, special-token strings in the text
    /// become their single ids (use only on trusted text such as templates).
    pub fn encode(&self, text: &str, allow_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if !allow_special {
            self.encode_plain(text, &mut out)?;
            return Ok(out);
        }
        let mut rest = text;
        while !rest.is_empty() {
            // Earliest special token; at equal positions the longest.
            let hit = self
                .specials_by_len
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|p| (p, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            match hit {
                Some((p, len, id)) => {
                    self.encode_plain(&rest[..p], &mut out)?;
                    out.push(id);
                    rest = &rest[p + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out)?;
                    break;
                }
            }
        }
        Ok(out)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if self.split_digits {
            let mut start = 0;
            for (i, c) in text.char_indices() {
                if is_decimal_digit(c) {
                    self.encode_regex(&text[start..i], out)?;
                    self.encode_regex(&text[i..i + c.len_utf8()], out)?;
                    start = i + c.len_utf8();
                }
            }
            self.encode_regex(&text[start..], out)
        } else {
            self.encode_regex(text, out)
        }
    }

    fn encode_regex(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        for m in self.pattern.find_iter(text) {
            let m = m.map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer: {e}")))?;
            // Bytes without a token are dropped, as llama.cpp does; the pieces
            // between them are merged separately since they are not adjacent.
            for piece in m
                .as_str()
                .as_bytes()
                .split(|b| self.byte_to_id[*b as usize].is_none())
            {
                self.bpe(piece, out);
            }
        }
        Ok(())
    }

    /// Merges one pre-token: repeatedly the lowest-ranked adjacent pair (leftmost
    /// on ties), as the reference BPE does.
    fn bpe(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = bytes
            .iter()
            .filter_map(|b| self.byte_to_id[*b as usize])
            .collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            let Some((_, i, merged)) = best else { break };
            syms[i] = merged;
            syms.remove(i + 1);
        }
        out.extend_from_slice(&syms);
    }

    /// The bytes a sequence of ids spells (special tokens as their text unless
    /// `skip_special`). Streaming callers decode bytes and cut at UTF-8 boundaries.
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            let tok = self.tokens.get(id as usize).ok_or(EngineError::BadToken {
                id,
                vocab: self.tokens.len(),
            })?;
            if self.is_special(id) {
                if !skip_special {
                    out.extend_from_slice(tok.as_bytes());
                }
                continue;
            }
            for c in tok.chars() {
                match self.char_to_byte.get(&c) {
                    Some(b) => out.push(*b),
                    None => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Decodes ids to text (invalid UTF-8, possible mid-character, becomes U+FFFD).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)?).into_owned())
    }

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

/// Unicode decimal digits (`\p{Nd}`), which the Digits pre-tokenizer isolates.
fn is_decimal_digit(c: char) -> bool {
    c.is_ascii_digit() || unicode_nd(c)
}

/// Nd ranges outside ASCII come in aligned runs of ten starting at a code point
/// ending in 0 or 6 (Arabic-Indic, Devanagari, fullwidth, …). This covers the
/// common scripts; exotic numerics (fractions, Roman numerals) are not Nd.
fn unicode_nd(c: char) -> bool {
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10,
    ];
    let u = c as u32;
    ZEROS.iter().any(|z| u >= *z && u < z + 10)
}
