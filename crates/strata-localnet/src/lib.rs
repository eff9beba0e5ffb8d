//! The embedded local chain. It runs surfpool's SVM (a real LiteSVM runtime
//! with the system, SPL Token and ATA programs and the ed25519 precompile)
//! in-process, registers the Strata program natively through `native-svm`,
//! and serves the standard Solana JSON-RPC and websocket APIs on 127.0.0.1
//! (or, for a private swarm across machines, on an address the caller names:
//! [`Localnet::start_on`]), so every binary and any Solana client talks to it
//! unchanged.
//!
//! It is offline by construction: no remote RPC is configured, so it never
//! fetches accounts from a public cluster. It is not a validator: no
//! consensus, no compute-unit metering for the native program, and no access
//! control: whoever reaches its RPC port may airdrop SOL and call its admin
//! methods. On any address other than loopback it therefore turns surfpool's
//! `surfnet_*` cheatcodes (which rewrite accounts at will) off for good
//! before it returns.
#![warn(missing_docs)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{
    BlockProductionMode, RpcConfig, SimnetCommand, SimnetConfig, SimnetEvent, SurfpoolConfig,
};

/// How long the chain may take to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Where and how the local chain runs.
#[derive(Debug, Clone)]
pub struct LocalnetConfig {
    /// JSON-RPC port (0 picks a free one), on 127.0.0.1 unless
    /// [`Localnet::start_on`] names another address.
    pub rpc_port: u16,
    /// Websocket port (0 picks a free one), on the same address.
    pub ws_port: u16,
    /// Milliseconds per slot.
    pub slot_time_ms: u64,
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        Self {
            rpc_port: 8899,
            ws_port: 8900,
            slot_time_ms: 400,
        }
    }
}

/// Why the local chain could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    /// A port is taken or could not be probed.
    #[error("cannot bind {host}:{port}: {source} (is another chain running? pick another port; is {host} an address of this machine?)")]
    Port {
        /// The address.
        host: IpAddr,
        /// The port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// surfpool refused to build its SVM.
    #[error("could not create the SVM: {0}")]
    Svm(String),
    /// The runtime thread could not be spawned.
    #[error("could not spawn the chain thread: {0}")]
    Spawn(std::io::Error),
    /// The chain did not report itself started in time, or died first.
    #[error("the local chain did not start: {0}")]
    NotStarted(String),
    /// The cheatcodes could not be turned off on a chain other machines can
    /// reach (the chain is stopped rather than left open).
    #[error("could not turn the chain's cheatcodes off: {0}")]
    Lockdown(String),
}

/// A running local chain; dropping it stops the chain.
pub struct Localnet {
    rpc_url: String,
    ws_url: String,
    commands: Sender<SimnetCommand>,
    thread: Option<JoinHandle<()>>,
}

impl Localnet {
    /// Starts the chain on 127.0.0.1 and waits until its RPC answers.
    pub fn start(config: &LocalnetConfig) -> Result<Self, LocalnetError> {
        Self::start_on(config, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts the chain with its RPC and websocket bound on `bind` and waits
    /// until its RPC answers. Off loopback, the `surfnet_*` cheatcodes are
    /// then disabled and locked (they cannot be turned back on over RPC), so
    /// that a machine on the network cannot rewrite accounts; airdrops and
    /// the admin methods stay (see the crate docs). On the unspecified
    /// address (every interface) [`Localnet::rpc_url`] names loopback.
    pub fn start_on(config: &LocalnetConfig, bind: IpAddr) -> Result<Self, LocalnetError> {
        let rpc_port = pick_port(bind, config.rpc_port)?;
        let ws_port = pick_port(bind, config.ws_port)?;
        let (mut svm, events, geyser) = SurfnetSvm::new(SurfnetSvmConfig {
            slot_time: config.slot_time_ms,
            // Profiling re-executes every transaction on a copy of the SVM; not needed here.
            instruction_profiling_enabled: false,
            ..SurfnetSvmConfig::default()
        })
        .map_err(|e| LocalnetError::Svm(e.to_string()))?;
        native_svm::add_native_program(
            &mut svm.inner.svm,
            strata_program::ID,
            strata_program::native::process_instruction,
        );

        let surfpool = SurfpoolConfig {
            simnets: vec![SimnetConfig {
                offline_mode: true,
                remote_rpc_url: None,
                slot_time: config.slot_time_ms,
                block_production_mode: BlockProductionMode::Clock,
                instruction_profiling_enabled: false,
                ..SimnetConfig::default()
            }],
            rpc: RpcConfig {
                // surfpool parses "{bind_host}:{port}" as a socket address,
                // so an IPv6 host goes in brackets.
                bind_host: match bind {
                    IpAddr::V4(ip) => ip.to_string(),
                    IpAddr::V6(ip) => format!("[{ip}]"),
                },
                bind_port: rpc_port,
                ws_port,
                // Advertised in getClusterNodes only; nothing listens there.
                gossip_port: pick_port(bind, 0)?,
                tpu_port: pick_port(bind, 0)?,
                tpu_quic_port: pick_port(bind, 0)?,
            },
            ..SurfpoolConfig::default()
        };
        let (commands, commands_rx) = unbounded();
        let commands_tx = commands.clone();
        let thread = std::thread::Builder::new()
            .name("strata-localnet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("local chain runtime: {e}");
                        return;
                    }
                };
                let run = surfpool_core::start_local_surfnet(
                    svm,
                    surfpool,
                    commands_tx,
                    commands_rx,
                    geyser,
                );
                if let Err(e) = runtime.block_on(run) {
                    tracing::error!("local chain stopped: {e}");
                }
            })
            .map_err(LocalnetError::Spawn)?;

        let deadline = std::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match events.recv_timeout(left) {
                Ok(SimnetEvent::CoreStarted(_)) => break,
                Ok(SimnetEvent::ErrorLog(_, msg)) => tracing::warn!("local chain: {msg}"),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(LocalnetError::NotStarted(format!(
                        "no start signal within {STARTUP_DEADLINE:?}"
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(LocalnetError::NotStarted("the chain thread exited".into()))
                }
            }
        }
        // Keep draining events so the chain never blocks on a full channel.
        std::thread::Builder::new()
            .name("strata-localnet-events".into())
            .spawn(move || while events.recv().is_ok() {})
            .map_err(LocalnetError::Spawn)?;

        // Clients on this machine reach an every-interface chain on loopback.
        let host = match bind {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let chain = Self {
            rpc_url: format!("http://{}", SocketAddr::new(host, rpc_port)),
            ws_url: format!("ws://{}", SocketAddr::new(host, ws_port)),
            commands,
            thread: Some(thread),
        };
        if !bind.is_loopback() {
            // On error `chain` is dropped here, which stops it.
            lock_cheatcodes(SocketAddr::new(host, rpc_port))?;
        }
        Ok(chain)
    }

    /// The JSON-RPC URL.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The websocket URL.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = self.commands.send(SimnetCommand::Terminate(None));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `port` on `host`, checked free, or a free port if `port` is 0.
fn pick_port(host: IpAddr, port: u16) -> Result<u16, LocalnetError> {
    let err = |source| LocalnetError::Port { host, port, source };
    let listener = TcpListener::bind((host, port)).map_err(err)?;
    listener.local_addr().map(|a| a.port()).map_err(err)
}

/// Longest a call to our own chain's RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Disables every `surfnet_*` cheatcode of the chain at `rpc` with surfpool's
/// lockout, which also disables the methods that would turn them back on.
fn lock_cheatcodes(rpc: SocketAddr) -> Result<(), LocalnetError> {
    let reply = rpc_call(
        rpc,
        "surfnet_disableCheatcode",
        r#"["all",{"lockout":true}]"#,
    )
    .map_err(LocalnetError::Lockdown)?;
    match reply.get("error") {
        None if reply.get("result").is_some() => Ok(()),
        _ => Err(LocalnetError::Lockdown(format!("refused: {reply}"))),
    }
}

/// One JSON-RPC call over a plain HTTP/1.1 connection; the reply object.
/// This crate has no HTTP client, and a request to our own chain needs none.
fn rpc_call(rpc: SocketAddr, method: &str, params: &str) -> Result<serde_json::Value, String> {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {rpc}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream =
        TcpStream::connect_timeout(&rpc, RPC_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(RPC_TIMEOUT))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let answer = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body.trim());
    serde_json::from_str(answer).map_err(|e| format!("reply {answer:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a chain off loopback gets: after the lockdown no cheatcode runs,
    /// not even the one that would re-enable the others.
    #[test]
    fn locked_cheatcodes_stay_locked() {
        let chain = Localnet::start(&LocalnetConfig {
            rpc_port: 0,
            ws_port: 0,
            slot_time_ms: 100,
        })
        .unwrap();
        let rpc: SocketAddr = chain
            .rpc_url()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let pause = || rpc_call(rpc, "surfnet_pauseClock", "[]").unwrap();
        assert!(pause().get("error").is_none(), "cheatcodes work before");
        lock_cheatcodes(rpc).unwrap();
        assert!(pause().get("error").is_some(), "and not after");
        let enable = rpc_call(rpc, "surfnet_enableCheatcode", r#"["all"]"#).unwrap();
        assert!(enable.get("error").is_some(), "{enable}");
        assert!(pause().get("error").is_some(), "still locked");
        let slot = rpc_call(rpc, "getSlot", "[]").unwrap();
        assert!(
            slot.get("result").is_some(),
            "plain RPC still works: {slot}"
        );
    }
}
