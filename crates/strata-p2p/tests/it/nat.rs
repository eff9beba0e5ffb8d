//! NAT traversal across real network namespaces: two private networks behind
//! masquerading NAT routers and one public relay (`scripts/netns-setup`).
//! Each node runs in its own namespace as a child process (this same test
//! binary, re-executed with a role). A peer behind NAT becomes reachable
//! through the relay; the DCUtR hole-punch upgrade is attempted and its
//! outcome reported; each node reports how it is reachable (AutoNAT: the
//! relay public, the NATed dialer private, the NATed listener relayed). Skips, saying why, only where namespaces cannot be made.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata_p2p::{NodeIdentity, P2pConfig, P2pEvent, RelayLimits};

use crate::common::TASK;

const RELAY_IP: &str = "10.99.0.2";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/netns-setup")
}

struct Netns;
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("down").status();
    }
}

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every `NAT …` line read so far.
    seen: RefCell<Vec<String>>,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(name: &'static str, ns: &str, envs: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "nat::nat_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child in namespace");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: RefCell::new(Vec::new()),
            name,
        }
    }

    /// Wait for a line starting with `NAT <prefix>` (or find one printed
    /// earlier); returns it.
    fn expect(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let wanted = format!("NAT {prefix}");
        if let Some(l) = self.seen.borrow().iter().find(|l| l.starts_with(&wanted)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    // libtest may print "test name ... " before our first line.
                    let Some(at) = l.find("NAT ") else { continue };
                    let l = &l[at..];
                    println!("[{}] {l}", self.name);
                    self.seen.borrow_mut().push(l.to_string());
                    if l.starts_with(&wanted) {
                        return Some(l.to_string());
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }
}

#[test]
fn nat_relay_reachability_and_hole_punch() {
    if std::env::var("STRATA_NAT_ROLE").is_ok() {
        return;
    }
    let status = Command::new("bash").arg(script()).arg("up").status();
    match status.map(|s| s.code()) {
        Ok(Some(0)) => {}
        Ok(Some(77)) => {
            println!("SKIPPED nat test: network namespaces cannot be created on this machine (needs root/CAP_SYS_ADMIN)");
            return;
        }
        other => panic!("scripts/netns-setup up failed: {other:?}"),
    }
    let _cleanup = Netns;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let keys: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p = dir.path().join(format!("key{i}.json"));
            std::fs::write(&p, id.to_solana_json()).unwrap();
            p.display().to_string()
        })
        .collect();
    let relay_addr = format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{}", ids[0].peer_id());

    let relay = Proc::spawn(
        "relay",
        "sp-relay",
        &[
            ("STRATA_NAT_ROLE", "relay".into()),
            ("STRATA_NAT_KEY", keys[0].clone()),
        ],
    );
    assert!(
        relay.expect("READY", Duration::from_secs(20)).is_some(),
        "relay started"
    );

    let b = Proc::spawn(
        "b",
        "sp-hostb",
        &[
            ("STRATA_NAT_ROLE", "listener".into()),
            ("STRATA_NAT_KEY", keys[1].clone()),
            ("STRATA_NAT_RELAY", relay_addr.clone()),
        ],
    );
    assert!(
        b.expect("RESERVED", Duration::from_secs(30)).is_some(),
        "NATed peer B got a relay reservation"
    );

    let a = Proc::spawn(
        "a",
        "sp-hosta",
        &[
            ("STRATA_NAT_ROLE", "dialer".into()),
            ("STRATA_NAT_KEY", keys[2].clone()),
            ("STRATA_NAT_RELAY", relay_addr.clone()),
            ("STRATA_NAT_TARGET", ids[1].node_id().to_string()),
        ],
    );
    let reply = a.expect("REPLY", Duration::from_secs(60));
    assert_eq!(
        reply.as_deref(),
        Some("NAT REPLY pong"),
        "A (behind NAT) reached B (behind another NAT) through the relay"
    );
    // The hole punch is attempted; either side reports its outcome.
    let punch = a
        .expect("HOLEPUNCH", Duration::from_secs(30))
        .or_else(|| b.expect("HOLEPUNCH", Duration::from_secs(5)));
    println!("hole punch outcome: {punch:?}");
    assert!(
        punch.is_some(),
        "a DCUtR hole-punch attempt was made and reported"
    );
    // Reachability as each node reports it: AutoNAT probes through the other
    // peers tell the relay it is public and the NATed dialer it is private;
    // the NATed listener advertises its relayed address.
    let relay_r = relay.expect("REACHABILITY Public", Duration::from_secs(40));
    println!("relay reachability: {relay_r:?}");
    assert!(
        relay_r.is_some(),
        "the relay learnt it is publicly reachable"
    );
    let a_r = a.expect("REACHABILITY Private", Duration::from_secs(40));
    println!("dialer reachability: {a_r:?}");
    assert!(a_r.is_some(), "the dialer behind NAT learnt it is private");
    let b_r = b.expect("REACHABILITY Relayed", Duration::from_secs(10));
    println!("listener reachability: {b_r:?}");
    assert!(
        b_r.as_deref().is_some_and(|l| l.contains("p2p-circuit")),
        "the listener behind NAT reports its relayed address"
    );
}

/// Child process body: only runs when re-executed with `STRATA_NAT_ROLE`.
#[test]
fn nat_child_process() {
    let Ok(role) = std::env::var("STRATA_NAT_ROLE") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child(role));
}

async fn child(role: String) {
    let key =
        NodeIdentity::from_solana_keypair_file(std::env::var("STRATA_NAT_KEY").unwrap()).unwrap();
    let relay = std::env::var("STRATA_NAT_RELAY").unwrap_or_default();
    let mut cfg = P2pConfig {
        autonat_only_global_ips: false,
        ..P2pConfig::default().with_protocols(&[TASK])
    };
    match role.as_str() {
        "relay" => {
            cfg.listen = vec![
                format!("/ip4/{RELAY_IP}/tcp/4001"),
                format!("/ip4/{RELAY_IP}/udp/4001/quic-v1"),
            ];
            cfg.external_addresses = cfg.listen.clone();
            cfg.relay_server = Some(RelayLimits::default());
            cfg.kad_server = Some(true);
        }
        _ => {
            cfg.listen = vec!["/ip4/0.0.0.0/tcp/4002".into()];
            cfg.bootstrap = vec![relay.clone()];
        }
    }
    let (h, mut ev) = strata_p2p::start(key, cfg).await.unwrap();
    match role.as_str() {
        "relay" => println!("NAT READY"),
        "listener" => {
            // Wait for the relay connection, then reserve a slot on it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.listen_via_relay(&relay).await.unwrap();
        }
        "dialer" => {
            let target: strata_p2p::NodeId =
                std::env::var("STRATA_NAT_TARGET").unwrap().parse().unwrap();
            let circuit = format!("{relay}/p2p-circuit/p2p/{}", target.peer_id());
            h.add_address(target, &circuit).await.unwrap();
            let h2 = h.clone();
            tokio::spawn(async move {
                for _ in 0..30 {
                    match h2.request(target, &TASK, b"ping".to_vec()).await {
                        Ok(r) => {
                            println!("NAT REPLY {}", String::from_utf8_lossy(&r));
                            return;
                        }
                        Err(e) => {
                            println!("NAT RETRY {e}");
                            let _ = h2.dial(&circuit).await;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        _ => {}
    }
    while let Some(e) = ev.recv().await {
        match e {
            P2pEvent::RelayReservation { relay } => println!("NAT RESERVED via {relay}"),
            P2pEvent::Request(r) => {
                let _ = r.respond(b"pong".to_vec());
            }
            P2pEvent::HolePunch { node, result } => match result {
                Ok(()) => println!("NAT HOLEPUNCH ok with {node}: direct connection"),
                Err(e) => println!("NAT HOLEPUNCH failed with {node}: {e}"),
            },
            P2pEvent::Reachability(r) => println!("NAT REACHABILITY {r:?}"),
            P2pEvent::PeerConnected {
                node,
                addr,
                relayed,
            } => {
                println!("NAT CONNECTED {node} via {addr} relayed={relayed}")
            }
            _ => {}
        }
    }
}
