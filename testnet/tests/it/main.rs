//! The testnet's integration tests, in one binary: each module starts a
//! real local chain (and, for most, the services with the real model).

mod chain_bootstrap;
mod idl_client;
mod load_campaign;
mod logprobs;
mod logs;
mod netns;
mod node_restart;
mod pipeline;
mod policy_rollouts;
mod restart;
mod rollouts;
mod rpc_journey;
mod trainer_network;
mod verification;

/// Each test here runs a chain and several model engines; two at once on a
/// 2-core machine starve each other's deadlines (opening timeouts, polls), so
/// the heavy ones take turns.
pub(crate) async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}
