//! The local testnet's genesis: keys kept in a state directory (so a restart
//! keeps the same identities), the Strata mint, the program's config, a
//! relayer, a funded demo client, and funded, registered, staked nodes, all
//! created through the same RPC client every binary uses. The manifest it
//! writes (`testnet.json`) tells the other tools where everything is.
//! [`network`] then starts the services (relayer, nodes, gateway),
//! [`loadgen`] drives paying clients against the gateway, and [`swarm`] is
//! what opening it to other machines takes (`up --listen`).
//! [`load_campaign`] runs the services as processes under load and faults
//! and reconciles the books.
#![warn(missing_docs)]

pub mod audit_campaign;
pub mod bench;
pub mod economics;
pub mod genesis;
pub mod load_campaign;
pub mod loadgen;
pub mod local;
pub mod manifest;
pub mod network;
pub mod swarm;

pub use genesis::{bootstrap, fund_client, GenesisOptions, TestnetKeys};

/// The model every testnet node serves.
pub const MODEL_NAME: &str = "SmolLM2-135M-Instruct";
pub use manifest::TestnetManifest;
