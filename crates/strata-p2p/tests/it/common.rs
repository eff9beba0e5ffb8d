//! Helpers shared by the integration tests: real nodes on 127.0.0.1.

use std::path::Path;
use std::time::Duration;

use strata_p2p::{
    NodeIdentity, P2pConfig, P2pEvent, P2pEvents, P2pHandle, ProtocolSpec, TopicSpec,
};
use strata_test_utils::next_matching;

// The application catalogue the tests register: the names, tags and limits
// of Strata's (`strata_wire::protocols`), which the p2p crate does not
// depend on.

/// Tasks, 1 MiB each way.
pub const TASK: ProtocolSpec = ProtocolSpec {
    name: "/strata/task/1",
    max_request: 1 << 20,
    max_response: 1 << 20,
    timeout_secs: 60,
};
/// Hidden states, 64 MiB requests.
pub const HIDDEN_STATE: ProtocolSpec = ProtocolSpec {
    name: "/strata/hidden-state/1",
    max_request: 64 << 20,
    max_response: 64 << 10,
    timeout_secs: 60,
};
/// Capacity announcements.
pub const CAPACITY: TopicSpec = TopicSpec {
    tag: 1,
    name: "/strata/capacity/1",
    max_payload: 64 << 10,
};
/// Receipts.
pub const RECEIPTS: TopicSpec = TopicSpec {
    tag: 2,
    name: "/strata/receipts/1",
    max_payload: 64 << 10,
};

/// `P2pConfig::local()` with the test catalogue registered.
pub fn local() -> P2pConfig {
    P2pConfig::local()
        .with_protocols(&[TASK, HIDDEN_STATE])
        .with_topics(&[CAPACITY, RECEIPTS])
}

/// A running node with its first listen address (including `/p2p/<id>`).
pub struct TestNode {
    pub handle: P2pHandle,
    pub events: P2pEvents,
    pub addr: String,
}

pub async fn spawn_node(config: P2pConfig) -> TestNode {
    let (handle, mut events) = strata_p2p::start(NodeIdentity::generate(), config)
        .await
        .expect("start node");
    next_matching(&mut events, Duration::from_secs(10), |e| {
        matches!(e, P2pEvent::Listening { .. })
    })
    .await
    .expect("node listens");
    let addr = handle
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("an address");
    TestNode {
        handle,
        events,
        addr,
    }
}

pub async fn spawn_with_bootstrap(bootstrap: &[&TestNode], mut config: P2pConfig) -> TestNode {
    config.bootstrap = bootstrap.iter().map(|n| n.addr.clone()).collect();
    spawn_node(config).await
}

/// Deterministic pseudo-random file content (blake3 XOF), written to `path`.
pub fn write_test_file(path: &Path, len: usize, seed: u8) -> [u8; 32] {
    let mut data = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(path, &data).unwrap();
    *blake3::hash(&data).as_bytes()
}

pub fn file_hash(path: &Path) -> [u8; 32] {
    *blake3::hash(&std::fs::read(path).unwrap()).as_bytes()
}
