//! A node serving policy versions while a trainer publishes new ones, over
//! real libp2p on loopback with the real model: long streams started at
//! version 1 keep running while version 2 is published, fetched and
//! loaded; every stream ends with all its tokens, the ones started before
//! the switch are receipted as version 1 (and give, token for token, what
//! version 1 gives alone afterwards), the ones started after as version 2.
//! The test prints the pause the switch caused in the streams: the largest
//! gap between two tokens of a stream across the switch over the median
//! gap. A version the node does not hold is refused with its own error
//! (the refusals of bad adapters, another base model among them, are
//! `policy.rs`'s).

use std::path::Path;
use std::time::{Duration, Instant};

use strata_chain::{Keypair, Signer};
use strata_engine::{Adapter, LoraPart, LoraTarget, ModelLayout};
use strata_node::{start, NodeConfig, RunningNode};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_service::policy::prepare_policy;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, POLICY, TASK};
use strata_wire::task::{
    Finish, Prompt, Sampling, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec,
};
use strata_wire::Voucher;

use crate::task_protocol::node_config;

const MODEL: &str = "SmolLM2-135M-Instruct";
/// Tokens per stream: long enough to span the switch.
const STREAM_TOKENS: u32 = 48;
/// Streams started before the switch.
const BEFORE: usize = 3;

/// The real model's SHA-256.
fn model_hash() -> [u8; 32] {
    strata_wire::parse_hex32(strata_engine::DEFAULT_MODEL_SHA256).unwrap()
}

/// A rank-4 adapter of the real model on the query, value and down
/// projections of every block, with small pseudo-random factors drawn from
/// `version`, written canonically to `dir`.
pub(crate) fn write_real_adapter(dir: &Path, version: u64) -> (std::path::PathBuf, Adapter) {
    let model = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let config = ModelLayout::read(&model).unwrap().config;
    let rank = 4;
    let mut state = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        // xorshift64: enough spread for factors, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
    };
    let mut parts = Vec::new();
    for layer in 0..config.n_layers {
        for target in [LoraTarget::ALL[0], LoraTarget::ALL[2], LoraTarget::ALL[6]] {
            let (i, o) = target.dims(&config);
            parts.push(LoraPart {
                layer,
                target,
                a: (0..rank * i).map(|_| next()).collect(),
                b: (0..o * rank).map(|_| next()).collect(),
            });
        }
    }
    let adapter = Adapter::new(model_hash(), version, rank, 8.0, parts).unwrap();
    let path = dir.join(format!("policy-v{version}.safetensors"));
    std::fs::write(&path, adapter.to_bytes()).unwrap();
    (path, adapter)
}

fn p2p_config(bootstrap: Vec<String>) -> P2pConfig {
    P2pConfig {
        bootstrap,
        ..P2pConfig::local()
    }
    .with_protocols(ALL_PROTOCOLS)
    .with_topics(ALL_TOPICS)
}

/// Seeds `path` as `version` and announces it every 300 ms until `node`
/// holds it.
async fn publish(
    trainer: &P2pHandle,
    key: &Keypair,
    node: &RunningNode,
    version: u64,
    path: &Path,
) {
    let a = prepare_policy(trainer, key, model_hash(), version, path)
        .await
        .unwrap();
    let store = node.policies.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(version).is_none() {
        assert!(Instant::now() < deadline, "version {version} never arrived");
        let _ = trainer.publish(&POLICY, a.encode()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn spec(client: &Keypair, seed: u64) -> TaskSpec {
    TaskSpec {
        task_id: rand::random(),
        client: client.pubkey().to_bytes(),
        model: MODEL.into(),
        prompt: Prompt::Text("Once upon a time, in a small village by the sea,".into()),
        max_tokens: STREAM_TOKENS,
        sampling: Sampling {
            temperature: 0.7,
            top_p: 1.0,
            top_k: 40,
            seed,
        },
        stop: vec![],
    }
}

/// One stream: when each token arrived, the tokens, and the version its
/// receipt names.
struct Stream {
    arrivals: Vec<Instant>,
    tokens: Vec<u32>,
    finish: Finish,
    version: u64,
}

async fn call(p2p: &P2pHandle, node: &RunningNode, req: &TaskRequest) -> TaskResponse {
    strata_wire::task::call(|bytes| p2p.request(node.node_id(), &TASK, bytes), req)
        .await
        .unwrap()
}

/// Runs `spec` at `version` to its end, polling as a streaming caller
/// does, then settles it and reads the version off the receipt.
async fn stream(
    p2p: P2pHandle,
    node: &RunningNode,
    client: Keypair,
    spec: TaskSpec,
    version: u64,
    first_token: Option<&std::sync::atomic::AtomicUsize>,
) -> Stream {
    let id = spec.task_id;
    let start = TaskRequest::StartPolicy {
        spec,
        top_logprobs: Some(0),
        policy_version: version,
    };
    let r = call(&p2p, node, &start).await;
    assert!(
        matches!(r, TaskResponse::Started { .. }),
        "not started: {r:?}"
    );
    let (mut text, mut tokens, mut arrivals) = (0u64, Vec::new(), Vec::new());
    let (finish, usage) = loop {
        let poll = TaskRequest::PollLogprobs {
            task_id: id,
            from_byte: text,
            from_token: tokens.len() as u32,
            to_end: false,
        };
        let TaskResponse::LogprobOutput {
            text: t,
            logprobs,
            finished,
        } = call(&p2p, node, &poll).await
        else {
            panic!("bad poll answer");
        };
        let now = Instant::now();
        text += t.len() as u64;
        if tokens.is_empty() && !logprobs.is_empty() {
            if let Some(c) = first_token {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        for p in logprobs {
            tokens.push(p.sampled.token);
            arrivals.push(now);
        }
        if let Some(f) = finished {
            break f;
        }
    };
    assert_eq!(
        usage.completion_tokens as usize,
        tokens.len(),
        "every token delivered"
    );
    let voucher = Voucher::sign(
        &client,
        &strata_chain::Pubkey::from(node.node_id().0),
        usage.expected_cumulative,
    );
    let settle = TaskRequest::Settle {
        task_id: id,
        voucher,
    };
    let receipt = match call(&p2p, node, &settle).await {
        TaskResponse::Settled(r) => r,
        other => panic!("not settled: {other:?}"),
    };
    let part = receipt.body.adapter.expect("an adapted receipt");
    assert_eq!(
        receipt.body.version,
        strata_wire::receipt::ADAPTED_RECEIPT_VERSION
    );
    assert_eq!(
        part.adapter,
        node.policies
            .as_ref()
            .unwrap()
            .get(part.policy_version)
            .unwrap()
            .digest()
    );
    Stream {
        arrivals,
        tokens,
        finish,
        version: part.policy_version,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_switches_versions_between_sequences_without_dropping_one() {
    let trainer_key = Keypair::new();
    let identity = NodeIdentity::from_keypair_bytes(trainer_key.to_bytes()).unwrap();
    let (trainer, _events) = strata_p2p::start(identity, p2p_config(vec![]))
        .await
        .unwrap();
    let trainer_addr = strata_service::wait_listening(&trainer, &["/ip4/127.0.0.1/tcp/0".into()])
        .await
        .unwrap()
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let node_key = Keypair::new();
    let node = start(NodeConfig {
        follow_trainers: vec![trainer_key.pubkey().to_bytes()],
        max_concurrent: 8,
        p2p: P2pConfig {
            bootstrap: vec![trainer_addr],
            ..P2pConfig::local()
        },
        ..node_config(&node_key)
    })
    .await
    .unwrap();
    let client_p2p = {
        let (p2p, _e) = strata_p2p::start(
            NodeIdentity::generate(),
            P2pConfig::local().with_protocols(ALL_PROTOCOLS),
        )
        .await
        .unwrap();
        p2p.dial(&node.addrs[0]).await.unwrap();
        p2p
    };

    // Refused before any version is held: its own error kind, and it says
    // what the node holds.
    let c = Keypair::new();
    let r = call(
        &client_p2p,
        &node,
        &TaskRequest::StartPolicy {
            spec: spec(&c, 1),
            top_logprobs: None,
            policy_version: 1,
        },
    )
    .await;
    assert!(
        matches!(&r, TaskResponse::Error { kind: TaskErrorKind::UnknownPolicy, message } if message.contains("does not hold policy version 1")),
        "{r:?}"
    );

    let (v1_path, _) = write_real_adapter(dir.path(), 1);
    let (v2_path, _) = write_real_adapter(dir.path(), 2);
    publish(&trainer, &trainer_key, &node, 1, &v1_path).await;

    // Long streams at version 1; version 2 is published once they run.
    let clients: Vec<Keypair> = (0..BEFORE + 2).map(|_| Keypair::new()).collect();
    let specs: Vec<TaskSpec> = (0..BEFORE + 2)
        .map(|i| spec(&clients[i], 100 + i as u64))
        .collect();
    let node = &node;
    // The switch waits for every stream's first token (not a fixed delay:
    // on a loaded 2-core machine a prefill can take longer than any delay).
    let started = std::sync::atomic::AtomicUsize::new(0);
    let started = &started;
    let before = futures::future::join_all((0..BEFORE).map(|i| {
        stream(
            client_p2p.clone(),
            node,
            clients[i].insecure_clone(),
            specs[i].clone(),
            1,
            Some(started),
        )
    }));
    let switch = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while started.load(std::sync::atomic::Ordering::SeqCst) < BEFORE {
            assert!(Instant::now() < deadline, "the streams never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = Instant::now();
        publish(&trainer, &trainer_key, node, 2, &v2_path).await;
        (t0, Instant::now())
    };
    let (streams, (published, held)) = tokio::join!(before, switch);
    println!("version 2 published to held in {:?}", held - published);
    // Streams after the switch ask for the newest version.
    let latest = node.policies.as_ref().unwrap().latest().unwrap().0;
    assert_eq!(latest, 2);
    let after = futures::future::join_all((BEFORE..BEFORE + 2).map(|i| {
        stream(
            client_p2p.clone(),
            node,
            clients[i].insecure_clone(),
            specs[i].clone(),
            latest,
            None,
        )
    }))
    .await;

    let mut worst_ratio: f64 = 0.0;
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(
            s.version, 1,
            "a sequence started before the switch stays on version 1"
        );
        assert!(!s.tokens.is_empty());
        assert!(matches!(s.finish, Finish::Length | Finish::Stop));
        assert!(
            s.arrivals.first().unwrap() < &held && s.arrivals.last().unwrap() > &published,
            "stream {i} spans the switch ({} tokens)",
            s.tokens.len()
        );
        let gaps: Vec<f64> = s
            .arrivals
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        // The gaps whose later token arrived while version 2 was being
        // fetched and loaded, or just after.
        let across = s
            .arrivals
            .windows(2)
            .filter(|w| w[1] >= published && w[0] <= held + Duration::from_millis(200))
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .fold(0.0, f64::max);
        let med = median(gaps.clone());
        let ratio = across / med.max(1e-6);
        worst_ratio = worst_ratio.max(ratio);
        println!(
            "stream {i}: {} tokens, median gap {:.1} ms, largest gap across the switch {:.1} ms (ratio {ratio:.2}), largest overall {:.1} ms",
            s.tokens.len(),
            med * 1e3,
            across * 1e3,
            gaps.iter().cloned().fold(0.0, f64::max) * 1e3
        );
    }
    println!("hot-swap pause: largest gap across the switch / median gap = {worst_ratio:.2}");
    for s in &after {
        assert_eq!(
            s.version, 2,
            "a sequence started after the switch runs version 2"
        );
    }
    // Version 1 ran unchanged through the switch: the same task alone,
    // after it, gives the same tokens; version 2 gives others.
    let again = stream(
        client_p2p.clone(),
        node,
        clients[0].insecure_clone(),
        TaskSpec {
            task_id: rand::random(),
            ..specs[0].clone()
        },
        1,
        None,
    )
    .await;
    assert_eq!(
        again.tokens, streams[0].tokens,
        "version 1 changed under a running sequence"
    );
    let other = stream(
        client_p2p.clone(),
        node,
        clients[0].insecure_clone(),
        TaskSpec {
            task_id: rand::random(),
            ..specs[0].clone()
        },
        2,
        None,
    )
    .await;
    assert_ne!(
        other.tokens, streams[0].tokens,
        "version 2 gave version 1's tokens"
    );
}

/// The bug this guards against: a node keeps only the last few versions,
/// and a task served at a version evicted before its audit could no longer
/// be opened, which the verifier takes as withheld (a challenge, a slash).
/// Keeping one version, a task runs at version 1, versions 2 and 3 follow
/// (version 1 is no longer served); the node still opens the version-1
/// task to its assigned verifier, every entry leading to the root its
/// receipt signed (re-deriving without that adapter could not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_at_an_evicted_version_is_still_opened_for_its_audit() {
    use strata_chain::merkle::{self, domains::Ledger};
    use strata_chain::registration::ensure_registered;
    use strata_chain::{ix, Capacity, ROLE_VERIFIER};
    use strata_engine::{Opening, MAX_ENTRY_BYTES};
    use strata_test_utils::chain::LocalChain;
    use strata_wire::audit::{OpeningRequest, OpeningResponse};
    use strata_wire::protocols::OPENING;

    const STAKE: u64 = 1_000_000_000;
    let mut params = strata_chain::params::local();
    params.audit_rate_bps = 10_000;
    let chain = LocalChain::start(params).await;
    let (node_key, verifier) = (Keypair::new(), Keypair::new());
    chain.fund(&node_key, STAKE).await;
    chain.fund(&verifier, STAKE).await;
    ensure_registered(
        &chain.rpc,
        &verifier,
        &["/ip4/127.0.0.1/tcp/1".to_string()],
        Capacity::default(),
        ROLE_VERIFIER,
        STAKE,
    )
    .await
    .unwrap();
    let trainer_key = Keypair::new();
    let identity = NodeIdentity::from_keypair_bytes(trainer_key.to_bytes()).unwrap();
    let (trainer, _events) = strata_p2p::start(identity, p2p_config(vec![]))
        .await
        .unwrap();
    let trainer_addr = strata_service::wait_listening(&trainer, &["/ip4/127.0.0.1/tcp/0".into()])
        .await
        .unwrap()
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let node = start(NodeConfig {
        follow_trainers: vec![trainer_key.pubkey().to_bytes()],
        rpc_url: Some(chain.url.clone()),
        stake: STAKE,
        state_dir: Some(state.path().to_path_buf()),
        p2p: P2pConfig {
            bootstrap: vec![trainer_addr],
            ..P2pConfig::local()
        },
        ..node_config(&node_key)
    })
    .await
    .unwrap();
    let store = node.policies.clone().unwrap();
    store.set_keep(1);
    let client_p2p = {
        let (p2p, _e) = strata_p2p::start(
            NodeIdentity::generate(),
            P2pConfig::local().with_protocols(ALL_PROTOCOLS),
        )
        .await
        .unwrap();
        p2p.dial(&node.addrs[0]).await.unwrap();
        p2p
    };

    // A task at version 1, settled.
    let (v1_path, v1) = write_real_adapter(dir.path(), 1);
    publish(&trainer, &trainer_key, &node, 1, &v1_path).await;
    let client = Keypair::new();
    let task = TaskSpec {
        max_tokens: 8,
        ..spec(&client, 5)
    };
    let task_id = task.task_id;
    let start_v1 = TaskRequest::StartPolicy {
        spec: task,
        top_logprobs: None,
        policy_version: 1,
    };
    let r = call(&client_p2p, &node, &start_v1).await;
    assert!(matches!(r, TaskResponse::Started { .. }), "{r:?}");
    let usage = loop {
        let poll = TaskRequest::Poll {
            task_id,
            from_byte: 0,
            to_end: true,
        };
        if let TaskResponse::Output {
            finished: Some((_, usage)),
            ..
        } = call(&client_p2p, &node, &poll).await
        {
            break usage;
        }
    };
    let voucher = Voucher::sign(&client, &node_key.pubkey(), usage.expected_cumulative);
    let settle = TaskRequest::Settle { task_id, voucher };
    let TaskResponse::Settled(receipt) = call(&client_p2p, &node, &settle).await else {
        panic!("not settled");
    };
    let part = receipt.body.adapter.expect("an adapted receipt");
    assert_eq!((part.policy_version, part.adapter), (1, v1.digest()));

    // Versions 2 and 3: keeping one, version 1 is no longer served.
    for version in [2, 3] {
        let (path, _) = write_real_adapter(dir.path(), version);
        publish(&trainer, &trainer_key, &node, version, &path).await;
    }
    assert_eq!(store.versions(), vec![3]);
    assert!(store.get(1).is_none());
    let r = call(
        &client_p2p,
        &node,
        &TaskRequest::StartPolicy {
            spec: spec(&client, 6),
            top_logprobs: None,
            policy_version: 1,
        },
    )
    .await;
    assert!(
        matches!(
            &r,
            TaskResponse::Error {
                kind: TaskErrorKind::UnknownPolicy,
                ..
            }
        ),
        "{r:?}"
    );
    // Version 1's file is kept (its task is archived), version 2's is not.
    let files: Vec<String> = std::fs::read_dir(state.path().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".adapter"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().any(|f| f.starts_with(&format!("v{:020}-", 1))),
        "{files:?}"
    );

    // Its receipt alone in a posted batch, the seed drawn.
    let relayer = Keypair::new();
    chain.fund(&relayer, 1).await;
    chain
        .rpc
        .send(
            &[ix::add_relayer(&chain.admin.pubkey(), &relayer.pubkey())],
            &chain.admin,
            &[],
        )
        .await
        .unwrap();
    let leaf = receipt.leaf();
    let post = ix::post_batch(&relayer.pubkey(), 0, 0, leaf, 1, usage.prompt_tokens as u64);
    chain.rpc.send(&[post], &relayer, &[]).await.unwrap();
    let rpc = &chain.rpc;
    strata_test_utils::wait_for(Duration::from_secs(30), "the batch's seed", || async {
        let _ = rpc.send(&[ix::seal_batch(0)], &relayer, &[]).await;
        rpc.batch(0)
            .await
            .ok()
            .flatten()
            .is_some_and(|b| b.audit_seed != [0; 32])
    })
    .await;
    let config = rpc.config().await.unwrap();
    let batch = rpc.batch(0).await.unwrap().unwrap();
    let nodes = rpc.registered_nodes().await.unwrap();
    let plan = strata_chain::audit::plan(
        &config,
        &batch,
        &leaf,
        &node_key.pubkey(),
        &nodes,
        30,
        usage.completion_tokens,
    )
    .unwrap();
    assert!(plan.audited);
    let request = OpeningRequest {
        task_id,
        batch_id: 0,
        leaf_index: 0,
        proof: merkle::proof::<Ledger>(&[leaf], 0).unwrap(),
        layers: plan.layers.clone(),
    };
    let asker = {
        let identity = NodeIdentity::from_keypair_bytes(verifier.to_bytes()).unwrap();
        let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
        let (p2p, _events) = strata_p2p::start(identity, config).await.unwrap();
        p2p.dial(&node.addrs[0]).await.unwrap();
        p2p
    };
    let answer = asker
        .request(node.node_id(), &OPENING, strata_wire::encode(&request))
        .await
        .unwrap();
    let opening = match OpeningResponse::decode(&answer).unwrap() {
        OpeningResponse::Opened(o) => o,
        other => panic!("the evicted version's task was not opened: {other:?}"),
    };
    assert!(opening.entries.iter().any(|e| e.index == 30));
    for e in &opening.entries {
        let o = Opening::decode(&e.opening, MAX_ENTRY_BYTES).unwrap();
        o.verify(&receipt.body.commitment_root)
            .expect("re-derived with version 1's adapter");
    }
    node.shutdown().await;
}
