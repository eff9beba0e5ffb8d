//! The glue every Strata service shares (node, verifier, gateway, relayer,
//! testnet), written once: logging set-up ([`init_logging`]), the clocks
//! ([`now_ms`], and [`thread_cpu_micros`] for what a unit of work cost),
//! the p2p addresses a service advertises ([`wait_listening`]) and
//! bootstrapping peers from the node registry on-chain
//! ([`dial_registered_nodes`]), Prometheus snapshots ([`metrics`]), and a
//! trainer's publication of a policy version ([`policy`]).
//!
//! It holds no domain logic: tasks, receipts, audits and money live in the
//! crates named after them.
#![warn(missing_docs)]

pub mod metrics;
pub mod policy;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_chain::registration::{reach, Reach};
use strata_chain::rpc::ChainClient;
use strata_p2p::{NodeId, P2pError, P2pHandle};

/// How long [`wait_listening`] waits for the listeners' addresses.
const LISTEN_DEADLINE: Duration = Duration::from_secs(2);

/// The span every process opens around its work on one task, named `task`
/// with the task id in hex: the same id in the gateway's, the nodes', the
/// relayer's and the verifiers' logs, so one task can be followed across
/// processes (`grep <id>`, or a log collector's field filter).
pub fn task_span(task_id: &[u8; 32]) -> tracing::Span {
    let id: String = task_id.iter().map(|b| format!("{b:02x}")).collect();
    tracing::info_span!("task", id = %id)
}

/// Logs to stderr with `tracing`, filtered by `RUST_LOG` or, when it is
/// unset, by `default_filter` (e.g. `"info"`). A second call does nothing.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `path` with a leading `~/` replaced by the home directory (command-line
/// defaults such as `~/.strata/node`); other paths unchanged.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// CPU time consumed so far by the calling thread, in microseconds (0 where
/// the clock is unavailable). The engine runs its work on the calling thread
/// when candle is limited to one thread (`CANDLE_NUM_THREADS=1`, as the
/// local testnet runs it), so the difference across a piece of work is
/// exactly what that work cost: how serving and verifying CPU are measured.
pub fn thread_cpu_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

/// The addresses the swarm of `p2p` listens on (each ending in
/// `/p2p/<peer id>`), once they are worth advertising; empty if nothing
/// listens within 2 s. `listen` is what it was asked to listen on: a
/// listener on every interface (`0.0.0.0`, `::`) reports one address per
/// interface, one at a time and loopback usually first, so for it this waits
/// (within the same 2 s) until an address other machines can dial is among
/// them; otherwise a LAN node would register only its loopback address.
pub async fn wait_listening(p2p: &P2pHandle, listen: &[String]) -> Result<Vec<String>, P2pError> {
    let every_interface = listen.iter().any(|a| reach(a) == Reach::Nobody);
    let deadline = tokio::time::Instant::now() + LISTEN_DEADLINE;
    loop {
        let addrs = p2p.listen_addrs().await?;
        let settled = !addrs.is_empty()
            && (!every_interface || addrs.iter().any(|a| reach(a) == Reach::Others));
        if settled || tokio::time::Instant::now() >= deadline {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to the nodes registered on-chain, at the multiaddrs they
/// registered; returns how many connected. Best effort: an endpoint that
/// refuses `getProgramAccounts`, or nodes that are down, only mean fewer
/// peers to start with.
pub async fn dial_registered_nodes(chain: &ChainClient, p2p: &P2pHandle) -> usize {
    match chain.registered_nodes().await {
        Ok(nodes) => {
            let peers: Vec<(NodeId, Vec<String>)> = nodes
                .into_iter()
                .map(|n| (NodeId(n.operator.to_bytes()), n.multiaddrs))
                .collect();
            p2p.connect_to(&peers).await
        }
        Err(e) => {
            tracing::debug!("reading registered nodes: {e}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// What a log line inside the span looks like: the id, in hex, in the
    /// span's name, so `grep <id>` finds every line of the task.
    #[test]
    fn lines_inside_a_task_span_carry_its_id() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,strata_service=info,strata_node=debug",
            ))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _inside = super::task_span(&[0xab; 32]).entered();
            tracing::info!("settled");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(&format!("task{{id={}}}", "ab".repeat(32))),
            "{text}"
        );
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let before = super::thread_cpu_micros();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let busy = super::thread_cpu_micros() - before;
        assert!(busy > 0, "work costs CPU time");
        let before = super::thread_cpu_micros();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let idle = super::thread_cpu_micros() - before;
        assert!(idle < 100_000, "sleeping is not CPU time: {idle} us");
    }
}
