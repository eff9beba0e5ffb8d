//! The GGUF-built tokenizer against reference encodings (llama.cpp 0.3.36 on the
//! same file) and exact round-trips.

use strata_engine::ChatMessage;

use crate::common::engine;

#[test]
fn encodings_match_llama_cpp() {
    let t = &engine().tokenizer;
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[19556, 905]),
        (
            "12345 apples cost $3.50!",
            &[33, 34, 35, 36, 37, 13855, 1708, 1885, 35, 30, 37, 32, 17],
        ),
        (
            "naïve café — 東京 🤖👍🏽",
            &[
                3546, 46494, 37366, 1841, 17097, 247, 126, 16736, 122, 15107, 114, 240, 10813, 235,
                231, 10813, 233, 138,
            ],
        ),
        (
            "  leading spaces\n\nnew\tlines",
            &[216, 2899, 5600, 198, 198, 2241, 197, 5110],
        ),
        (
            "Привет, мир! नमस्ते दुनिया",
            &[
                155, 249, 46879, 16464, 32547, 28, 41337, 7872, 9175, 17, 12335, 118, 35090, 38770,
                16525, 26293, 30581, 12335, 116, 42990, 30658, 27011, 32932, 18075,
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            &t.encode(text, false).unwrap(),
            want,
            "encoding of {text:?}"
        );
    }
}

#[test]
fn chat_template_matches_llama_cpp() {
    let e = engine();
    let got = e
        .chat_prompt(&[ChatMessage::new("user", "What is the capital of France?")])
        .unwrap();
    let want = [
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
        407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1,
        520, 9531, 198,
    ];
    assert_eq!(got, want);
    assert_eq!(e.tokenizer.token_id("<|im_start|>"), Some(1));
    assert_eq!(e.tokenizer.token_id("<|im_end|>"), Some(2));
}

#[test]
fn round_trips_are_exact() {
    let t = &engine().tokenizer;
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Ünïcödé: ß, æ, ø, å — «quotes» ‘single’ “double”",
        "中文测试：你好，世界！日本語のテキスト。한국어 텍스트.",
        "العربية: مرحبا بالعالم. עברית: שלום עולם.",
        "हिन्दी और বাংলা और ไทย ภาษา",
        "Emoji: 😀🎉👩‍👩‍👧‍👦🏳️‍🌈 🇫🇷 ✨",
        "Code: fn main() { println!(\"{}\", 1_000_000 + 0x1F); }\n\t\r\n",
        "   multiple   spaces   and trailing   ",
        "digits 0123456789 ٠١٢٣٤٥٦٧٨٩ and math ∑∫√π≈3.14159",
        "",
    ];
    for s in texts {
        let ids = t.encode(s, false).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), s, "round-trip of {s:?}");
    }
}

#[test]
fn special_tokens_only_when_allowed() {
    let t = &engine().tokenizer;
    let s = "<|im_start|>user";
    assert_eq!(t.encode(s, true).unwrap()[0], 1);
    let plain = t.encode(s, false).unwrap();
    assert!(
        !plain.contains(&1),
        "user text must not become control tokens"
    );
    assert_eq!(t.decode(&plain, false).unwrap(), s);
}
