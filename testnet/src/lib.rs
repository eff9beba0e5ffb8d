//! The local testnet's genesis: keys kept in a state directory (so a restart
//! keeps the same identities), the Strata mint, the program's config, a
//! relayer, a funded demo client, and funded, registered, staked nodes, all
//! created through the same RPC client every binary uses. The manifest it
//! writes (`testnet.json`) tells the other tools where everything is.
#![warn(missing_docs)]

pub mod genesis;
pub mod manifest;

pub use genesis::{bootstrap, GenesisOptions, TestnetKeys};
pub use manifest::TestnetManifest;
