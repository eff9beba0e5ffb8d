//! Pipelines over real libp2p on loopback, with the real model: three nodes
//! each holding a third of the blocks (offered too little memory to hold the
//! whole model) serve the same text as one whole-model node, token for token,
//! greedy and seeded, one at a time and concurrently; every hop's summary
//! links to the next. Then hostile peers: each bad message is refused with
//! its class, strikes ban the sender, and the pipeline still serves right.

use std::ops::Range;

use strata_chain::{Keypair, Signer};
use strata_engine::{HiddenStates, WireDType};
use strata_node::memory::{Layers, MemoryPlan};
use strata_node::{start, NodeConfig, RunningNode};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_pipeline::client::{self, PipelineTask};
use strata_wire::hop::{
    HopErrorKind, HopOpen, HopRequest, HopResponse, RouteHop, StepEntry, MAX_STEP_ROWS,
};
use strata_wire::protocols::{ALL_PROTOCOLS, HIDDEN_STATE, TASK};
use strata_wire::task::{
    ChatTurn, Finish, Prompt, Sampling, TaskErrorKind, TaskRequest, TaskResponse, TaskSpec,
};

const MODEL: &str = "SmolLM2-135M-Instruct";
/// Memory each hop offers, MiB: enough for a third of the blocks and their
/// KV budget, not for the whole model.
const OFFER_MB: u64 = 96;
const SPLIT: [Range<usize>; 3] = [0..10, 10..20, 20..30];

fn model_hash() -> [u8; 32] {
    let bytes = hex::decode(strata_engine::DEFAULT_MODEL_SHA256).unwrap();
    bytes.try_into().unwrap()
}

fn config(key: &Keypair, memory: MemoryPlan) -> NodeConfig {
    NodeConfig {
        max_concurrent: 8,
        memory,
        ..crate::task_protocol::node_config(key)
    }
}

async fn peer_of(nodes: &[&RunningNode]) -> P2pHandle {
    let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
    let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), config)
        .await
        .unwrap();
    for n in nodes {
        p2p.dial(&n.addrs[0]).await.unwrap();
    }
    p2p
}

fn spec(client: &Keypair, text: &str, sampling: Sampling) -> TaskSpec {
    TaskSpec {
        task_id: rand::random(),
        client: client.pubkey().to_bytes(),
        model: MODEL.into(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: text.into(),
        }]),
        max_tokens: 24,
        sampling,
        stop: vec![],
    }
}

fn greedy() -> Sampling {
    Sampling::GREEDY
}

fn seeded(seed: u64) -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        seed,
    }
}

/// The whole-model node's answer: text, finish, completion tokens.
async fn whole_answer(
    p2p: &P2pHandle,
    node: &RunningNode,
    spec: TaskSpec,
) -> (String, Finish, u32) {
    let call = |req: TaskRequest| async move {
        strata_wire::task::call(|b| p2p.request(node.node_id(), &TASK, b), &req)
            .await
            .unwrap()
    };
    let id = spec.task_id;
    let started = call(TaskRequest::Start(spec)).await;
    assert!(
        matches!(started, TaskResponse::Started { .. }),
        "{started:?}"
    );
    let mut text = String::new();
    loop {
        let poll = TaskRequest::Poll {
            task_id: id,
            from_byte: text.len() as u64,
            to_end: true,
        };
        match call(poll).await {
            TaskResponse::Output { text: t, finished } => {
                text.push_str(&t);
                if let Some((f, u)) = finished {
                    return (text, f, u.completion_tokens);
                }
            }
            other => panic!("bad poll answer {other:?}"),
        }
    }
}

fn route(hops: &[RunningNode]) -> Vec<RouteHop> {
    hops.iter()
        .zip(SPLIT)
        .map(|(n, r)| RouteHop {
            node: n.node_id().0,
            start: r.start as u16,
            end: r.end as u16,
        })
        .collect()
}

fn pipeline_task(hops: &[RunningNode], spec: TaskSpec) -> PipelineTask {
    PipelineTask {
        spec,
        route: route(hops),
        model_hash: model_hash(),
        n_layers: 30,
        segment: 0,
    }
}

async fn hop_call(p2p: &P2pHandle, to: &RunningNode, req: &HopRequest) -> HopResponse {
    let bytes = p2p
        .request(to.node_id(), &HIDDEN_STATE, strata_wire::encode(req))
        .await
        .unwrap();
    HopResponse::decode(&bytes).unwrap()
}

fn refused(answer: HopResponse) -> HopErrorKind {
    match answer {
        HopResponse::Error { kind, .. } => kind,
        other => panic!("accepted: {other:?}"),
    }
}

async fn banned(node: &RunningNode) -> usize {
    node.p2p.stats().await.unwrap().banned_peers
}

/// Waits (up to 5 s) until `node` has banned `n` peers; returns how many it has.
async fn banned_reaches(node: &RunningNode, n: usize) -> usize {
    for _ in 0..50 {
        if banned(node).await >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    banned(node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hops_serve_what_one_node_serves_and_refuse_bad_input() {
    let client = Keypair::new();
    // Offered 96 MiB, no node can hold the whole model...
    let refusal = start(config(
        &Keypair::new(),
        MemoryPlan {
            layers: Layers::Whole,
            offer_mb: Some(OFFER_MB),
        },
    ))
    .await
    .err()
    .expect("a node offered too little memory for the whole model starts");
    assert!(
        refusal.to_string().contains("more than the 96 MiB offered"),
        "{refusal}"
    );
    // ...but each holds a third of it.
    let mut hops = Vec::new();
    for r in SPLIT {
        let memory = MemoryPlan {
            layers: Layers::Range(r.clone()),
            offer_mb: Some(OFFER_MB),
        };
        let n = start(config(&Keypair::new(), memory)).await.unwrap();
        assert!(u64::from(n.profile.model_mb) < OFFER_MB, "{r:?}");
        hops.push(n);
    }
    let whole = start(config(&Keypair::new(), MemoryPlan::default()))
        .await
        .unwrap();
    assert!(hops
        .iter()
        .all(|h| h.profile.model_mb < whole.profile.model_mb));
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        hops[a].p2p.dial(&hops[b].addrs[0]).await.unwrap();
    }
    let p2p = peer_of(&[&whole, &hops[0], &hops[1], &hops[2]]).await;
    let transport = p2p.clone();

    // A hop refuses whole tasks: it holds a third of the model.
    let lone = strata_wire::task::call(
        |b| p2p.request(hops[1].node_id(), &TASK, b),
        &TaskRequest::Start(spec(&client, "hi", greedy())),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            lone,
            TaskResponse::Error {
                kind: TaskErrorKind::UnknownModel,
                ..
            }
        ),
        "{lone:?}"
    );

    // One at a time, greedy and seeded: the same text, token for token.
    let prompts = [
        ("Name three colours.", greedy()),
        ("Write one sentence about the sea.", seeded(7)),
        ("What is 2 + 3?", seeded(11)),
    ];
    let mut expected = Vec::new();
    for (text, sampling) in &prompts {
        let s = spec(&client, text, *sampling);
        let want = whole_answer(&p2p, &whole, s.clone()).await;
        let mut streamed = String::new();
        let s2 = TaskSpec {
            task_id: rand::random(),
            ..s.clone()
        };
        let got = client::run(&transport, &pipeline_task(&hops, s2), |t| {
            streamed.push_str(t)
        })
        .await
        .unwrap();
        assert_eq!(got.text, want.0, "{text}");
        assert_eq!(streamed, got.text);
        assert_eq!(got.finish, want.1);
        assert_eq!(got.usage.completion_tokens, want.2);
        // Every hop ran every position but the last sampled token's.
        let positions = got.usage.prompt_tokens + got.usage.completion_tokens - 1;
        assert!(got.summaries.iter().all(|h| h.positions == positions));
        assert_eq!(got.summaries[2].sampled, want.2);
        assert_eq!(client::broken_link(&got.summaries), None);
        expected.push((s, want));
    }

    // All at once: continuous batching on every hop changes nothing.
    let runs = expected.iter().map(|(s, _)| {
        let task = pipeline_task(
            &hops,
            TaskSpec {
                task_id: rand::random(),
                ..s.clone()
            },
        );
        let transport = &transport;
        async move { client::run(transport, &task, |_| {}).await.unwrap() }
    });
    let together = futures::future::join_all(runs).await;
    for (got, (_, want)) in together.iter().zip(&expected) {
        assert_eq!(got.text, want.0);
    }

    // Hostile peers, each with a fresh identity against the middle hop.
    let middle = &hops[1];
    let open_from = |first: [u8; 32], start: u16| {
        let mut route = route(&hops);
        route[0].node = first;
        route[1].start = start;
        route[0].end = start;
        HopOpen {
            task_id: rand::random(),
            segment: 0,
            route,
            index: 1,
            client: client.pubkey().to_bytes(),
            model_hash: model_hash(),
            n_layers: 30,
            sampling: greedy(),
            sample_offset: 0,
            max_new: 4,
            stop_tokens: vec![],
        }
    };
    let rows = |n: usize, cols: usize| {
        HiddenStates::new(n, cols, vec![0.25; n * cols])
            .unwrap()
            .encode(WireDType::F32)
            .unwrap()
    };
    let step = |open: &HopOpen, position: u32, n: u32, states: Vec<u8>| HopRequest::Step {
        entries: vec![StepEntry {
            task_id: open.task_id,
            segment: 0,
            position,
            rows: n,
        }],
        states,
    };
    let before = banned(middle).await;

    // Claims layers the node does not hold: refused, struck.
    let liar = peer_of(&[middle]).await;
    let open = open_from(liar.node_id().0, 5);
    let answer = hop_call(&liar, middle, &HopRequest::Open(open)).await;
    assert_eq!(refused(answer), HopErrorKind::WrongLayer);
    assert_eq!(banned_reaches(middle, before + 1).await, before + 1);

    // A sequence that does not exist: refused, but an honest race costs no ban.
    let racer = peer_of(&[middle]).await;
    let ghost = open_from(racer.node_id().0, 10);
    let answer = hop_call(&racer, middle, &step(&ghost, 0, 2, rows(2, 576))).await;
    assert_eq!(refused(answer), HopErrorKind::UnknownSequence);

    // Rows from a node that is not the hop before: refused, struck.
    let intruder = peer_of(&[middle]).await;
    let theirs = open_from(hops[0].node_id().0, 10);
    let answer = hop_call(&intruder, middle, &HopRequest::Open(theirs.clone())).await;
    assert_eq!(answer, HopResponse::Opened);
    let answer = hop_call(&intruder, middle, &step(&theirs, 0, 2, rows(2, 576))).await;
    assert_eq!(refused(answer), HopErrorKind::NotYourSequence);
    assert_eq!(banned_reaches(middle, before + 2).await, before + 2);

    // The right sender, but rows of the wrong width, too few rows for the
    // entries, the wrong position, or more rows than a step may carry.
    for (i, bad) in ["width", "count", "position", "oversized"]
        .into_iter()
        .enumerate()
    {
        let sender = peer_of(&[middle]).await;
        let open = open_from(sender.node_id().0, 10);
        let answer = hop_call(&sender, middle, &HopRequest::Open(open.clone())).await;
        assert_eq!(answer, HopResponse::Opened, "{bad}");
        let (req, kind) = match bad {
            "width" => (step(&open, 0, 2, rows(2, 100)), HopErrorKind::BadShape),
            "count" => (step(&open, 0, 3, rows(2, 576)), HopErrorKind::BadShape),
            "position" => (step(&open, 5, 2, rows(2, 576)), HopErrorKind::WrongPosition),
            _ => (
                step(&open, 0, MAX_STEP_ROWS + 1, rows(1, 576)),
                HopErrorKind::BadShape,
            ),
        };
        assert_eq!(
            refused(hop_call(&sender, middle, &req).await),
            kind,
            "{bad}"
        );
        assert_eq!(
            banned_reaches(middle, before + 3 + i).await,
            before + 3 + i,
            "{bad}"
        );
    }
    // The liar, the intruder and the four senders; not the racer.
    assert_eq!(banned(middle).await, before + 6);

    // Nothing was served wrongly: the pipeline still gives the same text.
    let (s, want) = &expected[1];
    let task = pipeline_task(
        &hops,
        TaskSpec {
            task_id: rand::random(),
            ..s.clone()
        },
    );
    let got = client::run(&transport, &task, |_| {}).await.unwrap();
    assert_eq!(got.text, want.0);
}
