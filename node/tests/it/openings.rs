//! Audit openings on a real local chain, with the real model: a node serves
//! a paid task, its receipt is posted in a batch and the batch's audit seed
//! drawn; then the node opens the task to the verifier the rules assign (and
//! the opening leads to the receipt's root) and refuses everyone and
//! everything else: a peer the rules do not name, other layers than the
//! rules pick, a proof for another leaf, an unknown task, garbage bytes.

use std::time::Duration;

use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::registration::ensure_registered;
use strata_chain::{ix, Capacity, Keypair, Signer, ROLE_VERIFIER};
use strata_engine::{Opening, MAX_ENTRY_BYTES};
use strata_node::{start, NodeConfig, RunningNode};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_test_utils::chain::LocalChain;
use strata_test_utils::wait_for;
use strata_wire::audit::{OpeningRequest, OpeningResponse};
use strata_wire::protocols::{ALL_PROTOCOLS, OPENING, TASK};
use strata_wire::task::{ChatTurn, Prompt, Sampling, TaskRequest, TaskResponse, TaskSpec};
use strata_wire::{encode, Receipt, Voucher};

const STAKE: u64 = 1_000_000_000;

async fn peer_as(key: &Keypair, node: &RunningNode) -> P2pHandle {
    let identity = NodeIdentity::from_keypair_bytes(key.to_bytes()).unwrap();
    let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
    let (p2p, _events) = strata_p2p::start(identity, config).await.unwrap();
    p2p.dial(&node.addrs[0]).await.unwrap();
    p2p
}

async fn task(p2p: &P2pHandle, node: &RunningNode, req: TaskRequest) -> TaskResponse {
    let bytes = strata_wire::task::call(|b| p2p.request(node.node_id(), &TASK, b), &req)
        .await
        .unwrap();
    bytes
}

async fn ask(p2p: &P2pHandle, node: &RunningNode, bytes: Vec<u8>) -> OpeningResponse {
    let answer = p2p.request(node.node_id(), &OPENING, bytes).await.unwrap();
    OpeningResponse::decode(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_opens_a_task_only_to_its_assigned_verifier_and_only_as_the_rules_say() {
    let mut params = strata_chain::params::local();
    params.audit_rate_bps = 10_000;
    let chain = LocalChain::start(params).await;
    let node_key = Keypair::new();
    chain.fund(&node_key, STAKE).await;
    let verifier = Keypair::new();
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
    let node = start(NodeConfig {
        keypair: node_key.insecure_clone(),
        rpc_url: Some(chain.url.clone()),
        model_path: strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE),
        model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.to_string()),
        model_name: "SmolLM2-135M-Instruct".into(),
        price_per_token: 1,
        max_concurrent: 2,
        max_tokens: 16,
        stake: STAKE,
        p2p: P2pConfig::local(),
        relayer: None,
        profile_tokens: 4,
        quiet: true,
        state_dir: None,
        cheat: None,
        memory: Default::default(),
        follow_trainers: Vec::new(),
    })
    .await
    .unwrap();

    // A paid task: start, wait for the end, settle, get the receipt.
    let client = Keypair::new();
    let p2p = peer_as(&Keypair::new(), &node).await;
    let task_id = [42u8; 32];
    let spec = TaskSpec {
        task_id,
        client: client.pubkey().to_bytes(),
        model: "SmolLM2-135M-Instruct".into(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: "Name a river.".into(),
        }]),
        max_tokens: 8,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 3,
        },
        stop: vec![],
    };
    assert!(matches!(
        task(&p2p, &node, TaskRequest::Start(spec)).await,
        TaskResponse::Started { .. }
    ));
    let usage = loop {
        let r = task(
            &p2p,
            &node,
            TaskRequest::Poll {
                task_id,
                from_byte: 0,
                to_end: true,
            },
        )
        .await;
        if let TaskResponse::Output {
            finished: Some((_, usage)),
            ..
        } = r
        {
            break usage;
        }
    };
    let voucher = Voucher::sign(&client, &node_key.pubkey(), usage.expected_cumulative);
    let TaskResponse::Settled(receipt) =
        task(&p2p, &node, TaskRequest::Settle { task_id, voucher }).await
    else {
        panic!("not settled");
    };
    let receipt: Receipt = *receipt;

    // Its receipt, alone in a posted batch, with the batch's seed drawn.
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
    chain
        .rpc
        .send(
            &[ix::post_batch(
                &relayer.pubkey(),
                0,
                0,
                leaf,
                1,
                usage.prompt_tokens as u64,
            )],
            &relayer,
            &[],
        )
        .await
        .unwrap();
    let rpc = &chain.rpc;
    wait_for(
        Duration::from_secs(30),
        "the batch's seed to be drawn",
        || async {
            let _ = rpc.send(&[ix::seal_batch(0)], &relayer, &[]).await;
            rpc.batch(0)
                .await
                .ok()
                .flatten()
                .is_some_and(|b| b.audit_seed != [0; 32])
        },
    )
    .await;
    let config = rpc.config().await.unwrap();
    let batch = rpc.batch(0).await.unwrap().unwrap();
    let nodes = rpc.registered_nodes().await.unwrap();
    let n_layers = 30;
    let plan = strata_chain::audit::plan(
        &config,
        &batch,
        &leaf,
        &node_key.pubkey(),
        &nodes,
        n_layers,
        usage.completion_tokens,
    )
    .unwrap();
    assert!(plan.audited);
    assert_eq!(plan.verifiers, vec![verifier.pubkey()]);
    let request = OpeningRequest {
        task_id,
        batch_id: 0,
        leaf_index: 0,
        proof: merkle::proof::<Ledger>(&[leaf], 0).unwrap(),
        layers: plan.layers.clone(),
    };

    // Refused: someone the rules do not name.
    let stranger = peer_as(&Keypair::new(), &node).await;
    let r = ask(&stranger, &node, encode(&request)).await;
    assert!(
        matches!(&r, OpeningResponse::Refused(why) if why.contains("not the verifier assigned")),
        "{r:?}"
    );

    let v = peer_as(&verifier, &node).await;
    // Refused: other layers than the rules pick.
    let mut other_layers = request.clone();
    other_layers.layers = vec![(plan.layers[0] + 1) % n_layers];
    let r = ask(&v, &node, encode(&other_layers)).await;
    assert!(
        matches!(&r, OpeningResponse::Refused(why) if why.contains("audit rules pick")),
        "{r:?}"
    );
    // Refused: a proof for another leaf (an asker shopping for a seed).
    let mut other_leaf = request.clone();
    other_leaf.leaf_index = 1;
    let r = ask(&v, &node, encode(&other_leaf)).await;
    assert!(
        matches!(&r, OpeningResponse::Refused(why) if why.contains("not at that leaf")),
        "{r:?}"
    );
    // Refused: an unknown task, and garbage.
    let mut unknown = request.clone();
    unknown.task_id = [7; 32];
    let r = ask(&v, &node, encode(&unknown)).await;
    assert!(
        matches!(&r, OpeningResponse::Refused(why) if why.contains("unknown task")),
        "{r:?}"
    );
    let r = ask(&v, &node, vec![0xff; 300]).await;
    assert!(matches!(r, OpeningResponse::Refused(_)), "{r:?}");

    // Opened for the assigned verifier, and every entry leads to the root.
    let OpeningResponse::Opened(opening) = ask(&v, &node, encode(&request)).await else {
        panic!("the assigned verifier was refused");
    };
    assert!(opening.entries.iter().any(|e| e.index == n_layers));
    for e in &opening.entries {
        let o = Opening::decode(&e.opening, MAX_ENTRY_BYTES).unwrap();
        assert_eq!(o.entry.layer, e.index);
        o.verify(&receipt.body.commitment_root).unwrap();
    }
    assert!(
        node.openings.cpu_micros() > 0,
        "re-deriving states is measured"
    );
    node.shutdown().await;
}
