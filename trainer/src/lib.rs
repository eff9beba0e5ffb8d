//! Strata's RL trainer: GRPO on LoRA adapters over the network's base model.
//!
//! The trainer sits on its own hardware; the network generates the rollouts
//! (Echo's split). Each update becomes a versioned adapter that nodes fetch
//! and serve; rollouts come back tagged with the version that sampled them,
//! and a staleness budget S bounds how old a version may still be trained on.
//!
//! Modules, from the bottom up:
//!
//! - `policy`: the base model in full precision on candle's autograd, frozen,
//!   with the LoRA pairs as the only trainable tensors ([`PolicyModel`]);
//! - `grpo`: group-normalised advantages and the clipped, importance-weighted
//!   objective ([`grpo_loss`]);
//! - `optim`: AdamW ([`AdamW`]); `checkpoint`: crash-safe save and resume;
//! - `rollout`: rollouts and the in-process sampler ([`LocalSampler`]);
//! - `train`: one update from a batch, and the adapter it yields ([`Learner`]);
//! - `run`: the loop, synchronous or asynchronous with staleness S ([`run`]).
#![warn(missing_docs)]

pub mod checkpoint;
mod error;
pub mod grpo;
pub mod network;
pub mod optim;
pub mod policy;
pub mod rollout;
pub mod run;
pub mod train;

pub use error::{Result, TrainerError};
pub use grpo::{group_advantages, grpo_loss, GrpoConfig, LossStats, TokenTerms};
pub use network::{GatewaySource, P2pPublisher};
pub use optim::{AdamW, AdamWConfig};
pub use policy::{LoraConfig, PolicyModel, TokenBatch};
pub use rollout::{LocalSampler, Rollout, RolloutBatch, SampleSpec};
pub use run::{
    curve, run, FileOnly, LearnerSettings, LocalSource, Publisher, RolloutSource, RunConfig,
    RunState, StepLog,
};
pub use train::{Learner, StepStats};
