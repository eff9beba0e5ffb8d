//! The testnet's integration tests, in one binary: each module starts a
//! real local chain (and, for most, the services with the real model).

mod chain_bootstrap;
mod node_restart;
mod restart;
mod rpc_journey;
mod verification;
