//! One file per instruction: its accounts, their constraints, and its handler.
// Every file names its entry point `handler`; lib.rs calls them by path.
#![allow(ambiguous_glob_reexports)]

pub mod add_relayer;
pub mod claim_rewards;
pub mod close_batch;
pub mod deposit;
pub mod deregister_node;
pub mod draw_committee;
pub mod expire_challenge;
pub mod fund_rewards;
pub mod initialize;
pub mod open_challenge;
pub mod post_batch;
pub mod publish_rewards;
pub mod redeem_vouchers;
pub mod register_node;
pub mod remove_relayer;
pub mod request_unstake;
pub mod request_withdrawal;
pub mod resolve_challenge;
pub mod seal_batch;
pub mod stake;
pub mod update_config;
pub mod update_node;
pub mod withdraw;
pub mod withdraw_stake;

pub use add_relayer::*;
pub use claim_rewards::*;
pub use close_batch::*;
pub use deposit::*;
pub use deregister_node::*;
pub use draw_committee::*;
pub use expire_challenge::*;
pub use fund_rewards::*;
pub use initialize::*;
pub use open_challenge::*;
pub use post_batch::*;
pub use publish_rewards::*;
pub use redeem_vouchers::*;
pub use register_node::*;
pub use remove_relayer::*;
pub use request_unstake::*;
pub use request_withdrawal::*;
pub use resolve_challenge::*;
pub use seal_batch::*;
pub use stake::*;
pub use update_config::*;
pub use update_node::*;
pub use withdraw::*;
pub use withdraw_stake::*;
