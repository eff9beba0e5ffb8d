//! strata-p2p's integration tests, in one binary: real nodes on 127.0.0.1
//! (`network`), hostile peers (`adversarial`) and NAT traversal across
//! network namespaces (`nat`, which re-runs this binary as its child nodes).

mod adversarial;
mod common;
mod nat;
mod network;
