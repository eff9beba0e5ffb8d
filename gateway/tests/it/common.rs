//! A real gateway on a real socket, and fake nodes that speak the task
//! protocol over real p2p: they announce their capacity on gossip and
//! answer tasks without a model, the way a test wants them to.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use strata_chain::{Keypair, Signer};
use strata_gateway::{GatewayConfig, RunningGateway};
use strata_p2p::{NodeIdentity, P2pConfig, P2pEvent, P2pHandle};
use strata_test_utils::{next_matching, wait_for};
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, CAPACITY, TASK};
use strata_wire::task::{
    Finish, PositionLogprobs, TaskErrorKind, TaskRequest, TaskResponse, TokenLogprob, Usage,
};
use strata_wire::{decode, encode, Capacity, Receipt, ReceiptBody, Sampling};

/// The model every fake node serves.
pub const MODEL: &str = "test-model";
/// What a fake node answers every task with.
pub const ANSWER: &str = "Paris is the capital.";
/// Tokens a fake node bills per task (prompt and completion).
pub const PROMPT_TOKENS: u32 = 5;
/// See [`PROMPT_TOKENS`].
pub const COMPLETION_TOKENS: u32 = 3;
/// A fake node's tokens asked for log-probabilities are this id plus
/// their position, each of log-probability [`FAKE_LOGPROB`].
pub const FAKE_TOKEN: u32 = 100;
/// See [`FAKE_TOKEN`].
pub const FAKE_LOGPROB: f32 = -0.5;
/// How long a test waits for the network to settle.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A gateway on 127.0.0.1 with `accounts`, reading the chain at `rpc_url`,
/// bootstrapped from `peers`.
pub async fn gateway(
    rpc_url: &str,
    accounts: Vec<(String, Keypair)>,
    state_dir: &Path,
    peers: &[&FakeNode],
) -> RunningGateway {
    strata_gateway::start(GatewayConfig {
        http_addr: ([127, 0, 0, 1], 0).into(),
        rpc_url: rpc_url.to_string(),
        accounts,
        state_dir: state_dir.to_path_buf(),
        p2p: P2pConfig {
            bootstrap: peers.iter().map(|n| n.addr.clone()).collect(),
            ..P2pConfig::local()
        },
    })
    .await
    .expect("the gateway starts")
}

/// Waits until the gateway routes to `n` nodes.
pub async fn wait_for_nodes(gw: &RunningGateway, n: usize) {
    wait_for(SETTLE, &format!("the gateway to hear {n} nodes"), || {
        let known = gw.nodes_known();
        async move { known == n }
    })
    .await;
}

/// POSTs `body` (raw bytes, sent as JSON) to `path` with `key` as the bearer
/// token (none if `None`); returns the status and the body as JSON (`Null`
/// if it is not JSON).
pub async fn post(
    gw: &RunningGateway,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", gw.url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A chat request body for `model`.
pub fn chat(model: &str, max_tokens: u32) -> Vec<u8> {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
    .to_string()
    .into_bytes()
}

/// Asserts an OpenAI error object with `status`, `type` and `code`.
pub fn assert_error(got: &(u16, Value), status: u16, kind: &str, code: &str, what: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(e["type"], kind, "{what}: {body}");
    assert_eq!(e["code"], code, "{what}: {body}");
    assert!(e.get("param").is_some(), "{what}: {body}");
}

/// How a fake node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves every task and signs a true receipt.
    Honest,
    /// Refuses every task as busy.
    Busy,
    /// Serves, then signs a receipt for a lower price than it billed.
    WrongReceipt,
    /// Starts tasks, then never finishes them (every poll: nothing yet).
    Stall,
}

/// A node without a model: real p2p, real signatures, scripted answers.
pub struct FakeNode {
    /// Its key (also its p2p identity).
    pub key: Keypair,
    /// Its first listen address, with `/p2p/<id>`.
    pub addr: String,
    /// Every listen address.
    pub addrs: Vec<String>,
    /// Price per token it announces and bills.
    pub price_per_token: u64,
    /// How it answers; tests may change it.
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Tasks it was asked to start.
    pub started: Arc<Mutex<Vec<[u8; 32]>>>,
    /// Tasks started and not yet settled: now, and the most at once.
    open: Arc<Mutex<(u32, u32)>>,
    handle: P2pHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeNode {
    /// Starts a node that announces `active` of `max_concurrent` slots in use.
    pub async fn start(price_per_token: u64, active: u32, max_concurrent: u32) -> FakeNode {
        let key = Keypair::new();
        let identity =
            NodeIdentity::from_keypair_bytes(key.to_bytes()).expect("an ed25519 identity");
        let config = P2pConfig::local()
            .with_protocols(ALL_PROTOCOLS)
            .with_topics(ALL_TOPICS);
        let (handle, mut events) = strata_p2p::start(identity, config)
            .await
            .expect("the fake node's p2p starts");
        next_matching(&mut events, SETTLE, |e| {
            matches!(e, P2pEvent::Listening { .. })
        })
        .await
        .expect("the fake node listens");
        let addrs = handle.listen_addrs().await.expect("listen addresses");
        let behaviour = Arc::new(Mutex::new(Behaviour::Honest));
        let started = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(Mutex::new((0, 0)));
        let announce = {
            let handle = handle.clone();
            let capacity = Capacity {
                model: MODEL.into(),
                model_hash: [1; 32],
                price_per_token,
                tokens_per_sec: 50.0,
                memory_mb: 1024,
                max_concurrent,
                active,
                context_length: 2048,
                addrs: addrs.clone(),
                sent_at_ms: 0,
                policies: Vec::new(),
            };
            // Gossip reaches the gateway only once its mesh has formed, so
            // announce again and again, as real nodes do.
            tokio::spawn(async move {
                loop {
                    let _ = handle.publish(&CAPACITY, encode(&capacity)).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        };
        let serve = {
            let key = key.insecure_clone();
            let behaviour = behaviour.clone();
            let started = started.clone();
            let open = open.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    let P2pEvent::Request(req) = ev else { continue };
                    if req.protocol != TASK {
                        continue;
                    }
                    let Ok(task) = decode::<TaskRequest>(&req.payload, TASK.max_request) else {
                        continue;
                    };
                    let b = *behaviour.lock().unwrap();
                    let answer = answer(&key, price_per_token, b, &started, &open, task);
                    let _ = req.respond(encode(&answer));
                }
            })
        };
        FakeNode {
            key,
            addr: addrs.first().cloned().expect("an address"),
            addrs,
            price_per_token,
            behaviour,
            started,
            open,
            handle,
            tasks: vec![announce, serve],
        }
    }

    /// What one task costs on this node.
    pub fn price(&self) -> u64 {
        u64::from(PROMPT_TOKENS + COMPLETION_TOKENS) * self.price_per_token
    }

    /// Changes how it answers from now on.
    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Tasks it was asked to start so far.
    pub fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    /// The most tasks it held at once (started, not yet settled).
    pub fn max_open(&self) -> u32 {
        self.open.lock().unwrap().1
    }

    /// Stops it.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.handle.shutdown().await;
    }
}

/// A fake node's answer to one task request.
fn answer(
    key: &Keypair,
    price_per_token: u64,
    behaviour: Behaviour,
    started: &Mutex<Vec<[u8; 32]>>,
    open: &Mutex<(u32, u32)>,
    req: TaskRequest,
) -> TaskResponse {
    let price = u64::from(PROMPT_TOKENS + COMPLETION_TOKENS) * price_per_token;
    match req {
        TaskRequest::Start(_) if behaviour == Behaviour::Busy => TaskResponse::Error {
            kind: TaskErrorKind::Busy,
            message: "all slots taken".into(),
        },
        TaskRequest::Start(spec) | TaskRequest::StartLogprobs { spec, .. } => {
            started.lock().unwrap().push(spec.task_id);
            let mut o = open.lock().unwrap();
            o.0 += 1;
            o.1 = o.1.max(o.0);
            TaskResponse::Started {
                prompt_tokens: PROMPT_TOKENS,
                price_per_token,
            }
        }
        TaskRequest::StartHop { .. }
        | TaskRequest::ResumeHop { .. }
        | TaskRequest::PollHop { .. } => TaskResponse::Error {
            kind: TaskErrorKind::BadRequest,
            message: "this fake node serves no pipeline hops".into(),
        },
        TaskRequest::StartPolicy { .. } => TaskResponse::Error {
            kind: TaskErrorKind::UnknownPolicy,
            message: "a fake node holds no policy version".into(),
        },
        TaskRequest::PollLogprobs { .. } if behaviour == Behaviour::Stall => {
            TaskResponse::LogprobOutput {
                text: String::new(),
                logprobs: Vec::new(),
                finished: None,
            }
        }
        // The answer's text, and one made-up position per completion token.
        TaskRequest::PollLogprobs {
            from_byte,
            from_token,
            ..
        } => TaskResponse::LogprobOutput {
            text: ANSWER[usize::try_from(from_byte).unwrap_or(0).min(ANSWER.len())..].into(),
            logprobs: (from_token..COMPLETION_TOKENS)
                .map(|i| PositionLogprobs {
                    sampled: TokenLogprob {
                        token: FAKE_TOKEN + i,
                        bytes: vec![b'x'],
                        logprob: FAKE_LOGPROB,
                    },
                    top: Vec::new(),
                })
                .collect(),
            finished: Some((
                Finish::Stop,
                Usage {
                    prompt_tokens: PROMPT_TOKENS,
                    completion_tokens: COMPLETION_TOKENS,
                    price,
                    expected_cumulative: price,
                },
            )),
        },
        TaskRequest::Poll { .. } if behaviour == Behaviour::Stall => TaskResponse::Output {
            text: String::new(),
            finished: None,
        },
        TaskRequest::Poll { from_byte, .. } => TaskResponse::Output {
            text: ANSWER[usize::try_from(from_byte).unwrap_or(0).min(ANSWER.len())..].into(),
            finished: Some((
                Finish::Stop,
                Usage {
                    prompt_tokens: PROMPT_TOKENS,
                    completion_tokens: COMPLETION_TOKENS,
                    price,
                    expected_cumulative: price,
                },
            )),
        },
        TaskRequest::Settle { task_id, voucher } => {
            let mut o = open.lock().unwrap();
            o.0 = o.0.saturating_sub(1);
            drop(o);
            let billed = if behaviour == Behaviour::WrongReceipt {
                price - 1
            } else {
                price
            };
            let body = ReceiptBody {
                version: strata_wire::receipt::RECEIPT_VERSION,
                task_id,
                node: key.pubkey().to_bytes(),
                model_hash: [1; 32],
                input_hash: strata_wire::tokens_hash(&[1, 2, 3, 4, 5]),
                output_hash: strata_wire::tokens_hash(&[6, 7, 8]),
                prompt_tokens: PROMPT_TOKENS,
                completion_tokens: COMPLETION_TOKENS,
                commitment_root: [2; 32],
                sampling: Sampling {
                    temperature: 0.0,
                    top_p: 1.0,
                    top_k: 0,
                    seed: 1,
                },
                price: billed,
                voucher,
                finished_at_ms: 1,
                hop: None,
                adapter: None,
            };
            match Receipt::sign(key, body) {
                Ok(r) => TaskResponse::Settled(Box::new(r)),
                Err(e) => TaskResponse::Error {
                    kind: TaskErrorKind::Internal,
                    message: e.to_string(),
                },
            }
        }
        TaskRequest::Cancel { .. } => TaskResponse::Cancelled,
    }
}
