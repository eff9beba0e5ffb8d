//! Helpers shared by the integration tests: real nodes on 127.0.0.1.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use strata_p2p::{NodeIdentity, P2pConfig, P2pEvent, P2pEvents, P2pHandle};

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
    wait_for(&mut events, Duration::from_secs(10), |e| {
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

/// Consume events until `pred` matches one (returned) or the time is up.
pub async fn wait_for(
    events: &mut P2pEvents,
    timeout: Duration,
    mut pred: impl FnMut(&P2pEvent) -> bool,
) -> Option<P2pEvent> {
    tokio::time::timeout(timeout, async {
        while let Some(ev) = events.recv().await {
            if pred(&ev) {
                return Some(ev);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
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
