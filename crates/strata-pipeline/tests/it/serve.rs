//! `client::serve` against a scripted network (no engine, no sockets): a
//! hop that stops answering without closing anything is found by the stall
//! detector and the task resumes on the route without it; a caller that
//! goes away cancels the task at its first hop, which ends it there.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_pipeline::client::{self, Channel, ClientError, PipelineJob, Served, Stall, Transport};
use strata_wire::hop::{HopRequest, HopResponse, HopSummary, RouteHop};
use strata_wire::task::{
    Finish, Prompt, TaskRequest, TaskResponse, TaskSpec, Usage, MAX_TASK_MESSAGE_BYTES,
};
use strata_wire::Sampling;

const PROMPT_TOKENS: u32 = 5;

/// A network of hops that emit one token per poll (token `i` is `i`, its
/// text `"t{i} "`), each answering every request at once, except the
/// nodes in `stopped`, which never answer (a `SIGSTOP`ped process).
#[derive(Default)]
struct Scripted {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Nodes that no longer answer.
    stopped: HashSet<[u8; 32]>,
    /// Stop this node once this many tokens have been polled.
    stop_at: Option<(usize, [u8; 32])>,
    /// The route of each segment, as its hops were opened.
    routes: HashMap<u8, Vec<[u8; 32]>>,
    /// The segment the first hop runs, and the task's `max_tokens`.
    running: Option<(u8, u32)>,
    /// The first hop was told to cancel.
    cancelled: bool,
    /// Requests each node got, by kind.
    seen: Vec<([u8; 32], &'static str)>,
}

impl Transport for Scripted {
    type Error = String;

    async fn request(
        &self,
        node: [u8; 32],
        channel: Channel,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let answer = self.answer(node, channel, &bytes);
        match answer {
            Some(a) => Ok(a),
            None => std::future::pending().await,
        }
    }
}

impl Scripted {
    /// The answer, or `None` for a node that does not answer.
    fn answer(&self, node: [u8; 32], channel: Channel, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut s = self.state.lock().unwrap();
        if s.stopped.contains(&node) {
            return None;
        }
        match channel {
            Channel::Hop => {
                let req: HopRequest = strata_wire::decode(bytes, usize::MAX).unwrap();
                let answer = match req {
                    HopRequest::Open(open) => {
                        s.seen.push((node, "open"));
                        s.routes
                            .insert(open.segment, open.route.iter().map(|h| h.node).collect());
                        HopResponse::Opened
                    }
                    HopRequest::Close { .. } => {
                        s.seen.push((node, "close"));
                        HopResponse::Closed
                    }
                    HopRequest::Finish { segment, .. } => {
                        s.seen.push((node, "finish"));
                        let index = s.routes[&segment].iter().position(|n| *n == node).unwrap();
                        // Hop k hands on what hop k + 1 receives.
                        let tag = |k: usize| [segment * 16 + k as u8; 32];
                        HopResponse::Finished(HopSummary {
                            positions: 1,
                            input_states: tag(index),
                            output_states: tag(index + 1),
                            commitment_root: [0; 32],
                            sampled: 0,
                        })
                    }
                    other => panic!("unexpected hop request {other:?}"),
                };
                Some(strata_wire::encode(&answer))
            }
            Channel::Task => {
                let req: TaskRequest = strata_wire::decode(bytes, MAX_TASK_MESSAGE_BYTES).unwrap();
                let answer = match req {
                    TaskRequest::StartHop { spec, open }
                    | TaskRequest::ResumeHop { spec, open, .. } => {
                        s.seen.push((node, "start"));
                        s.routes
                            .insert(open.segment, open.route.iter().map(|h| h.node).collect());
                        s.running = Some((open.segment, spec.max_tokens));
                        TaskResponse::Started {
                            prompt_tokens: PROMPT_TOKENS,
                            price_per_token: 1,
                        }
                    }
                    TaskRequest::Cancel { .. } => {
                        s.seen.push((node, "cancel"));
                        s.cancelled = true;
                        TaskResponse::Cancelled
                    }
                    TaskRequest::PollHop { from_token, .. } => {
                        let (segment, max_tokens) = s.running.unwrap();
                        if let Some((at, who)) = s.stop_at {
                            if from_token as usize >= at {
                                s.stopped.insert(who);
                            }
                        }
                        // A route with a stopped hop brings nothing more.
                        if s.routes[&segment].iter().any(|n| s.stopped.contains(n)) {
                            return None;
                        }
                        let usage = |n: u32| Usage {
                            prompt_tokens: PROMPT_TOKENS,
                            completion_tokens: n,
                            price: 0,
                            expected_cumulative: 0,
                        };
                        if s.cancelled {
                            TaskResponse::HopOutput {
                                text: String::new(),
                                tokens: vec![],
                                finished: Some((Finish::Cancelled, usage(from_token))),
                            }
                        } else {
                            let n = from_token + 1;
                            TaskResponse::HopOutput {
                                text: format!("t{from_token} "),
                                tokens: vec![from_token],
                                finished: (n == max_tokens).then(|| (Finish::Length, usage(n))),
                            }
                        }
                    }
                    other => panic!("unexpected task request {other:?}"),
                };
                Some(strata_wire::encode(&answer))
            }
        }
    }
}

fn node(name: u8) -> [u8; 32] {
    [name; 32]
}

fn route(names: [u8; 3]) -> Vec<RouteHop> {
    names
        .iter()
        .enumerate()
        .map(|(k, &n)| RouteHop {
            node: node(n),
            start: 10 * k as u16,
            end: 10 * (k as u16 + 1),
        })
        .collect()
}

fn job(max_tokens: u32, stall: Stall) -> PipelineJob {
    PipelineJob {
        spec: TaskSpec {
            task_id: [9; 32],
            client: [8; 32],
            model: "m".into(),
            prompt: Prompt::Text("hello".into()),
            max_tokens,
            sampling: Sampling::GREEDY,
            stop: vec![],
        },
        routes: vec![route([1, 2, 3]), route([1, 4, 3])],
        model_hash: [0; 32],
        n_layers: 30,
        max_failovers: 2,
        layer_ms: HashMap::new(),
        stall,
    }
}

/// Bounds short enough for a test, in the same proportions as the default.
fn quick() -> Stall {
    Stall {
        floor: Duration::from_millis(200),
        factor: 10,
        answer_within: Duration::from_millis(300),
    }
}

/// Serves `job` on `net`, which must end it (well) within 10 s; and how
/// long it took.
async fn serve_quickly(net: &Scripted, job: PipelineJob) -> (Served, Duration) {
    let started = Instant::now();
    let serving = client::serve(net, &job, |_| ControlFlow::Continue(()));
    let served = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the stopped hop is noticed")
        .expect("the task completes on the route without the stopped hop");
    (served, started.elapsed())
}

#[tokio::test]
async fn a_hop_that_stops_answering_is_routed_around() {
    let net = Scripted::default();
    net.state.lock().unwrap().stop_at = Some((4, node(2)));
    let (served, took) = serve_quickly(&net, job(12, quick())).await;
    assert_eq!(served.tokens, (0..12).collect::<Vec<u32>>());
    assert_eq!(served.finish, Finish::Length);
    assert_eq!(served.segments.len(), 2, "one failover");
    let first = &served.segments[0];
    assert_eq!(first.tokens_to, 4);
    assert!(
        first
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("stalled")),
        "{:?}",
        first.failure
    );
    // None is kept: the stopped hop, every hop after it, and the one before
    // it (its last rows may never be taken, and then it will not settle).
    assert!(first.summaries.iter().all(Option::is_none));
    assert_eq!(served.segments[1].route, route([1, 4, 3]));
    // Noticed after the window, the stopped hop given up on after
    // `answer_within`: no transport timeout was waited for.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Every cell is billed once, the stopped hop's to its replacement.
    let bills = client::bills(&served).unwrap();
    let billed = u64::from(PROMPT_TOKENS + 12);
    assert_eq!(bills.iter().map(|b| b.cells).sum::<u64>(), billed * 30);
    assert!(bills.iter().all(|b| b.node != node(2) || b.cells == 0));
    let paid: Vec<_> = bills
        .iter()
        .filter(|b| b.cells > 0)
        .map(|b| b.node)
        .collect();
    assert_eq!(paid, vec![node(1), node(4), node(3)], "each once");
}

#[tokio::test]
async fn without_the_detector_a_stopped_hop_holds_the_task() {
    // The same stop with a window longer than the test waits: nothing but
    // the stall detector ends the route.
    let net = Scripted::default();
    net.state.lock().unwrap().stop_at = Some((4, node(2)));
    let slow = Stall {
        floor: Duration::from_secs(3600),
        ..quick()
    };
    let job = job(12, slow);
    let serving = client::serve(&net, &job, |_| ControlFlow::Continue(()));
    let waited = tokio::time::timeout(Duration::from_millis(800), serving).await;
    assert!(
        waited.is_err(),
        "the task cannot end while the hop is stopped"
    );
}

#[tokio::test]
async fn a_caller_that_goes_away_cancels_at_the_first_hop() {
    let net = Scripted::default();
    let mut pieces = 0;
    let served = client::serve(&net, &job(100, Stall::default()), |_| {
        pieces += 1;
        if pieces >= 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .expect("a cancelled task ends and can be settled");
    assert_eq!(served.finish, Finish::Cancelled);
    assert_eq!(served.tokens, vec![0, 1, 2], "nothing after the cancel");
    assert_eq!(served.segments.len(), 1);
    assert!(served.segments[0].summaries.iter().all(Option::is_some));
    let seen = net.state.lock().unwrap().seen.clone();
    let cancels: Vec<_> = seen.iter().filter(|(_, k)| *k == "cancel").collect();
    assert_eq!(
        cancels,
        vec![&(node(1), "cancel")],
        "one cancel, to the first hop"
    );
    let finishes = seen.iter().filter(|(_, k)| *k == "finish").count();
    assert_eq!(finishes, 3, "every hop is finished, to be settled");
    // Billed for what ran: the prompt and the three tokens, at every layer.
    let bills = client::bills(&served).unwrap();
    let cells: u64 = bills.iter().map(|b| b.cells).sum();
    assert_eq!(cells, u64::from(PROMPT_TOKENS + 3) * 30);
}

#[test]
fn the_window_is_the_floor_or_ten_tokens() {
    let r = route([1, 2, 3]);
    let mut ms = HashMap::new();
    assert_eq!(client::expected_itl(&r, &ms), Duration::ZERO);
    assert_eq!(Stall::default().window(&r, &ms), Duration::from_secs(2));
    for n in [1, 2, 3] {
        ms.insert(node(n), 1.5);
    }
    // 30 blocks × 1.5 ms.
    assert_eq!(client::expected_itl(&r, &ms), Duration::from_millis(45));
    assert_eq!(Stall::default().window(&r, &ms), Duration::from_secs(2));
    ms.insert(node(2), 100.0);
    // 10 × (10 × 1.5 + 10 × 100 + 10 × 1.5) ms.
    assert_eq!(
        Stall::default().window(&r, &ms),
        Duration::from_millis(10_300)
    );
    ms.insert(node(2), f32::NAN);
    assert_eq!(client::expected_itl(&r, &ms), Duration::from_millis(30));
}

#[tokio::test]
async fn a_hop_stopped_before_the_task_is_routed_around() {
    // Stopped from the start: its open is never answered.
    let net = Scripted::default();
    net.state.lock().unwrap().stopped.insert(node(2));
    let (served, took) = serve_quickly(&net, job(6, quick())).await;
    assert_eq!(served.tokens, (0..6).collect::<Vec<u32>>());
    assert_eq!(served.segments.len(), 2);
    assert_eq!(served.segments[0].tokens_to, 0);
    assert_eq!(served.segments[1].route, route([1, 4, 3]));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_stalled_route_with_no_replica_fails_as_no_route() {
    let net = Scripted::default();
    net.state.lock().unwrap().stop_at = Some((2, node(3)));
    let err = client::serve(&net, &job(12, quick()), |_| ControlFlow::Continue(()))
        .await
        .expect_err("both routes use the stopped last hop");
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err}");
}
