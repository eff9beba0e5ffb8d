//! Verified chunked distribution of large files (model weights, policy
//! updates): content-addressed manifests, on-disk chunk stores with resume,
//! rarest-first scheduling, super-seeding and the chunk exchange protocol.

pub mod manifest;
pub mod protocol;
pub mod scheduler;
pub mod store;
pub mod super_seed;
