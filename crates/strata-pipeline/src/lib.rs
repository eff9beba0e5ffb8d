//! Layer-sharded pipelines, the pure part: deciding who holds which layers.
//!
//! What it is: the allocation logic of issue 12 as plain functions over plain
//! data. A model of `L` transformer layers is served by *pipelines*: ordered
//! chains of nodes, each node (a *stage*, or hop) holding a contiguous range
//! of layers, the first also holding the token embedding and the last the
//! output head. Every node of the network evaluates the same functions over
//! the same live set and applies its own row, so there is no scheduler to
//! trust; [`alloc::plan`] is therefore deterministic down to the bit (the
//! same nodes in any order give the identical [`alloc::Plan`], and the float
//! arithmetic is plain IEEE `+ * /` in a fixed order, so every machine agrees).
//!
//! The plan follows Parallax (Gradient, "Parallax: Efficient LLM Inference
//! Service over Decentralized Environment", 2025) in two phases. First, the
//! number of pipelines `k` and their members: for every feasible `k`, a
//! memoised dynamic program over the nodes in capacity order finds the
//! assignment with the fewest stages `s*(k)`; the plan keeps the `k` with the
//! best `k² / s*(k)` (throughput grows with `k`, latency with the stages per
//! pipeline `s*/k`, and the score is their ratio). Above 16 usable nodes, or
//! when the program's state budget runs out, a greedy pass takes its place.
//! Second, inside each pipeline, *water-filling*: each stage gets layers in
//! proportion to its speed, `min(cap, λ·speed)`, with `λ` found by bisection
//! so the shares sum to `L`, then rounded so the ranges are contiguous, cover
//! `[0, L)` exactly and respect every cap.
//!
//! Nodes left over (not needed by the best `k`) and nodes joining later follow
//! Petals (Borzunov et al., "Petals: Collaborative Inference and Fine-tuning of
//! Large Models", 2023): a node takes the window of consecutive layers whose
//! current throughputs, sorted, are lexicographically smallest, which makes it
//! a replica of the weakest part of the swarm ([`alloc::join_window`]).
//! Finally [`alloc::rebalance`] tells a node when to move: at once if some
//! layer has no live holder, otherwise only when throughput is badly skewed
//! *and* a re-plan would clearly help, and [`alloc::place`] is the decision a
//! node takes for itself from all of that, at join and at every epoch.
//!
//! What it is not: it measures nothing and sends nothing. Capacities (layers a
//! node can hold in each role, from its memory and the model's layout) and
//! speeds (layers per second, from profiling) come from the caller.
//!
//! [`route`] picks a request's route over the holdings nodes announce (least
//! expected time per token, given each hop's speed, load and round trips),
//! and [`billing`] splits a pipelined task's price between its hops in cells
//! (tokens × layers), across failovers, so that the client pays once.
//! [`client`] is the caller's side of a pipelined task over the hop
//! protocol, generic over the transport that carries it.
#![warn(missing_docs)]

pub mod alloc;
pub mod billing;
pub mod client;
pub mod route;

pub use alloc::{
    join_window, layer_throughput, place, place_spares, plan, rebalance, AllocError, Holding,
    NodeCap, NodeKey, Pipeline, Placement, Plan, Stage, Verdict,
};
