//! The node's task protocol over real libp2p on loopback, with the real
//! model: a task streams, settles against a voucher and yields a verifiable
//! receipt; bad requests and bad vouchers are refused with the right class.

use std::time::Duration;

use strata_chain::{Keypair, Signer};
use strata_node::{start, NodeConfig, RunningNode};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_wire::protocols::{ALL_PROTOCOLS, RECEIPT, TASK};
use strata_wire::task::{
    ChatTurn, Finish, Prompt, Sampling, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec, Usage,
    MAX_TASK_MESSAGE_BYTES,
};
use strata_wire::{decode, Receipt, Voucher};

const MODEL: &str = "SmolLM2-135M-Instruct";

pub(crate) fn node_config(key: &Keypair) -> NodeConfig {
    NodeConfig {
        keypair: key.insecure_clone(),
        rpc_url: None,
        model_path: strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE),
        model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.to_string()),
        model_name: MODEL.into(),
        price_per_token: 7,
        max_concurrent: 4,
        max_tokens: 64,
        stake: 0,
        p2p: P2pConfig::local(),
        relayer: None,
        profile_tokens: 4,
        quiet: true,
        state_dir: None,
        cheat: None,
        memory: Default::default(),
        follow_trainers: Vec::new(),
    }
}

async fn node(key: &Keypair) -> RunningNode {
    start(node_config(key)).await.unwrap()
}

async fn peer(node: &RunningNode) -> P2pHandle {
    let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
    let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), config)
        .await
        .unwrap();
    p2p.dial(&node.addrs[0]).await.unwrap();
    p2p
}

async fn call(p2p: &P2pHandle, node: &RunningNode, req: &TaskRequest) -> TaskResponse {
    strata_wire::task::call(|bytes| p2p.request(node.node_id(), &TASK, bytes), req)
        .await
        .unwrap()
}

/// Settles task `id` with `voucher`; panics unless the node answers with a receipt.
async fn settle(p2p: &P2pHandle, node: &RunningNode, id: [u8; 32], voucher: Voucher) -> Receipt {
    let req = TaskRequest::Settle {
        task_id: id,
        voucher,
    };
    match call(p2p, node, &req).await {
        TaskResponse::Settled(receipt) => *receipt,
        other => panic!("not settled: {other:?}"),
    }
}

fn spec(client: &Keypair, text: &str, seed: u64) -> TaskSpec {
    TaskSpec {
        task_id: rand::random(),
        client: client.pubkey().to_bytes(),
        model: MODEL.into(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: text.into(),
        }]),
        max_tokens: 16,
        sampling: Sampling {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            seed,
        },
        stop: vec![],
    }
}

/// Runs a task to its end; returns the text, the number of polls that
/// brought text, and the final usage.
async fn run(
    p2p: &P2pHandle,
    node: &RunningNode,
    spec: TaskSpec,
    to_end: bool,
) -> (String, usize, Finish, Usage) {
    let id = spec.task_id;
    match call(p2p, node, &TaskRequest::Start(spec)).await {
        TaskResponse::Started {
            price_per_token, ..
        } => assert_eq!(price_per_token, 7),
        other => panic!("not started: {other:?}"),
    }
    let (mut text, mut pieces) = (String::new(), 0);
    loop {
        let r = call(
            p2p,
            node,
            &TaskRequest::Poll {
                task_id: id,
                from_byte: text.len() as u64,
                to_end,
            },
        )
        .await;
        let TaskResponse::Output { text: t, finished } = r else {
            panic!("bad poll answer {r:?}");
        };
        if !t.is_empty() {
            pieces += 1;
        }
        text.push_str(&t);
        if let Some((f, u)) = finished {
            return (text, pieces, f, u);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_streams_settles_and_yields_a_verifiable_receipt() {
    let (key, client) = (Keypair::new(), Keypair::new());
    let node = node(&key).await;
    let p2p = peer(&node).await;

    let s = spec(&client, "Write one sentence about the sea.", 42);
    let id = s.task_id;
    let (text, pieces, finish, usage) = run(&p2p, &node, s, false).await;
    assert!(!text.is_empty());
    assert!(
        pieces > 1,
        "text should arrive in several polls, got {pieces}"
    );
    assert!(matches!(finish, Finish::Stop | Finish::Length));
    assert_eq!(
        usage.price,
        7 * u64::from(usage.prompt_tokens + usage.completion_tokens)
    );
    assert_eq!(usage.expected_cumulative, usage.price);

    // Same seed, same tokens; asked to answer only at the end, one piece.
    let again = spec(&client, "Write one sentence about the sea.", 42);
    let (text2, pieces2, _, usage2) = run(&p2p, &node, again.clone(), true).await;
    assert_eq!(text, text2);
    assert_eq!(pieces2, 1);

    // Vouchers that do not pay are refused.
    let other = Keypair::new();
    for (voucher, why) in [
        (
            Voucher::sign(&client, &key.pubkey(), usage.price - 1),
            "below",
        ),
        (Voucher::sign(&other, &key.pubkey(), usage.price), "client"),
        (
            Voucher::sign(&client, &other.pubkey(), usage.price),
            "another node",
        ),
    ] {
        match call(
            &p2p,
            &node,
            &TaskRequest::Settle {
                task_id: id,
                voucher,
            },
        )
        .await
        {
            TaskResponse::Error {
                kind: TaskErrorKind::Payment,
                message,
            } => {
                assert!(message.contains(why), "{message}")
            }
            other => panic!("bad voucher accepted ({why}): {other:?}"),
        }
    }

    // The right voucher yields a receipt that verifies and matches the task.
    let voucher = Voucher::sign(&client, &key.pubkey(), usage.price);
    let receipt = settle(&p2p, &node, id, voucher).await;
    receipt.verify().unwrap();
    assert_eq!(receipt.body.task_id, id);
    assert_eq!(receipt.body.price, usage.price);
    assert_eq!(receipt.body.completion_tokens, usage.completion_tokens);
    assert_ne!(receipt.body.commitment_root, [0; 32]);

    // The second task's voucher must cover both (vouchers are cumulative);
    // the old total is a replay and is refused.
    let replay = Voucher::sign(&client, &key.pubkey(), usage.price);
    match call(
        &p2p,
        &node,
        &TaskRequest::Settle {
            task_id: again.task_id,
            voucher: replay,
        },
    )
    .await
    {
        TaskResponse::Error {
            kind: TaskErrorKind::Payment,
            ..
        } => {}
        other => panic!("replayed voucher accepted: {other:?}"),
    }
    let voucher = Voucher::sign(&client, &key.pubkey(), usage.price + usage2.price);
    assert!(matches!(
        call(
            &p2p,
            &node,
            &TaskRequest::Settle {
                task_id: again.task_id,
                voucher
            }
        )
        .await,
        TaskResponse::Settled(_)
    ));
    // Settling twice finds no task.
    let voucher = Voucher::sign(&client, &key.pubkey(), 10 * usage.price);
    assert!(matches!(
        call(
            &p2p,
            &node,
            &TaskRequest::Settle {
                task_id: again.task_id,
                voucher
            }
        )
        .await,
        TaskResponse::Error {
            kind: TaskErrorKind::UnknownTask,
            ..
        }
    ));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_their_class() {
    let (key, client) = (Keypair::new(), Keypair::new());
    let node = node(&key).await;
    let p2p = peer(&node).await;
    let kind = |r: TaskResponse| match r {
        TaskResponse::Error { kind, .. } => kind,
        other => panic!("expected a refusal, got {other:?}"),
    };

    let mut s = spec(&client, "hi", 1);
    s.model = "gpt-17".into();
    assert_eq!(
        kind(call(&p2p, &node, &TaskRequest::Start(s)).await),
        TaskErrorKind::UnknownModel
    );

    let mut s = spec(&client, "hi", 1);
    s.max_tokens = 10_000;
    assert_eq!(
        kind(call(&p2p, &node, &TaskRequest::Start(s)).await),
        TaskErrorKind::BadRequest
    );

    // 20k words do not fit the 8k context.
    let s = spec(&client, &"word ".repeat(20_000), 1);
    assert_eq!(
        kind(call(&p2p, &node, &TaskRequest::Start(s)).await),
        TaskErrorKind::PromptTooLong
    );

    let mut s = spec(&client, "hi", 1);
    s.sampling.top_p = 7.0;
    assert_eq!(
        kind(call(&p2p, &node, &TaskRequest::Start(s)).await),
        TaskErrorKind::BadRequest
    );

    let poll = TaskRequest::Poll {
        task_id: [3; 32],
        from_byte: 0,
        to_end: false,
    };
    assert_eq!(
        kind(call(&p2p, &node, &poll).await),
        TaskErrorKind::UnknownTask
    );

    // Garbage bytes get a BadRequest answer, and the node keeps serving.
    let bytes = p2p
        .request(node.node_id(), &TASK, vec![0xff; 100])
        .await
        .unwrap();
    let r: TaskResponse = decode(&bytes, MAX_TASK_MESSAGE_BYTES).unwrap();
    assert_eq!(kind(r), TaskErrorKind::BadRequest);
    let s = spec(&client, "Say hello.", 3);
    let id = s.task_id;
    let (text, _, _, usage) =
        tokio::time::timeout(Duration::from_secs(120), run(&p2p, &node, s, false))
            .await
            .unwrap();
    assert!(!text.is_empty());

    // A shutting-down node refuses new work but still settles finished tasks.
    let drain = {
        let service = node.service.clone();
        tokio::spawn(async move { service.drain(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        kind(call(&p2p, &node, &TaskRequest::Start(spec(&client, "hi", 4))).await),
        TaskErrorKind::Busy
    );
    let voucher = Voucher::sign(&client, &key.pubkey(), usage.price);
    assert!(matches!(
        call(
            &p2p,
            &node,
            &TaskRequest::Settle {
                task_id: id,
                voucher
            }
        )
        .await,
        TaskResponse::Settled(_)
    ));
    assert!(
        drain.await.unwrap(),
        "drained once the last task was settled"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_survive_a_crash_and_reach_the_relayer_after_restart() {
    let (key, client) = (Keypair::new(), Keypair::new());
    let dir = tempfile::tempdir().unwrap();
    // A relayer identity whose address nobody listens on yet.
    let relayer_id = NodeIdentity::generate();
    let relayer_node = relayer_id.node_id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relayer_addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", relayer_node.peer_id());
    let config = || NodeConfig {
        relayer: Some(relayer_addr.clone()),
        state_dir: Some(dir.path().to_path_buf()),
        ..node_config(&key)
    };

    let node = start(config()).await.unwrap();
    let p2p = peer(&node).await;
    let s = spec(&client, "Name a fruit.", 5);
    let id = s.task_id;
    let (_, _, _, usage) = run(&p2p, &node, s, false).await;
    let voucher = Voucher::sign(&client, &key.pubkey(), usage.price);
    let receipt = settle(&p2p, &node, id, voucher).await;
    let file = dir
        .path()
        .join("outbox")
        .join(format!("{}.receipt", hex::encode(id)));
    assert!(
        file.exists(),
        "the receipt is on disk before it is delivered"
    );
    // Crash: the network goes away without a graceful shutdown.
    node.p2p.shutdown().await;
    drop(node);

    // The relayer comes up (a bare p2p peer answering as the relayer does;
    // the real relayer's receipt handling is tested in relayer/tests/flow.rs)
    // and the restarted node delivers the leftover receipt.
    let (relayer, mut events) = strata_p2p::start(
        relayer_id,
        P2pConfig {
            listen: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
            ..P2pConfig::local().with_protocols(ALL_PROTOCOLS)
        },
    )
    .await
    .unwrap();
    let node = start(config()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Some(strata_p2p::P2pEvent::Request(req)) if req.protocol == RECEIPT => {
                    let bytes = req.payload.clone();
                    req.respond(vec![0]).unwrap();
                    return bytes;
                }
                Some(_) => {}
                None => panic!("relayer stopped"),
            }
        }
    })
    .await
    .expect("the receipt reached the relayer");
    assert_eq!(Receipt::decode_verified(&got).unwrap(), receipt);
    for _ in 0..100 {
        if !file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!file.exists(), "delivered receipts leave the outbox");
    node.shutdown().await;
    relayer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_come_only_when_asked_and_change_no_token() {
    let (key, client) = (Keypair::new(), Keypair::new());
    let node = node(&key).await;
    let p2p = peer(&node).await;

    // More alternatives than OpenAI allows: refused before anything runs.
    let over = TaskRequest::StartLogprobs {
        spec: spec(&client, "Hi", 1),
        top_logprobs: 21,
    };
    match call(&p2p, &node, &over).await {
        TaskResponse::Error {
            kind: TaskErrorKind::BadRequest,
            message,
        } => assert!(message.contains("20"), "{message}"),
        other => panic!("21 alternatives accepted: {other:?}"),
    }

    // The same sampled task with and without logprobs: the same text.
    let plain = spec(&client, "Write one sentence about the sea.", 42);
    let (text, _, _, usage) = run(&p2p, &node, plain.clone(), true).await;
    let asked = TaskSpec {
        task_id: rand::random(),
        ..plain
    };
    let id = asked.task_id;
    let start = TaskRequest::StartLogprobs {
        spec: asked,
        top_logprobs: 2,
    };
    assert!(matches!(
        call(&p2p, &node, &start).await,
        TaskResponse::Started { .. }
    ));
    let (mut got, mut positions) = (String::new(), Vec::new());
    let (finish, usage2) = loop {
        let poll = TaskRequest::PollLogprobs {
            task_id: id,
            from_byte: got.len() as u64,
            from_token: positions.len() as u32,
            to_end: false,
        };
        let TaskResponse::LogprobOutput {
            text,
            logprobs,
            finished,
        } = call(&p2p, &node, &poll).await
        else {
            panic!("not a logprob answer");
        };
        got.push_str(&text);
        positions.extend(logprobs);
        if let Some(done) = finished {
            break done;
        }
    };
    assert_eq!(got, text);
    assert!(matches!(finish, Finish::Stop | Finish::Length));
    assert_eq!(usage2.completion_tokens, usage.completion_tokens);
    assert_eq!(positions.len(), usage.completion_tokens as usize);
    for p in &positions {
        assert!(p.sampled.logprob <= 0.0 && !p.sampled.bytes.is_empty());
        assert!((1..=2).contains(&p.top.len()), "{p:?}");
        assert!(p.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Listed or not, the sampled token has one value.
        for t in p.top.iter().filter(|t| t.token == p.sampled.token) {
            assert_eq!((t.logprob, &t.bytes), (p.sampled.logprob, &p.sampled.bytes));
        }
    }
}
