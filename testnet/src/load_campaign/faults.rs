//! The fault injector: a seeded schedule of SIGKILLs and restarts (a node,
//! the relayer, the gateway, a verifier), an outage of the chain's RPC, and
//! a network partition of one node (packets to and from its p2p port
//! dropped by iptables in the campaign's own network namespace). One fault
//! at a time; every kind comes at least once, then more at random.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::procs::Service;
use super::proxy::RpcProxy;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL a random node, start it again.
    KillNode,
    /// SIGKILL the relayer, start it again.
    KillRelayer,
    /// SIGKILL the gateway, start it again.
    KillGateway,
    /// SIGKILL a random verifier, start it again.
    KillVerifier,
    /// The chain's RPC refuses connections.
    RpcOutage,
    /// A random node cannot reach or be reached by its peers.
    Partition,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillNode,
        FaultKind::KillRelayer,
        FaultKind::KillGateway,
        FaultKind::KillVerifier,
        FaultKind::RpcOutage,
        FaultKind::Partition,
    ];
}

/// How long faults last.
#[derive(Debug, Clone)]
pub struct FaultTimes {
    /// How long a killed process stays down before it is started again.
    pub down: Duration,
    /// How long the RPC outage lasts.
    pub rpc_outage: Duration,
    /// How long a partition lasts.
    pub partition: Duration,
    /// Mean gap between the extra faults after every kind came once.
    pub extra_every: Duration,
}

/// The services the injector may hit, by role (indices into the shared list).
pub struct Targets {
    /// All services.
    pub services: Arc<Mutex<Vec<Service>>>,
    /// Which are nodes, with their p2p ports.
    pub nodes: Vec<(usize, u16)>,
    /// Which is the relayer.
    pub relayer: usize,
    /// Which is the gateway.
    pub gateway: usize,
    /// Which are verifiers.
    pub verifiers: Vec<usize>,
    /// The chain's RPC as the services see it.
    pub rpc: Arc<RpcProxy>,
}

/// One fault as it happened.
#[derive(Debug, Clone)]
pub struct Injected {
    /// When it began, since the campaign's start.
    pub at: Duration,
    /// Which kind.
    pub kind: FaultKind,
    /// On what (`node-1`, `rpc`, ...), and anything that went wrong.
    pub detail: String,
}

/// The schedule: every kind once, shuffled, over the first 70 % of `run`,
/// then random kinds about every `extra_every` until 85 % of `run`.
pub fn schedule(seed: u64, run: Duration, times: &FaultTimes) -> Vec<(Duration, FaultKind)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds = FaultKind::ALL.to_vec();
    kinds.shuffle(&mut rng);
    let span = run.mul_f64(0.7);
    let gap = span / (kinds.len() as u32 + 1);
    let mut plan: Vec<(Duration, FaultKind)> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (gap * (i as u32 + 1), *k))
        .collect();
    let mut at = span;
    loop {
        at += times.extra_every.mul_f64(rng.random_range(0.5..1.5));
        if at > run.mul_f64(0.85) {
            break;
        }
        plan.push((
            at,
            FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())],
        ));
    }
    plan
}

/// Runs `plan` from `t0`, one fault at a time (a fault due while another
/// lasts waits for it).
pub async fn inject(
    plan: Vec<(Duration, FaultKind)>,
    targets: Targets,
    times: FaultTimes,
    seed: u64,
    t0: Instant,
) -> Vec<Injected> {
    let mut rng = StdRng::seed_from_u64(seed.rotate_left(17));
    let mut log = Vec::new();
    for (at, kind) in plan {
        let due = t0 + at;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let began = t0.elapsed();
        let detail = match kind {
            FaultKind::KillNode => {
                let (i, _) = targets.nodes[rng.random_range(0..targets.nodes.len())];
                kill_restart(&targets.services, i, times.down).await
            }
            FaultKind::KillRelayer => {
                kill_restart(&targets.services, targets.relayer, times.down).await
            }
            FaultKind::KillGateway => {
                kill_restart(&targets.services, targets.gateway, times.down).await
            }
            FaultKind::KillVerifier => match targets.verifiers.as_slice() {
                [] => "no verifier to kill".to_string(),
                v => {
                    kill_restart(
                        &targets.services,
                        v[rng.random_range(0..v.len())],
                        times.down,
                    )
                    .await
                }
            },
            FaultKind::RpcOutage => {
                targets.rpc.set_up(false);
                tokio::time::sleep(times.rpc_outage).await;
                targets.rpc.set_up(true);
                format!("rpc down for {:?}", times.rpc_outage)
            }
            FaultKind::Partition => {
                let (i, port) = targets.nodes[rng.random_range(0..targets.nodes.len())];
                let name = service_name(&targets.services, i);
                match partition(port, true) {
                    Ok(()) => {
                        tokio::time::sleep(times.partition).await;
                        match partition(port, false) {
                            Ok(()) => format!(
                                "{name} (p2p port {port}) cut off for {:?}",
                                times.partition
                            ),
                            Err(e) => format!("{name}: healing the partition failed: {e}"),
                        }
                    }
                    Err(e) => format!("{name}: partition failed: {e}"),
                }
            }
        };
        tracing::info!(?kind, %detail, "fault");
        log.push(Injected {
            at: began,
            kind,
            detail,
        });
    }
    log
}

fn service_name(services: &Mutex<Vec<Service>>, i: usize) -> String {
    services
        .lock()
        .map(|s| s[i].name.clone())
        .unwrap_or_else(|_| format!("service {i}"))
}

async fn kill_restart(services: &Mutex<Vec<Service>>, i: usize, down: Duration) -> String {
    let name = match services.lock() {
        Ok(mut s) => {
            s[i].kill();
            s[i].name.clone()
        }
        Err(_) => return "service list poisoned".into(),
    };
    tokio::time::sleep(down).await;
    let restarted = services
        .lock()
        .map_err(|_| anyhow::anyhow!("service list poisoned"))
        .and_then(|mut s| s[i].spawn());
    match restarted {
        Ok(()) => format!("{name} SIGKILLed, restarted after {down:?}"),
        Err(e) => format!("{name} SIGKILLed; restart failed: {e:#}"),
    }
}

/// Drops (or stops dropping) every TCP and UDP packet to or from `port` on
/// this namespace's interfaces. libp2p-swarm dials out from the listening
/// port by default (best-effort `PortUse::Reuse`), so this cuts the node's
/// outgoing connections as well as
/// incoming ones; its chain RPC (ephemeral ports) still works, as a node
/// cut off from its peers but not from its RPC provider would see it.
pub fn partition(port: u16, on: bool) -> anyhow::Result<()> {
    let op = if on { "-I" } else { "-D" };
    for proto in ["tcp", "udp"] {
        for dir in ["--dport", "--sport"] {
            let out = Command::new("iptables")
                .args([
                    op,
                    "INPUT",
                    "-p",
                    proto,
                    dir,
                    &port.to_string(),
                    "-j",
                    "DROP",
                ])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "iptables {op} INPUT -p {proto} {dir} {port}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times() -> FaultTimes {
        FaultTimes {
            down: Duration::from_secs(2),
            rpc_outage: Duration::from_secs(60),
            partition: Duration::from_secs(30),
            extra_every: Duration::from_secs(40),
        }
    }

    #[test]
    fn every_kind_comes_once_before_the_extras_and_all_before_the_end() {
        for seed in 0..32 {
            let run = Duration::from_secs(600);
            let plan = schedule(seed, run, &times());
            let first: Vec<FaultKind> = plan.iter().take(6).map(|(_, k)| *k).collect();
            for k in FaultKind::ALL {
                assert_eq!(
                    first.iter().filter(|f| **f == k).count(),
                    1,
                    "{seed}: {first:?}"
                );
            }
            assert!(plan.windows(2).all(|w| w[0].0 < w[1].0), "in time order");
            assert!(plan.iter().all(|(at, _)| *at <= run.mul_f64(0.85)));
            assert!(plan.len() > 6, "a 10-minute run gets extra faults");
        }
        // A short run still gets every kind, and the same seed the same plan.
        let short = schedule(5, Duration::from_secs(50), &times());
        assert_eq!(short.len(), 6);
        assert_eq!(short, schedule(5, Duration::from_secs(50), &times()));
    }
}
