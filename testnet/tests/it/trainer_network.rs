//! The trainer on the network, end to end on the local testnet with the real
//! model: `strata-trainer`'s loop takes its rollouts from the gateway's
//! rollout jobs (paid tasks on the node), makes a GRPO update, publishes the
//! adapter as version 1 over p2p signed by its key, and its next batch is
//! sampled by the node serving version 1: the node fetched the trainer's
//! very file, and the second batch's completions say version 1.

use std::sync::Arc;

use candle_core::DType;
use sha2::{Digest, Sha256};
use strata_chain::{Keypair, Signer};
use strata_engine::Engine;
use strata_p2p::P2pConfig;
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;
use strata_trainer::run::{adapter_path, LearnerSettings};
use strata_trainer::{
    AdamWConfig, GatewaySource, GrpoConfig, Learner, LoraConfig, P2pPublisher, PolicyModel,
    RunConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trainer_learns_from_network_rollouts_and_the_node_serves_its_version() {
    let _turn = crate::one_at_a_time().await;
    let trainer_key = Keypair::new();
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    options.nodes = 1;
    options.network.follow_trainers = vec![trainer_key.pubkey().to_bytes()];
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    let gw = t.net.gateway.url().to_string();
    let peers: Vec<String> = t.net.nodes.iter().map(|n| n.addrs[0].clone()).collect();
    let store = t.net.nodes[0].policies.clone().unwrap();
    let run_dir = dir.path().join("run");

    // The trainer blocks on its own runtime, as the binary does.
    let (state, digest) = {
        let run_dir = run_dir.clone();
        tokio::task::spawn_blocking(move || {
            let rt = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap(),
            );
            let model = strata_engine::default_model_path().unwrap();
            let base: [u8; 32] = Sha256::digest(std::fs::read(&model).unwrap()).into();
            let engine = Engine::load(&model).unwrap();
            let lora = LoraConfig {
                rank: 4,
                ..LoraConfig::default()
            };
            let policy =
                PolicyModel::load_gguf(&model, engine.model.config(), lora, DType::F32, 3).unwrap();
            let adam = AdamWConfig {
                lr: 1e-2,
                ..AdamWConfig::default()
            };
            let mut learner = Learner::new(policy, adam, GrpoConfig::default(), base).unwrap();
            let source = GatewaySource::new(
                rt.clone(),
                &gw,
                DEMO_API_KEY,
                MODEL_NAME,
                engine.tokenizer.clone(),
            );
            let mut publisher =
                P2pPublisher::start(rt, trainer_key, base, P2pConfig::local(), &peers).unwrap();
            let cfg = RunConfig {
                task: "copy".into(),
                prompts_per_step: 2,
                group_size: 2,
                max_tokens: 6,
                temperature: 1.0,
                steps: 2,
                staleness: 0,
                seed: 9,
                learner: LearnerSettings {
                    lr: 1e-2,
                    rank: 4,
                    kl_beta: 0.0,
                },
            };
            let state = strata_trainer::run(
                &cfg,
                &run_dir,
                &mut learner,
                Box::new(source),
                &mut publisher,
                |l| println!("{l:?}"),
            )
            .unwrap();
            let digest = publisher.announcements.first().map(|a| a.adapter_sha256);
            (state, digest)
        })
        .await
        .unwrap()
    };

    assert_eq!(state.log.len(), 2, "{:?}", state.log);
    assert_eq!(
        state.log[0].sampled_by, 0,
        "the first batch is the base model's"
    );
    assert!(
        state.version >= 1,
        "the network batch carried no signal: {:?}",
        state.log
    );
    assert_eq!(
        state.log[1].sampled_by, 1,
        "the second batch was sampled by the node serving version 1"
    );
    // What the node serves is the trainer's file, byte for byte.
    let file = std::fs::read(adapter_path(&run_dir, 1)).unwrap();
    let sha: [u8; 32] = Sha256::digest(&file).into();
    assert_eq!(digest, Some(sha));
    assert_eq!(
        store.get(1).expect("the node holds version 1").digest(),
        sha
    );

    // Worker selection reads the same announcements the routing does: the
    // node is offered for version 1 and chosen.
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/workers", t.net.gateway.url()))
        .query(&[("model", MODEL_NAME), ("policy_version", "1")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offers = strata_trainer::network::offers(&body).unwrap();
    assert_eq!(offers.len(), 1, "{body}");
    let demand = strata_rl::RolloutDemand {
        completions: 4,
        max_tokens: 6,
        staleness: 0,
        train_step_secs: 10.0,
    };
    let choice = strata_rl::select(&offers, 1.0, &demand).unwrap();
    assert_eq!(choice.chosen.len(), 1, "{choice}");
    assert_eq!(choice.chosen[0].id, offers[0].id);
}
