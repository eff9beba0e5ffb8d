//! The gateway's own tests, in one binary: a real gateway on a real socket,
//! driven with `reqwest`, in front of fake nodes that speak the task
//! protocol over real p2p. The whole paid journey with the real model is
//! `cli`'s end-to-end test.

mod batches;
mod common;
mod metrics;
mod refusals;
mod rollouts;
mod routing;
