//! Nodes that choose their own blocks (`--layers auto`): each offered too
//! little memory for the whole model, three joiners cover it between them
//! with no one telling them where, a fourth replicates part of it; when a
//! holder leaves, a replica moves into the hole within the lease and an
//! epoch, and the pipeline serves the same text as before.

use std::ops::Range;
use std::time::{Duration, Instant};

use strata_chain::{Keypair, Signer};
use strata_engine::ModelLayout;
use strata_node::memory::{caps, Layers, MemoryPlan};
use strata_node::placement::{PlacementConfig, LEASE};
use strata_node::{start, NodeConfig, RunningNode};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_pipeline::client::{self, PipelineTask};
use strata_wire::hop::RouteHop;
use strata_wire::protocols::ALL_PROTOCOLS;
use strata_wire::task::{ChatTurn, Prompt, Sampling, TaskSpec};

const OFFER_MB: u64 = 96;
const MAX_CONCURRENT: usize = 8;
const PLACING: PlacementConfig = PlacementConfig {
    join_wait: Duration::from_millis(2_500),
    epoch: Duration::from_secs(1),
};

async fn auto_node(bootstrap: &[&RunningNode]) -> RunningNode {
    let key = Keypair::new();
    let mut config = NodeConfig {
        max_concurrent: MAX_CONCURRENT,
        memory: MemoryPlan {
            layers: Layers::Auto(PLACING),
            offer_mb: Some(OFFER_MB),
        },
        ..crate::task_protocol::node_config(&key)
    };
    config.p2p.bootstrap = bootstrap.iter().map(|n| n.addrs[0].clone()).collect();
    start(config).await.unwrap()
}

fn held(n: &RunningNode) -> Range<usize> {
    n.hops
        .as_ref()
        .expect("an auto node offered 96 MiB is a hop")
        .layers()
}

/// A chain of the nodes' current blocks from 0 to 30, if there is one.
fn route(nodes: &[&RunningNode]) -> Option<Vec<RouteHop>> {
    let mut at = 0;
    let mut hops = Vec::new();
    while at < 30 {
        let n = nodes.iter().find(|n| held(n).start == at)?;
        let r = held(n);
        hops.push(RouteHop {
            node: n.node_id().0,
            start: r.start as u16,
            end: r.end as u16,
        });
        at = r.end;
    }
    Some(hops)
}

fn covered(nodes: &[&RunningNode]) -> bool {
    (0..30).all(|l| nodes.iter().any(|n| held(n).contains(&l)))
}

async fn serve(p2p: &P2pHandle, client: &Keypair, route: Vec<RouteHop>) -> String {
    let spec = TaskSpec {
        task_id: rand::random(),
        client: client.pubkey().to_bytes(),
        model: "SmolLM2-135M-Instruct".into(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: "Name three colours.".into(),
        }]),
        max_tokens: 12,
        sampling: Sampling::GREEDY,
        stop: vec![],
    };
    let task = PipelineTask {
        spec,
        route,
        model_hash: hex::decode(strata_engine::DEFAULT_MODEL_SHA256)
            .unwrap()
            .try_into()
            .unwrap(),
        n_layers: 30,
        segment: 0,
    };
    client::run(p2p, &task, |_| {}).await.unwrap().text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_nodes_cover_the_model_and_fill_a_hole_when_a_holder_leaves() {
    let path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let layout = ModelLayout::read(&path).unwrap();
    let cap = caps(&layout, OFFER_MB, MAX_CONCURRENT);
    assert!(
        cap.solo < 30 && cap.first.min(cap.last) >= 10,
        "96 MiB must hold a third of the model but not all of it: {cap:?}"
    );
    let window = usize::from(cap.first.min(cap.last));

    // Three joiners, one after the other, each hearing the ones before.
    let a = auto_node(&[]).await;
    let b = auto_node(&[&a]).await;
    let c = auto_node(&[&a, &b]).await;
    let three = [&a, &b, &c];
    println!("joined: {:?}", three.map(held));
    assert_eq!(
        held(&a),
        0..window,
        "the first joiner takes the first window"
    );
    assert!(three.iter().all(|n| held(n).len() <= window));
    assert!(covered(&three), "{:?}", three.map(held));

    let client = Keypair::new();
    let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
    let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), config)
        .await
        .unwrap();
    for n in three {
        p2p.dial(&n.addrs[0]).await.unwrap();
    }
    let before = serve(&p2p, &client, route(&three).expect("a chain 0..30")).await;
    assert!(!before.is_empty());

    // A fourth has nothing left to cover: it doubles one of the others.
    let d = auto_node(&[&a, &b, &c]).await;
    p2p.dial(&d.addrs[0]).await.unwrap();
    let replica = held(&d);
    println!("fourth: {replica:?}");
    assert!(
        three.iter().any(|n| held(n) == replica),
        "{replica:?} doubles no holding"
    );
    // Nobody moves while every block is held.
    tokio::time::sleep(PLACING.epoch * 2).await;
    assert_eq!(
        [&a, &b, &c, &d].map(held),
        [held(&a), held(&b), held(&c), replica.clone()]
    );

    // A holder of blocks the replica does not double leaves.
    let (gone, stay): (Vec<RunningNode>, Vec<RunningNode>) = [a, b, c]
        .into_iter()
        .partition(|n| !held(n).clone().all(|l| replica.contains(&l)) && held(n).start != 0);
    let mut gone = gone;
    let leaving = gone.remove(0);
    let hole = held(&leaving);
    println!("leaving: {hole:?}");
    let mut live: Vec<RunningNode> = stay.into_iter().chain(gone).collect();
    live.push(d);
    leaving.shutdown().await;
    let left = Instant::now();
    let refs: Vec<&RunningNode> = live.iter().collect();
    while !covered(&refs) {
        assert!(
            left.elapsed() < LEASE + PLACING.epoch * 10 + Duration::from_secs(20),
            "no node moved into {hole:?}: {:?}",
            refs.iter().map(|n| held(n)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "hole {hole:?} filled {:.1} s after its holder left: {:?}",
        left.elapsed().as_secs_f64(),
        refs.iter().map(|n| held(n)).collect::<Vec<_>>()
    );
    // The blocks chain up again, so a route can use them, and the swarm
    // serves the same text as before over it.
    let chain = route(&refs).unwrap_or_else(|| {
        panic!(
            "no chain 0..30 over {:?}",
            refs.iter().map(|n| held(n)).collect::<Vec<_>>()
        )
    });
    let after = serve(&p2p, &client, chain).await;
    assert_eq!(after, before);
    for n in live {
        n.shutdown().await;
    }
}
