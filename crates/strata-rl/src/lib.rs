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
//! [`workers::select`] picks the cheapest rollout workers that meet a
//! target throughput under a staleness budget, from the offers a caller
//! fills from capacity announcements, and says what the choice implies for
//! a training step.
//!
//! What this crate is not: a trainer, a policy, or anything that talks to
//! the network. It has no I/O.
#![warn(missing_docs)]

pub mod rewards;
pub mod tasks;
pub mod workers;

pub use rewards::{reward, score, RewardFn, REWARDS};
pub use tasks::{generate, member_seed, TaskPrompt, HELD_OUT_SEEDS};
pub use workers::{select, Chosen, Ignored, IgnoredWhy, RolloutDemand, Selection, WorkerOffer};

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
    /// No worker offers to choose from.
    #[error("no worker offers to choose rollout workers from")]
    NoOffers,
    /// A target throughput that is not a positive finite number.
    #[error("target throughput {target} tokens/s; it must be a positive finite number")]
    BadTarget {
        /// The target, as given.
        target: String,
    },
    /// A rollout demand no worker can serve.
    #[error("rollout demand with {what}")]
    BadDemand {
        /// What is wrong with it.
        what: &'static str,
    },
    /// Two offers with one id.
    #[error("two worker offers with id `{id}`; keep one per worker")]
    DuplicateWorker {
        /// The id.
        id: String,
    },
    /// Every offer was left out (each one's reason is listed).
    #[error("none of {offered} worker offers is usable: {why}")]
    NoUsableWorkers {
        /// How many offers there were.
        offered: usize,
        /// Each offer's id and why it was left out.
        why: String,
    },
    /// A step time no throughput gives: not longer than training when
    /// synchronous, shorter than training otherwise.
    #[error(
        "no throughput gives a {step_secs} s step with {train_step_secs} s of training at staleness {staleness}"
    )]
    StepTooShort {
        /// The step time asked for, seconds.
        step_secs: String,
        /// The training step, seconds.
        train_step_secs: String,
        /// The staleness budget.
        staleness: u32,
    },
}
