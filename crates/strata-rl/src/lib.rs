//! RL rollouts on Strata: the reward functions a rollout job is scored
//! with, and the seeded task prompts they score.
//!
//! Every reward here is a pure, deterministic function of (what the prompt
//! expects, the completion's text) into `[0, 1]`, with partial credit, so a
//! gateway, a trainer and any auditor compute the same number from the same
//! text: a reward in a rollout result is data to recompute, never to trust.
//! Each reward has a name and a version; a change of meaning is a new
//! version, so a stored result keeps saying what scored it.
//!
//! Task prompts are generated from a seed ([`tasks::generate`]) so that a
//! trainer and an auditor can regenerate a job's prompts and their expected
//! answers; seeds from [`tasks::HELD_OUT_SEEDS`] give held-out prompts,
//! disjoint by content from every training seed's.
//!
//! What this crate is not: a trainer, a policy, or anything that talks to
//! the network. It has no I/O.
#![warn(missing_docs)]

pub mod rewards;
pub mod tasks;

pub use rewards::{reward, score, RewardFn, REWARDS};
pub use tasks::{generate, member_seed, TaskPrompt, HELD_OUT_SEEDS};

/// Why a reward or a task could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RlError {
    /// No reward function of this name (the known ones are listed).
    #[error("unknown reward function `{name}`; known: {known}")]
    UnknownReward {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// No task of this name (the known ones are listed).
    #[error("unknown task `{name}`; known: {known}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// An expected answer longer than rewards compare (the edit distance is
    /// quadratic, so its inputs are bounded).
    #[error("expected answer of {len} characters; at most {max}")]
    ExpectedTooLong {
        /// Its length in characters.
        len: usize,
        /// [`rewards::MAX_EXPECTED_CHARS`].
        max: usize,
    },
    /// An expected answer this reward cannot score against.
    #[error("reward `{reward}` expects {what} as the expected answer")]
    BadExpected {
        /// The reward's name.
        reward: &'static str,
        /// What it expects.
        what: &'static str,
    },
    /// More prompts asked of a task than one call generates.
    #[error("{asked} prompts asked for; at most {max} per call")]
    TooManyPrompts {
        /// How many were asked for.
        asked: usize,
        /// [`tasks::MAX_PROMPTS`].
        max: usize,
    },
}
