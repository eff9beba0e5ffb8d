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
//!
//! Files: this one holds the BPE itself (pre-tokenizing, merging, decoding);
//! `gguf` and `hf` read the two sources into a `Vocab`; `chat` applies the
//! chat template.

mod chat;
mod gguf;
mod hf;

pub use chat::ChatMessage;

use std::collections::HashMap;

use fancy_regex::Regex;

use crate::error::{EngineError, Result};

/// GPT-2's pre-tokenizer pattern.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

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

impl Tokenizer {
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
        let default_system = chat_template
            .as_deref()
            .and_then(chat::default_system_prompt);
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
