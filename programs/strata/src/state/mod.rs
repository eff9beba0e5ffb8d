//! Account types. One file per account; each carries its PDA seed prefix, a
//! version byte and reserved bytes so that later releases can migrate in place.

pub mod batch;
pub mod challenge;
pub mod channel;
pub mod claim_record;
pub mod config;
pub mod escrow;
pub mod node;
pub mod relayer;
pub mod reward_epoch;

pub use batch::*;
pub use challenge::*;
pub use channel::*;
pub use claim_record::*;
pub use config::*;
pub use escrow::*;
pub use node::*;
pub use relayer::*;
pub use reward_epoch::*;

/// Layout version written into every account created by this release.
pub const STATE_VERSION: u8 = 2;
