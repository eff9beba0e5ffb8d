//! Policy updates relayed peer to peer, over real libp2p on loopback: a
//! trainer seeds versioned LoRA adapter files and announces them signed
//! (`strata_service::policy`); followers' `PolicyStore`s fetch them through
//! the chunked distribution, check and load them with the engine, keep the
//! last few and evict the rest. Each refusal has its test. No model is
//! loaded: the adapters are real engine adapters for a small configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_chain::{Keypair, Signer};
use strata_engine::{Adapter, LlamaConfig, LoraPart, LoraTarget};
use strata_node::policy::{engine_loader, PolicyConfig, PolicyStore};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_service::policy::prepare_policy;
use strata_test_utils::wait_for;
use strata_wire::policy::{PolicyAnnouncement, PolicyUpdate};
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, POLICY};
use tokio::task::JoinHandle;

/// The followers' model: what adapters must be built for.
const MODEL_HASH: [u8; 32] = [7; 32];

/// Longest any test waits for the network.
const PATIENCE: Duration = Duration::from_secs(20);

/// A small llama: 4 blocks of width 256, so a rank-8 adapter on all seven
/// projections is about 0.5 MB, three distribution chunks.
fn model_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 1000,
        hidden_size: 256,
        intermediate_size: 512,
        n_layers: 4,
        n_heads: 8,
        n_kv_heads: 4,
        head_dim: 32,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        context_length: 512,
    }
}

/// A rank-8 adapter on every projection of every block, its values
/// depending on `version`, written canonically to `dir`.
fn write_adapter(dir: &Path, base_model: [u8; 32], version: u64) -> PathBuf {
    let config = model_config();
    let rank = 8;
    let mut parts = Vec::new();
    let mut x = version as f32;
    let mut next = || {
        x = (x * 1.618 + 0.1) % 1.0;
        x - 0.5
    };
    for layer in 0..config.n_layers {
        for target in LoraTarget::ALL {
            let (i, o) = target.dims(&config);
            parts.push(LoraPart {
                layer,
                target,
                a: (0..rank * i).map(|_| next()).collect(),
                b: (0..o * rank).map(|_| next()).collect(),
            });
        }
    }
    let adapter = Adapter::new(base_model, version, rank, 16.0, parts).unwrap();
    let path = dir.join(format!("policy-v{version}.safetensors"));
    std::fs::write(&path, adapter.to_bytes()).unwrap();
    path
}

fn p2p_config(bootstrap: Vec<String>) -> P2pConfig {
    P2pConfig {
        bootstrap,
        ..P2pConfig::local()
    }
    .with_protocols(ALL_PROTOCOLS)
    .with_topics(ALL_TOPICS)
}

/// The trainer: its key is its node key.
struct Trainer {
    key: Keypair,
    p2p: P2pHandle,
    addr: String,
    dir: tempfile::TempDir,
}

async fn trainer() -> Trainer {
    let key = Keypair::new();
    let identity = NodeIdentity::from_keypair_bytes(key.to_bytes()).unwrap();
    let (p2p, _events) = strata_p2p::start(identity, p2p_config(vec![]))
        .await
        .unwrap();
    let addr = strata_service::wait_listening(&p2p, &["/ip4/127.0.0.1/tcp/0".into()])
        .await
        .unwrap()
        .remove(0);
    Trainer {
        key,
        p2p,
        addr,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// A follower: its p2p node, its store, and the task feeding the store
/// the node's events (as the node's event loop does).
struct Follower {
    store: PolicyStore,
    dir: tempfile::TempDir,
    _pump: JoinHandle<()>,
}

async fn follower(trainer: &Trainer, follow: [u8; 32], keep: usize) -> Follower {
    let (p2p, mut events) = strata_p2p::start(
        NodeIdentity::generate(),
        p2p_config(vec![trainer.addr.clone()]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = PolicyStore::new(
        PolicyConfig {
            keep,
            ..PolicyConfig::new(vec![follow], MODEL_HASH, dir.path().join("policies"))
        },
        p2p,
        engine_loader(model_config(), MODEL_HASH),
    )
    .unwrap();
    let s = store.clone();
    let pump = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            s.hear(&ev);
        }
    });
    Follower {
        store,
        dir,
        _pump: pump,
    }
}

/// Publishes `payload` on the policy topic every 300 ms (a trainer
/// re-announces for peers that join late, and the first tries find no
/// subscriber yet) until `done` holds.
async fn announce_until(p2p: &P2pHandle, payload: &[u8], what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        let _ = p2p.publish(&POLICY, payload.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Seeds the adapter of `version` and returns its signed announcement.
async fn prepare(t: &Trainer, base_model: [u8; 32], version: u64) -> PolicyAnnouncement {
    let path = write_adapter(t.dir.path(), base_model, version);
    prepare_policy(&t.p2p, &t.key, base_model, version, &path)
        .await
        .unwrap()
}

fn trainer_file(t: &Trainer, version: u64) -> Vec<u8> {
    std::fs::read(t.dir.path().join(format!("policy-v{version}.safetensors"))).unwrap()
}

/// Files the follower keeps (adapters and partial downloads alike).
fn files(f: &Follower) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(f.dir.path().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_spread_to_followers_and_the_oldest_is_evicted() {
    let t = trainer().await;
    let me = t.key.pubkey().to_bytes();
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(follower(&t, me, 2).await);
    }
    for version in 1..=3u64 {
        let a = prepare(&t, MODEL_HASH, version).await;
        let payload = a.encode();
        announce_until(&t.p2p, &payload, &format!("version {version}"), || {
            followers
                .iter()
                .all(|f| f.store.latest().is_some_and(|(v, _)| v == version))
        })
        .await;
        if version == 2 {
            // Both versions held, byte for byte the trainer's files.
            for f in &followers {
                assert_eq!(f.store.versions(), vec![1, 2]);
                for v in [1, 2] {
                    let held = std::fs::read(f.store.path(v).unwrap()).unwrap();
                    assert_eq!(held, trainer_file(&t, v));
                    assert_eq!(f.store.get(v).unwrap().version(), v);
                }
            }
        }
    }
    // Keeping two: version 1 is gone from memory, from disk and from what
    // the follower serves.
    for f in &followers {
        assert_eq!(f.store.versions(), vec![2, 3]);
        assert!(f.store.get(1).is_none());
        let (v, adapter) = f.store.latest().unwrap();
        assert_eq!((v, adapter.version()), (3, 3));
        let digest: [u8; 32] = Sha256::digest(trainer_file(&t, 3)).into();
        assert_eq!(adapter.digest(), digest);
        assert_eq!(files(f).len(), 2, "{:?}", files(f));
        let c = f.store.counters();
        assert_eq!((c.accepted, c.evicted), (3, 1));
        assert_eq!(c.refused.iter().sum::<u64>(), c.refused("replay"));
    }
}

/// Announces `payload` until the follower has refused it for `kind`, then
/// checks that it holds nothing and keeps no file (a copy announced late
/// may be fetched again, and refused and deleted again: hence the wait).
async fn refused(t: &Trainer, f: &Follower, payload: &[u8], kind: &str) {
    announce_until(&t.p2p, payload, kind, || {
        f.store.counters().refused(kind) > 0
    })
    .await;
    wait_for(PATIENCE, "the refused file deleted", || async {
        files(f).is_empty()
    })
    .await;
    assert_eq!(f.store.versions(), Vec::<u64>::new());
    assert_eq!(f.store.counters().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainer_not_followed_is_refused() {
    let t = trainer().await;
    let f = follower(&t, Keypair::new().pubkey().to_bytes(), 3).await;
    let a = prepare(&t, MODEL_HASH, 1).await;
    refused(&t, &f, &a.encode(), "unknown_trainer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused() {
    let t = trainer().await;
    let f = follower(&t, t.key.pubkey().to_bytes(), 3).await;
    let mut a = prepare(&t, MODEL_HASH, 1).await;
    a.signature[10] ^= 1;
    refused(&t, &f, &a.encode(), "bad_signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_on_the_topic_are_refused() {
    let t = trainer().await;
    let f = follower(&t, t.key.pubkey().to_bytes(), 3).await;
    let mut junk = prepare(&t, MODEL_HASH, 1).await.encode();
    junk.truncate(100);
    refused(&t, &f, &junk, "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_base_model_is_refused() {
    let t = trainer().await;
    let f = follower(&t, t.key.pubkey().to_bytes(), 3).await;
    let a = prepare(&t, [8; 32], 1).await;
    refused(&t, &f, &a.encode(), "other_base_model").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_older_version_is_ignored() {
    let t = trainer().await;
    let f = follower(&t, t.key.pubkey().to_bytes(), 3).await;
    let old = prepare(&t, MODEL_HASH, 1).await;
    let new = prepare(&t, MODEL_HASH, 2).await;
    announce_until(&t.p2p, &new.encode(), "version 2", || {
        f.store.versions() == [2]
    })
    .await;
    let before = f.store.counters().refused("replay");
    // The older version, and the same announcement again: both ignored.
    for payload in [old.encode(), new.encode()] {
        let seen = f.store.counters().refused("replay");
        announce_until(&t.p2p, &payload, "a replay", || {
            f.store.counters().refused("replay") > seen
        })
        .await;
    }
    assert!(f.store.counters().refused("replay") >= before + 2);
    assert_eq!(f.store.versions(), vec![2]);
    assert_eq!(f.store.counters().accepted, 1);
    assert_eq!(files(&f).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_hash_to_its_announcement_is_refused_and_deleted() {
    let t = trainer().await;
    let f = follower(&t, t.key.pubkey().to_bytes(), 3).await;
    // The trainer announces version 2's digest but seeds version 1's file.
    let announced = write_adapter(t.dir.path(), MODEL_HASH, 2);
    let seeded = write_adapter(t.dir.path(), MODEL_HASH, 1);
    let root = t.p2p.seed_file(&seeded).await.unwrap();
    let a = PolicyAnnouncement::sign(
        &t.key,
        PolicyUpdate {
            base_model: MODEL_HASH,
            version: 2,
            adapter_sha256: Sha256::digest(std::fs::read(&announced).unwrap()).into(),
            file_root: root.0,
            size: std::fs::metadata(&seeded).unwrap().len(),
            published_at_ms: 0,
        },
    );
    refused(&t, &f, &a.encode(), "digest_mismatch").await;
    // The right file under the same version is then taken: a refusal does
    // not block the version.
    let good = prepare(&t, MODEL_HASH, 2).await.encode();
    announce_until(&t.p2p, &good, "the right file", || {
        f.store.versions() == [2]
    })
    .await;
}

/// An evicted version a task still names (the archive pins it) is no
/// longer served but its file is kept and loads again by its digest, also
/// in a restarted store over the same directories; once the archive has
/// aged the last such task out, the sweep deletes it. A version nothing
/// pins is deleted as it is evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_version_outlives_its_eviction_until_its_last_task_ages_out() {
    use std::sync::Arc;
    use strata_node::archive::Archive;

    let t = trainer().await;
    let me = t.key.pubkey().to_bytes();
    let f = follower(&t, me, 1).await;
    let retention = Duration::from_secs(1);
    let archive_dir = f.dir.path().join("archive");
    let pins_of = |archive: &Arc<Archive>| {
        let a = archive.clone();
        Arc::new(move |v: u64, d: &[u8; 32]| a.pinned(v, d))
    };
    let archive = Arc::new(Archive::open(Some(archive_dir.clone()), retention).unwrap());
    f.store.set_pins(pins_of(&archive));
    let mut digests = Vec::new();
    for version in 1..=3u64 {
        let a = prepare(&t, MODEL_HASH, version).await;
        announce_until(&t.p2p, &a.encode(), &format!("version {version}"), || {
            f.store.versions() == [version]
        })
        .await;
        digests.push(a.adapter_sha256);
        if version == 1 {
            // What the service does as it admits a task at version 1.
            archive.pin(1, &a.adapter_sha256).unwrap();
        }
    }
    assert!(f.store.get(1).is_none(), "version 1 is no longer served");
    assert_eq!(f.store.adapter(1, &digests[0]).unwrap().version(), 1);
    assert!(f.store.adapter(1, &digests[1]).is_err(), "another digest");
    assert!(
        f.store.adapter(2, &digests[1]).is_err(),
        "not pinned: deleted"
    );
    assert_eq!(files(&f).len(), 2, "{:?}", files(&f));

    // A restart: a new store and archive over the same directories.
    let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), p2p_config(vec![]))
        .await
        .unwrap();
    let store = PolicyStore::new(
        PolicyConfig {
            keep: 1,
            ..PolicyConfig::new(vec![me], MODEL_HASH, f.dir.path().join("policies"))
        },
        p2p,
        engine_loader(model_config(), MODEL_HASH),
    )
    .unwrap();
    let archive = Arc::new(Archive::open(Some(archive_dir), retention).unwrap());
    store.set_pins(pins_of(&archive));
    // What the earlier run served and nothing pins goes (it is not reloaded).
    assert_eq!(store.sweep(), 1);
    assert_eq!(files(&f).len(), 1, "{:?}", files(&f));
    assert_eq!(store.adapter(1, &digests[0]).unwrap().version(), 1);

    // Past the retention the pin is pruned, and the file swept (touched
    // now, as a task settling would, so that the first prune is within).
    archive.pin(1, &digests[0]).unwrap();
    archive.prune();
    assert_eq!(store.sweep(), 0, "pinned within the retention");
    tokio::time::sleep(retention + Duration::from_millis(200)).await;
    archive.prune();
    assert_eq!(store.sweep(), 1);
    assert!(files(&f).is_empty(), "{:?}", files(&f));
    assert!(store.adapter(1, &digests[0]).is_err());
}
