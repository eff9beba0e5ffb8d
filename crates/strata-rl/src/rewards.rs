//! The reward registry: named, versioned, deterministic functions of
//! (expected answer, completion text) into `[0, 1]`, with partial credit.
//!
//! Every task asks for its answer on a line `Answer: <answer>` (the
//! *strict* shape). A completion that answers in a looser shape (`answer is
//! 12`, or a bare number at the end) earns part of the credit, so a small
//! policy gets a gradient towards the format before it gets the content
//! right.
//!
//! | name | version | expected | scores |
//! |---|---|---|---|
//! | `format` | 1 | ignored | 1 strict shape with a non-empty answer; 0.5 a looser `answer` followed by text; else 0 |
//! | `arithmetic` | 1 | an integer | 1 strict and exact; 0.75 strict, not a bare integer, but its last integer is right; 0.5 no strict line but the completion's last integer is right; 0.25 strict integer, wrong; 0.1 strict, no integer; else 0 |
//! | `copy` | 1 | the string | strict: 1 − normalised edit distance (characters) between the answer and the expected string; no strict line: half that, over the whole trimmed completion |
//! | `reverse` | 1 | the reversed string | as `copy` (the task differs, the scoring does not) |
//!
//! Comparisons use at most [`MAX_COMPARED_CHARS`] characters of the
//! completion's answer: the edit distance is quadratic, and an answer that
//! long is wrong anyway. Expected answers are bounded by
//! [`MAX_EXPECTED_CHARS`].

use crate::RlError;

/// Longest expected answer a reward compares, in characters.
pub const MAX_EXPECTED_CHARS: usize = 256;
/// Most characters of a completion's answer a reward compares.
pub const MAX_COMPARED_CHARS: usize = 1024;

/// The marker of the strict answer shape, at the start of a line.
const ANSWER: &str = "Answer:";

/// One reward function of the registry.
#[derive(Debug)]
pub struct RewardFn {
    /// Its name, as a rollout job names it.
    pub name: &'static str,
    /// Its version: bumped whenever its scores change for any input.
    pub version: u32,
    /// What the expected answer must be (checked by [`RewardFn::check_expected`]).
    expected: Expected,
    score: fn(&str, &str) -> f32,
}

/// What a reward needs of its expected answer.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// Ignored (any text).
    Any,
    /// A decimal integer.
    Integer,
    /// Text to compare with.
    Text,
}

/// Every reward function, by name.
pub static REWARDS: &[RewardFn] = &[
    RewardFn {
        name: "format",
        version: 1,
        expected: Expected::Any,
        score: format_v1,
    },
    RewardFn {
        name: "arithmetic",
        version: 1,
        expected: Expected::Integer,
        score: arithmetic_v1,
    },
    RewardFn {
        name: "copy",
        version: 1,
        expected: Expected::Text,
        score: similarity_v1,
    },
    RewardFn {
        name: "reverse",
        version: 1,
        expected: Expected::Text,
        score: similarity_v1,
    },
];

/// The reward function called `name`.
pub fn reward(name: &str) -> Result<&'static RewardFn, RlError> {
    REWARDS
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| RlError::UnknownReward {
            name: name.chars().take(64).collect(),
            known: REWARDS
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Scores `completion` against `expected` with the reward called `name`.
pub fn score(name: &str, expected: &str, completion: &str) -> Result<f32, RlError> {
    reward(name)?.score(expected, completion)
}

impl RewardFn {
    /// Whether `expected` is an answer this reward can score against: at
    /// most [`MAX_EXPECTED_CHARS`] characters, and an integer for
    /// `arithmetic`.
    pub fn check_expected(&self, expected: &str) -> Result<(), RlError> {
        let len = expected.chars().count();
        if len > MAX_EXPECTED_CHARS {
            return Err(RlError::ExpectedTooLong {
                len,
                max: MAX_EXPECTED_CHARS,
            });
        }
        match self.expected {
            Expected::Integer if parse_integer(expected.trim()).is_none() => {
                Err(RlError::BadExpected {
                    reward: self.name,
                    what: "a decimal integer",
                })
            }
            _ => Ok(()),
        }
    }

    /// The reward of `completion` when `expected` is the right answer: in
    /// `[0, 1]`, the same for the same inputs on every machine.
    pub fn score(&self, expected: &str, completion: &str) -> Result<f32, RlError> {
        self.check_expected(expected)?;
        Ok((self.score)(expected, completion).clamp(0.0, 1.0))
    }
}

/// The text after `Answer:` on the first line that starts with it (after
/// leading spaces), trimmed; `None` if no line does.
fn strict_answer(completion: &str) -> Option<&str> {
    completion
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(ANSWER))
        .map(str::trim)
}

/// The text after the last `answer` (any case) and the `:`, `=` or spaces
/// after it, to the end of its line, trimmed; `None` if there is none.
fn loose_answer(completion: &str) -> Option<&str> {
    // ASCII lowercasing keeps byte offsets, so positions found in the copy
    // index the original.
    let lower = completion.to_ascii_lowercase();
    let at = lower.rfind("answer")? + "answer".len();
    let rest = completion[at..].trim_start_matches([' ', '\t', ':', '=']);
    let line = rest.lines().next().unwrap_or("").trim();
    Some(line)
}

/// `format` v1.
fn format_v1(_expected: &str, completion: &str) -> f32 {
    match strict_answer(completion) {
        Some(a) if !a.is_empty() => 1.0,
        _ => match loose_answer(completion) {
            Some(a) if !a.is_empty() => 0.5,
            _ => 0.0,
        },
    }
}

/// An integer written in decimal, in canonical form (no `+`, no leading
/// zeros, no `-0`): compared as text, so no length overflows anything.
fn canonical(negative: bool, digits: &str) -> String {
    let digits = digits.trim_start_matches('0');
    match (negative, digits.is_empty()) {
        (_, true) => "0".to_string(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits.to_string(),
    }
}

/// `s` as a decimal integer (an optional sign, digits, an optional final
/// `.`), canonical; `None` if it is anything else.
fn parse_integer(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let digits = s.strip_prefix(['-', '+', '−']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(canonical(s.starts_with(['-', '−']), digits))
}

/// The last integer written in the first [`MAX_COMPARED_CHARS`] characters
/// of `s` (a `-` right before its digits makes it negative), canonical;
/// `None` if there is none.
fn last_integer(s: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().take(MAX_COMPARED_CHARS).collect();
    let end = chars.iter().rposition(|c| c.is_ascii_digit())? + 1;
    let mut start = end;
    while start > 0 && chars[start - 1].is_ascii_digit() {
        start -= 1;
    }
    let digits: String = chars[start..end].iter().collect();
    let negative = start > 0 && matches!(chars[start - 1], '-' | '−');
    Some(canonical(negative, &digits))
}

/// `arithmetic` v1.
fn arithmetic_v1(expected: &str, completion: &str) -> f32 {
    let Some(want) = parse_integer(expected.trim()) else {
        return 0.0;
    };
    match strict_answer(completion) {
        Some(a) => match parse_integer(a) {
            Some(n) if n == want => 1.0,
            Some(_) => 0.25,
            None if last_integer(a).as_ref() == Some(&want) => 0.75,
            None => 0.1,
        },
        None if last_integer(completion).as_ref() == Some(&want) => 0.5,
        None => 0.0,
    }
}

/// One pair of matching quotes or backticks around `s`, removed.
fn unquote(s: &str) -> &str {
    for q in ['"', '\'', '`'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// `copy` and `reverse` v1.
fn similarity_v1(expected: &str, completion: &str) -> f32 {
    match strict_answer(completion) {
        Some(a) => similarity(expected, unquote(a)),
        None => 0.5 * similarity(expected, completion.trim()),
    }
}

/// 1 − the edit distance between `a` and (the first
/// [`MAX_COMPARED_CHARS`] characters of) `b`, over the longer length, in
/// characters; 1 for two empty strings.
fn similarity(a: &str, b: &str) -> f32 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().take(MAX_COMPARED_CHARS).collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let d = edit_distance(&a, &b);
    1.0 - d as f32 / longest as f32
}

/// Levenshtein distance (insertions, deletions, substitutions of one
/// character each cost 1), one row at a time.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_gives_partial_credit_for_a_loose_shape() {
        let s = |c: &str| score("format", "", c).unwrap();
        assert_eq!(s("Answer: blue"), 1.0);
        assert_eq!(s("I think so.\n  Answer: 42\n"), 1.0);
        assert_eq!(s("The answer is blue"), 0.5);
        assert_eq!(s("answer: blue"), 0.5);
        assert_eq!(s("Answer:"), 0.0, "an empty answer is no answer");
        assert_eq!(s("blue"), 0.0);
        assert_eq!(s(""), 0.0);
    }

    #[test]
    fn arithmetic_scores_exactness_and_shape() {
        let s = |c: &str| score("arithmetic", "19", c).unwrap();
        assert_eq!(s("Answer: 19"), 1.0);
        assert_eq!(s("Answer: 19."), 1.0);
        assert_eq!(s("Answer: +19"), 1.0);
        assert_eq!(s("Answer: 7 + 12 = 19"), 0.75);
        assert_eq!(s("7 + 12 = 19"), 0.5);
        assert_eq!(s("Answer: 18"), 0.25);
        assert_eq!(s("Answer: nineteen"), 0.1);
        assert_eq!(s("nineteen"), 0.0);
        assert_eq!(s("7 + 12 = 20"), 0.0);
        assert_eq!(score("arithmetic", "-3", "Answer: -3").unwrap(), 1.0);
        assert_eq!(score("arithmetic", "-3", "so 4 - 7 is -3").unwrap(), 0.5);
        assert_eq!(score("arithmetic", "3", "so 4 - 7 is -3").unwrap(), 0.0);
        assert_eq!(score("arithmetic", "0", "Answer: -0").unwrap(), 1.0);
        assert_eq!(score("arithmetic", "7", "Answer: 007").unwrap(), 1.0);
        assert_eq!(
            score("arithmetic", "1", &format!("Answer: {}", "9".repeat(40))).unwrap(),
            0.25,
            "a number of any length is still a number"
        );
    }

    #[test]
    fn copy_and_reverse_credit_each_character() {
        assert_eq!(score("copy", "abcd", "Answer: abcd").unwrap(), 1.0);
        assert_eq!(score("copy", "abcd", "Answer: \"abcd\"").unwrap(), 1.0);
        assert_eq!(score("copy", "abcd", "Answer: abed").unwrap(), 0.75);
        assert_eq!(score("copy", "abcd", "Answer: abc").unwrap(), 0.75);
        assert_eq!(score("copy", "abcd", "Answer: wxyz").unwrap(), 0.0);
        assert_eq!(score("copy", "abcd", "abcd").unwrap(), 0.5);
        assert_eq!(score("reverse", "dcba", "Answer: dcba").unwrap(), 1.0);
        assert_eq!(score("reverse", "dcba", "Answer: abcd").unwrap(), 0.0);
        assert_eq!(score("copy", "", "Answer:").unwrap(), 1.0);
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("flaw", "lawn"), 2);
        assert_eq!(d("héllo", "hello"), 1, "characters, not bytes");
    }

    #[test]
    fn unknown_names_and_bad_expected_answers_are_errors() {
        assert!(matches!(
            score("Format", "", "Answer: x"),
            Err(RlError::UnknownReward { ref name, .. }) if name == "Format"
        ));
        assert!(matches!(
            score("arithmetic", "twelve", "Answer: 12"),
            Err(RlError::BadExpected {
                reward: "arithmetic",
                ..
            })
        ));
        assert!(matches!(
            score("copy", &"a".repeat(MAX_EXPECTED_CHARS + 1), "Answer: a"),
            Err(RlError::ExpectedTooLong { .. })
        ));
        let names: Vec<&str> = REWARDS.iter().map(|r| r.name).collect();
        assert_eq!(names, ["format", "arithmetic", "copy", "reverse"]);
    }
}
