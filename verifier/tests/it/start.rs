//! Start-up refuses bad configuration with a clear error, before touching
//! the network or the model.

use std::time::Duration;

use strata_chain::Keypair;
use strata_p2p::P2pConfig;
use strata_verifier::{start, VerifierConfig, VerifierError};

fn config(rpc_url: &str, relayer: &str) -> VerifierConfig {
    VerifierConfig {
        keypair: Keypair::new(),
        rpc_url: rpc_url.into(),
        model_path: "/nonexistent/model.gguf".into(),
        model_sha256: None,
        p2p: P2pConfig::local(),
        relayer_http: relayer.into(),
        stake: 0,
        poll_interval: Duration::from_secs(1),
        opening_timeout: Duration::from_secs(5),
        state_dir: None,
        follow_trainers: Vec::new(),
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let rpc = format!("http://127.0.0.1:{}", closed_port());
    let mut c = config(&rpc, "http://127.0.0.1:8788");
    c.poll_interval = Duration::ZERO;
    let e = start(c).await.err().unwrap();
    assert!(matches!(e, VerifierError::Config(_)), "{e}");

    let e = start(config(&rpc, "relayer.example")).await.err().unwrap();
    assert!(e.to_string().contains("relayer.example"), "{e}");

    let e = start(config("moon", "http://127.0.0.1:8788"))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("moon"), "{e}");

    let e = start(config(&rpc, "http://127.0.0.1:8788"))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, VerifierError::Chain(_)), "{e}");
    assert!(e.to_string().contains(&rpc), "the error says where: {e}");
}
