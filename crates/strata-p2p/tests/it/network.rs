//! Several real nodes on 127.0.0.1: discovery, gossip, request-response, and
//! verified chunked distribution (with resume).

use std::time::Duration;

use strata_p2p::{DownloadOptions, P2pConfig, P2pError, P2pEvent, ProtocolSpec, TopicSpec};
use strata_test_utils::next_matching;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_gossip_and_request_response() {
    let a = spawn_node(local()).await;
    let mut b = spawn_with_bootstrap(&[&a], local()).await;
    let c = spawn_with_bootstrap(&[&a], local()).await;
    let TestNode {
        handle: d_handle,
        events: mut d_events,
        ..
    } = spawn_with_bootstrap(&[&a], local()).await;
    let d_id = d_handle.node_id();
    let c_id = c.handle.node_id();

    // D answers task requests by reversing them, and records gossip it sees.
    let (gossip_tx, mut gossip_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = d_events.recv().await {
            match ev {
                P2pEvent::Request(req) => {
                    assert_eq!(req.protocol, TASK);
                    let mut p = req.payload.clone();
                    p.reverse();
                    req.respond(p).unwrap();
                }
                P2pEvent::Gossip {
                    topic,
                    from,
                    payload,
                } => {
                    let _ = gossip_tx.send((topic, from, payload));
                }
                _ => {}
            }
        }
    });

    // B knows only A; it reaches D by node id alone (Kademlia finds D's address).
    let mut answer = None;
    for _ in 0..40 {
        match b.handle.request(d_id, &TASK, b"strata".to_vec()).await {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    assert_eq!(
        answer.as_deref(),
        Some(&b"atarts"[..]),
        "B reached D through the DHT"
    );
    assert!(b.handle.connected_peers().await.unwrap().contains(&d_id));

    // Local size limit: an oversized request is refused before sending.
    let big = vec![0u8; TASK.max_request + 1];
    assert!(matches!(
        b.handle.request(d_id, &TASK, big).await,
        Err(P2pError::TooLarge { .. })
    ));
    // What the application did not register is a clear error, not a panic.
    let unregistered = ProtocolSpec {
        name: "/strata/opening/1",
        ..TASK
    };
    assert!(matches!(
        b.handle.request(d_id, &unregistered, vec![1]).await,
        Err(P2pError::UnknownProtocol(name)) if name == "/strata/opening/1"
    ));
    let versions = TopicSpec {
        tag: 3,
        name: "/strata/versions/1",
        max_payload: 64 << 10,
    };
    assert!(matches!(
        b.handle.publish(&versions, vec![1]).await,
        Err(P2pError::UnknownTopic(name)) if name == "/strata/versions/1"
    ));

    // Gossip from C reaches B and D, signed by C's node key.
    let mut got_b = false;
    let mut got_d = false;
    for _ in 0..40 {
        let _ = c.handle.publish(&CAPACITY, b"cap:7".to_vec()).await;
        if !got_b {
            got_b = next_matching(&mut b.events, Duration::from_millis(500), |e| {
                matches!(e, P2pEvent::Gossip { topic: CAPACITY, from, payload } if *from == c_id && payload == b"cap:7")
            })
            .await
            .is_some();
        }
        // Wait for D too: once B has it, this is the only wait in the round
        // (a bare `try_recv` here once spun the remaining rounds in
        // milliseconds and failed CI while the message was one hop away).
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while !got_d {
            match tokio::time::timeout_at(deadline, gossip_rx.recv()).await {
                Ok(Some((topic, from, payload))) => {
                    got_d = topic == CAPACITY && from == c_id && payload == b"cap:7";
                }
                _ => break,
            }
        }
        if got_b && got_d {
            break;
        }
    }
    assert!(got_b && got_d, "gossip reached B ({got_b}) and D ({got_d})");
    drop(d_handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_resumes_after_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("weights.bin");
    let hash = write_test_file(&src, 4 << 20, 1);
    // A slow seeder, so the first downloader is interrupted half way.
    let seeder = spawn_node(P2pConfig {
        upload_rate_limit: Some(2 << 20),
        ..local()
    })
    .await;
    let root = seeder
        .handle
        .seed_file_with_chunk_size(&src, 64 * 1024)
        .await
        .unwrap();
    let dest = dir.path().join("dl.bin");
    let opts = DownloadOptions {
        peers: vec![seeder.handle.node_id()],
        star: false,
    };

    let mut first = spawn_with_bootstrap(&[&seeder], local()).await;
    let h = first.handle.clone();
    let (d2, o2) = (dest.clone(), opts.clone());
    let dl = tokio::spawn(async move { h.download(root, d2, o2).await });
    next_matching(
        &mut first.events,
        Duration::from_secs(60),
        |e| matches!(e, P2pEvent::DownloadProgress { have, .. } if *have >= 10),
    )
    .await
    .expect("some progress");
    first.handle.shutdown().await;
    assert!(matches!(dl.await.unwrap(), Err(P2pError::Shutdown)));

    let second = spawn_with_bootstrap(&[&seeder], local()).await;
    let report = second.handle.download(root, &dest, opts).await.unwrap();
    assert!(
        report.chunks_resumed >= 10,
        "resumed {}",
        report.chunks_resumed
    );
    assert_eq!(report.chunks_resumed + report.chunks_fetched, 64);
    assert_eq!(file_hash(&dest), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_to_eight_peers_every_byte_verified() {
    let mb: usize = std::env::var("STRATA_P2P_TEST_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model.gguf");
    let hash = write_test_file(&src, mb << 20, 2);
    let seeder = spawn_node(local()).await;
    let root = seeder.handle.seed_file(&src).await.unwrap();

    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(spawn_with_bootstrap(&[&seeder], local()).await);
    }
    let mut tasks = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let h = p.handle.clone();
        let dest = dir.path().join(format!("peer{i}.gguf"));
        let opts = DownloadOptions {
            peers: vec![seeder.handle.node_id()],
            star: false,
        };
        tasks.push(tokio::spawn(async move {
            let r = h.download(root, &dest, opts).await;
            (dest, r)
        }));
    }
    let mut from_peers = 0u64;
    for t in tasks {
        let (dest, r) = t.await.unwrap();
        let report = r.expect("download completes");
        assert_eq!(report.bytes, (mb << 20) as u64);
        assert_eq!(report.chunks_rejected, 0);
        assert_eq!(file_hash(&dest), hash, "every byte verified");
        from_peers += report
            .bytes_from
            .iter()
            .filter(|(n, _)| *n != seeder.handle.node_id())
            .map(|(_, b)| b)
            .sum::<u64>();
    }
    let up = seeder.handle.stats().await.unwrap().chunk_bytes_uploaded;
    println!(
        "source uploaded {:.2} copies; peers traded {:.2} copies among themselves",
        up as f64 / (mb << 20) as f64,
        from_peers as f64 / (mb << 20) as f64
    );
    // Behaviour, not timing: the downloaders did serve each other.
    assert!(from_peers > 0, "peers exchanged chunks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_multiaddrs_resolve() {
    // Nodes with no application protocol or topic registered.
    let a = spawn_node(P2pConfig::local()).await;
    let b = spawn_node(P2pConfig::local()).await;
    // `/ip4/127.0.0.1/tcp/<port>/p2p/<id>` -> `/dns4/localhost/tcp/<port>/p2p/<id>`.
    let by_name = a.addr.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert!(by_name.starts_with("/dns4/localhost/tcp/"), "{by_name}");
    b.handle.dial(&by_name).await.expect("dial by DNS name");
    assert!(b
        .handle
        .connected_peers()
        .await
        .unwrap()
        .contains(&a.handle.node_id()));
    // A name that does not resolve is a clear dial error, not a hang.
    let stranger = strata_p2p::NodeIdentity::generate().node_id().peer_id();
    let bogus = format!("/dns4/no-such-host.invalid/tcp/1/p2p/{stranger}");
    let err = tokio::time::timeout(Duration::from_secs(30), b.handle.dial(&bogus))
        .await
        .expect("the failed lookup is reported in time");
    assert!(matches!(err, Err(P2pError::Dial(_))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_files_are_no_longer_served_or_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("adapter.bin");
    write_test_file(&src, 1 << 20, 2);
    // Slow enough that the download is still running when it is stopped.
    let seeder = spawn_node(P2pConfig {
        upload_rate_limit: Some(256 << 10),
        ..local()
    })
    .await;
    let root = seeder
        .handle
        .seed_file_with_chunk_size(&src, 64 * 1024)
        .await
        .unwrap();
    let opts = DownloadOptions {
        peers: vec![seeder.handle.node_id()],
        star: false,
    };

    let mut first = spawn_with_bootstrap(&[&seeder], local()).await;
    let h = first.handle.clone();
    let (dest, o) = (dir.path().join("a.bin"), opts.clone());
    let dl = tokio::spawn(async move { h.download(root, dest, o).await });
    next_matching(
        &mut first.events,
        Duration::from_secs(20),
        |e| matches!(e, P2pEvent::DownloadProgress { have, .. } if *have >= 1),
    )
    .await
    .expect("some progress");
    first.handle.stop_seeding(root).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), dl)
        .await
        .expect("the download ends when stopped")
        .unwrap();
    assert!(matches!(ended, Err(P2pError::Stopped(_))), "{ended:?}");

    // The seeder stops too: a new downloader finds nothing to fetch (the
    // whole file takes 4 s at this rate; a served manifest and chunk would
    // show as progress well within 2).
    seeder.handle.stop_seeding(root).await.unwrap();
    let mut second = spawn_with_bootstrap(&[&seeder], local()).await;
    let h = second.handle.clone();
    let dest = dir.path().join("b.bin");
    tokio::spawn(async move { h.download(root, dest, opts).await });
    let progress = next_matching(&mut second.events, Duration::from_secs(2), |e| {
        matches!(e, P2pEvent::DownloadProgress { .. })
    })
    .await;
    assert!(progress.is_none(), "a stopped file was served");
}
