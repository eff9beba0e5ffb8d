//! Task prompts generated from a seed, with their expected answers: a
//! trainer and any auditor regenerate a job's prompts from its task name and
//! seed, byte for byte.
//!
//! | task | prompt asks for | expected | scored by |
//! |---|---|---|---|
//! | `arithmetic` | `a + b` or `a - b` with `a`, `b` of one or two digits (`a ≥ b` for `-`) | the integer | `arithmetic` |
//! | `copy` | a string of 3 to 8 lowercase letters, copied | the string | `copy` |
//! | `reverse` | such a string, reversed | the reversed string | `reverse` |
//! | `format` | a word of a category (a colour, a fruit, ...) | empty (any word) | `format` |
//!
//! Every prompt asks for the answer on a line `Answer: <answer>`.
//!
//! Prompt `i` of seed `s` depends only on `(task, s, i)`, so a longer list
//! from the same seed starts with the shorter one. A prompt is *held out*
//! when a hash of its text falls in one eighth of the hash space; seeds in
//! [`HELD_OUT_SEEDS`] generate only held-out prompts and every other seed
//! only the rest, so the two sets are disjoint by content, not just by seed.
//! The generator (splitmix64 over the seed and index) is written here and
//! never changes meaning without a new task name: a library's RNG could
//! change its stream between versions.

use std::ops::RangeInclusive;

use crate::RlError;

/// Seeds whose prompts are held out (for evaluation): the upper half of
/// the seed space. Every other seed generates training prompts.
pub const HELD_OUT_SEEDS: RangeInclusive<u64> = (1 << 63)..=u64::MAX;
/// Most prompts one [`generate`] call makes.
pub const MAX_PROMPTS: usize = 4096;
/// The task names.
pub const TASKS: &[&str] = &["arithmetic", "copy", "reverse", "format"];

/// One generated prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPrompt {
    /// The user message to send.
    pub prompt: String,
    /// The right answer (what the reward compares with).
    pub expected: String,
    /// The reward that scores it (see [`crate::rewards`]).
    pub reward: &'static str,
}

/// `n` prompts of `task` from `seed` (held out if `seed` is in
/// [`HELD_OUT_SEEDS`]).
pub fn generate(task: &str, seed: u64, n: usize) -> Result<Vec<TaskPrompt>, RlError> {
    let make: fn(&mut Rng) -> TaskPrompt = match task {
        "arithmetic" => arithmetic,
        "copy" => |r| letters(r, "copy"),
        "reverse" => |r| letters(r, "reverse"),
        "format" => format,
        _ => {
            return Err(RlError::UnknownTask {
                name: task.chars().take(64).collect(),
                known: TASKS.join(", "),
            })
        }
    };
    if n > MAX_PROMPTS {
        return Err(RlError::TooManyPrompts {
            asked: n,
            max: MAX_PROMPTS,
        });
    }
    let held_out = HELD_OUT_SEEDS.contains(&seed);
    Ok((0..n as u64)
        .map(|i| {
            let mut rng = Rng(mix(seed ^ mix(i)));
            // Draw until the prompt is in the seed's split: one draw in
            // eight is held out, and every task's space has both kinds
            // (tested), so this ends after a few draws.
            loop {
                let p = make(&mut rng);
                if is_held_out(&p.prompt) == held_out {
                    return p;
                }
            }
        })
        .collect())
}

/// The sampling seed of group member `member` of prompt `prompt` in a job
/// whose seed is `job_seed`: distinct members draw distinct completions,
/// and anyone can recompute which seed produced which.
pub fn member_seed(job_seed: u64, prompt: u64, member: u64) -> u64 {
    mix(mix(job_seed ^ mix(prompt)) ^ mix(member.wrapping_add(0x5eed)))
}

/// Whether `prompt` belongs to the held-out split.
fn is_held_out(prompt: &str) -> bool {
    // FNV-1a, then a mix: stable, and spread over all bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prompt.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h).is_multiple_of(8)
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform-enough in `0..n` for prompt generation (`n` is small, so the
    /// modulo bias is below 2^-50).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn arithmetic(r: &mut Rng) -> TaskPrompt {
    let (a, b) = (r.below(100) as i64, r.below(100) as i64);
    let (a, b, op, answer) = if r.below(2) == 0 {
        (a, b, '+', a + b)
    } else {
        let (a, b) = (a.max(b), a.min(b));
        (a, b, '-', a - b)
    };
    TaskPrompt {
        prompt: format!("What is {a} {op} {b}? Reply with only `Answer: <number>`."),
        expected: answer.to_string(),
        reward: "arithmetic",
    }
}

fn letters(r: &mut Rng, task: &'static str) -> TaskPrompt {
    let len = 3 + r.below(6) as usize;
    let s: String = (0..len)
        .map(|_| char::from(b'a' + r.below(26) as u8))
        .collect();
    let (prompt, expected) = if task == "copy" {
        (
            format!("Copy this string exactly: {s}. Reply with only `Answer: <string>`."),
            s,
        )
    } else {
        (
            format!("Reverse this string: {s}. Reply with only `Answer: <reversed string>`."),
            s.chars().rev().collect(),
        )
    };
    TaskPrompt {
        prompt,
        expected,
        reward: task,
    }
}

const CATEGORIES: &[&str] = &[
    "colour",
    "fruit",
    "animal",
    "country",
    "city",
    "vegetable",
    "tree",
    "flower",
    "metal",
    "planet",
    "tool",
    "instrument",
];
const ASKS: &[&str] = &["Name a", "Give me one", "Say the name of a", "Pick a"];

fn format(r: &mut Rng) -> TaskPrompt {
    let cat = CATEGORIES[r.below(CATEGORIES.len() as u64) as usize];
    let ask = ASKS[r.below(ASKS.len() as u64) as usize];
    TaskPrompt {
        prompt: format!("{ask} {cat}. Reply with only `Answer: <word>`."),
        expected: String::new(),
        reward: "format",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_deterministic_and_prefix_stable() {
        for task in TASKS {
            let a = generate(task, 7, 20).unwrap();
            assert_eq!(a, generate(task, 7, 20).unwrap(), "{task}");
            assert_eq!(a[..5], generate(task, 7, 5).unwrap()[..], "{task}");
            assert_ne!(a, generate(task, 8, 20).unwrap(), "{task}");
        }
        // Pinned: a change here changes every trainer's and auditor's
        // prompts, and needs a new task name.
        let p = &generate("arithmetic", 1, 1).unwrap()[0];
        assert_eq!(
            p.prompt,
            "What is 41 + 60? Reply with only `Answer: <number>`."
        );
        assert_eq!(p.expected, "101");
    }

    #[test]
    fn expected_answers_score_one() {
        for task in TASKS {
            for seed in [0, 1, 1 << 63, u64::MAX] {
                for p in generate(task, seed, 50).unwrap() {
                    let answer = format!("Answer: {}", p.expected);
                    let want = if *task == "format" {
                        "Answer: red"
                    } else {
                        &answer
                    };
                    assert_eq!(crate::score(p.reward, &p.expected, want), Ok(1.0), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn held_out_prompts_are_disjoint_from_training_ones() {
        for task in TASKS {
            let train: std::collections::HashSet<String> = (0..20u64)
                .flat_map(|s| generate(task, s, 50).unwrap())
                .map(|p| p.prompt)
                .collect();
            let held: Vec<TaskPrompt> = generate(task, *HELD_OUT_SEEDS.start(), 200).unwrap();
            assert!(!held.is_empty());
            for p in held {
                assert!(!train.contains(&p.prompt), "{task}: {}", p.prompt);
            }
        }
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(matches!(
            generate("division", 0, 1),
            Err(RlError::UnknownTask { .. })
        ));
        assert!(matches!(
            generate("copy", 0, MAX_PROMPTS + 1),
            Err(RlError::TooManyPrompts { .. })
        ));
        assert_eq!(generate("copy", 0, 0), Ok(vec![]));
    }

    #[test]
    fn member_seeds_differ_within_a_job() {
        let mut seen = std::collections::HashSet::new();
        for p in 0..16 {
            for m in 0..16 {
                assert!(seen.insert(member_seed(42, p, m)));
            }
        }
        assert_ne!(member_seed(42, 0, 0), member_seed(43, 0, 0));
    }
}
