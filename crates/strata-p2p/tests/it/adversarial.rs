//! Hostile peers over real sockets: oversized frames, garbage bytes, forged
//! gossip signatures and a seeder of corrupt chunks are refused and banned,
//! nothing they sent reaches the application, and honest work completes.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identity, noise, request_response, tcp, yamux, StreamProtocol, Swarm};
use strata_p2p::{DownloadOptions, Envelope, NodeId, P2pConfig, P2pEvent};
use strata_test_utils::next_matching;
use tokio::io::AsyncWriteExt as _;

use crate::common::*;

/// Writes its request bytes verbatim (no framing): whatever the test wants
/// the victim to read.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.take(1 << 20).read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_request(p, io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Adversary {
    gossipsub: gossipsub::Behaviour,
    raw: request_response::Behaviour<RawCodec>,
}

/// A hand-built libp2p peer that speaks Strata's protocols badly.
fn adversary(protocol: &'static str) -> Swarm<Adversary> {
    adversary_keyed(protocol, identity::Keypair::generate_ed25519())
}

/// [`adversary`] with a given key, to come back as the same peer.
fn adversary_keyed(protocol: &'static str, key: identity::Keypair) -> Swarm<Adversary> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Adversary {
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .unwrap(),
            raw: request_response::Behaviour::new(
                [(
                    StreamProtocol::new(protocol),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

fn node_of(s: &Swarm<Adversary>) -> NodeId {
    NodeId::from_peer_id(s.local_peer_id()).unwrap()
}

/// Drive the adversary swarm in the background.
fn run(mut s: Swarm<Adversary>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let ev = s.select_next_some().await;
            if std::env::var("ADV_DEBUG").is_ok() {
                println!("adversary event: {ev:?}");
            }
        }
    })
}

async fn connect(s: &mut Swarm<Adversary>, addr: &str) {
    s.dial(addr.parse::<libp2p::Multiaddr>().unwrap()).unwrap();
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = s.select_next_some().await {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_forged_messages_are_refused() {
    let mut victim = spawn_node(local()).await;
    let honest = spawn_with_bootstrap(&[&victim], local()).await;
    let victim_peer = victim.handle.node_id().peer_id();

    // Raw TCP garbage at the listening port: the handshake fails, nothing else.
    let port: u16 = victim.addr.split('/').nth(4).unwrap().parse().unwrap();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    sock.write_all(&[0xde; 4096]).await.unwrap();
    drop(sock);

    // 1. An oversized frame on the task protocol (announces 4 GiB).
    let mut adv1 = adversary("/strata/task/1");
    connect(&mut adv1, &victim.addr).await;
    adv1.behaviour_mut()
        .raw
        .send_request(&victim_peer, vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    let adv1_id = node_of(&adv1);
    let j1 = run(adv1);

    // 2. Garbage on the chunk protocol (well framed, undecodable).
    let mut adv2 = adversary("/strata/chunks/1");
    connect(&mut adv2, &victim.addr).await;
    adv2.behaviour_mut()
        .raw
        .send_request(&victim_peer, vec![0, 0, 0, 5, 9, 9, 9, 9, 9]);
    let adv2_id = node_of(&adv2);
    let j2 = run(adv2);

    // 3. Gossip claiming to come from the honest node, with a forged signature.
    let mut adv3 = adversary("/strata/none/1");
    let topic = gossipsub::IdentTopic::new(RECEIPTS.name);
    adv3.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    connect(&mut adv3, &victim.addr).await;
    let adv3_id = node_of(&adv3);
    let forged = Envelope {
        version: 1,
        tag: RECEIPTS.tag,
        sender: honest.handle.node_id().0,
        payload: b"fake receipt".to_vec(),
        signature: [7u8; 64],
    }
    .encode();
    let j3 = tokio::spawn(async move {
        // Keep publishing until the victim has learnt our subscription.
        for _ in 0..100 {
            let _ = adv3
                .behaviour_mut()
                .gossipsub
                .publish(topic.clone(), forged.clone());
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                loop {
                    adv3.select_next_some().await;
                }
            })
            .await;
        }
    });

    let mut banned = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while banned.len() < 3 && tokio::time::Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), victim.events.recv()).await
        else {
            continue;
        };
        match ev {
            P2pEvent::PeerPenalised {
                node,
                banned: true,
                reason,
            } => {
                println!("banned {node}: {reason}");
                banned.insert(node);
            }
            P2pEvent::Request(r) => panic!("a malformed request reached the application: {r:?}"),
            P2pEvent::Gossip { from, payload, .. } => {
                panic!("forged gossip reached the application: {from} {payload:?}")
            }
            _ => {}
        }
    }
    assert!(banned.contains(&adv1_id), "oversized frame sender banned");
    assert!(banned.contains(&adv2_id), "garbage sender banned");
    assert!(banned.contains(&adv3_id), "forger banned");
    // Disconnection is asynchronous; banned peers must be gone shortly.
    let mut connected = Vec::new();
    for _ in 0..50 {
        connected = victim.handle.connected_peers().await.unwrap();
        if ![adv1_id, adv2_id, adv3_id]
            .iter()
            .any(|a| connected.contains(a))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for a in [adv1_id, adv2_id, adv3_id] {
        assert!(!connected.contains(&a), "banned peer {a} disconnected");
    }
    assert!(
        connected.contains(&honest.handle.node_id()),
        "honest peer kept"
    );
    assert_eq!(victim.handle.stats().await.unwrap().banned_peers, 3);
    j1.abort();
    j2.abort();
    j3.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_are_rejected_and_the_honest_transfer_completes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("file.bin");
    let hash = write_test_file(&src, 4 << 20, 3);
    let good = spawn_node(local()).await;
    let bad = spawn_node(P2pConfig {
        test_corrupt_uploads: true,
        ..local()
    })
    .await;
    let root = good
        .handle
        .seed_file_with_chunk_size(&src, 64 * 1024)
        .await
        .unwrap();
    assert_eq!(
        bad.handle
            .seed_file_with_chunk_size(&src, 64 * 1024)
            .await
            .unwrap(),
        root
    );

    let mut dl = spawn_with_bootstrap(&[&good, &bad], local()).await;
    let dest = dir.path().join("out.bin");
    let opts = DownloadOptions {
        peers: vec![bad.handle.node_id(), good.handle.node_id()],
        star: false,
    };
    let report = dl
        .handle
        .download(root, &dest, opts)
        .await
        .expect("completes");
    assert!(
        report.chunks_rejected >= 1,
        "the corrupt seeder was asked and refused"
    );
    assert!(report
        .bytes_from
        .iter()
        .all(|(n, _)| *n != bad.handle.node_id()));
    assert_eq!(file_hash(&dest), hash);
    let ev = next_matching(&mut dl.events, Duration::from_secs(5), |e| {
        matches!(e, P2pEvent::PeerPenalised { banned: true, .. })
    })
    .await;
    assert!(
        matches!(ev, Some(P2pEvent::PeerPenalised { node, .. }) if node == bad.handle.node_id())
    );
}

/// A peer that floods requests beyond its budget is refused, penalised and
/// banned; the ban runs out and the same peer is served again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_is_banned_and_the_ban_expires() {
    let cfg = P2pConfig {
        request_rate: 5,
        request_burst: 5,
        ban_threshold: 10,
        ban_duration: Duration::from_secs(2),
        ..local()
    };
    let TestNode {
        handle: victim,
        events: mut victim_events,
        addr: victim_addr,
    } = spawn_node(cfg).await;
    let victim_peer = victim.node_id().peer_id();

    let adv_key = identity::Keypair::generate_ed25519();
    let mut adv = adversary_keyed("/strata/task/1", adv_key.clone());
    let adv_id = node_of(&adv);
    connect(&mut adv, &victim_addr).await;
    // 40 well-formed task requests at once (frame = u32 length + payload).
    for _ in 0..40 {
        adv.behaviour_mut()
            .raw
            .send_request(&victim_peer, vec![0, 0, 0, 4, b'p', b'i', b'n', b'g']);
    }
    let adv_task = run(adv);

    let mut delivered = 0;
    let mut banned = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !banned && tokio::time::Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), victim_events.recv()).await
        else {
            continue;
        };
        match ev {
            P2pEvent::Request(r) => {
                delivered += 1;
                let _ = r.respond(b"pong".to_vec());
            }
            P2pEvent::PeerPenalised {
                node,
                banned: true,
                reason,
            } if node == adv_id => {
                println!("banned: {reason}");
                assert!(
                    reason.to_string().contains("over the request budget"),
                    "{reason}"
                );
                banned = true;
            }
            _ => {}
        }
    }
    assert!(banned, "the flooding peer was banned");
    assert!(
        delivered <= 8,
        "only the burst (5) and a little refill reached the application, got {delivered}"
    );
    adv_task.abort();
    assert_eq!(victim.stats().await.unwrap().banned_peers, 1);

    // While banned, a reconnection is dropped; once the ban ran out the same
    // key is served again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(victim.stats().await.unwrap().banned_peers, 0, "ban expired");
    tokio::spawn(async move {
        while let Some(ev) = victim_events.recv().await {
            if let P2pEvent::Request(r) = ev {
                let _ = r.respond(b"pong".to_vec());
            }
        }
    });
    let mut adv = adversary_keyed("/strata/task/1", adv_key);
    connect(&mut adv, &victim_addr).await;
    adv.behaviour_mut()
        .raw
        .send_request(&victim_peer, vec![0, 0, 0, 4, b'p', b'i', b'n', b'g']);
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(AdversaryEvent::Raw(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) = adv.select_next_some().await
            {
                return response;
            }
        }
    })
    .await
    .expect("served again after the ban");
    assert_eq!(answer, vec![0, 0, 0, 4, b'p', b'o', b'n', b'g']);
}
