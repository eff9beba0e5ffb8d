//! The embedded local chain. It runs surfpool's SVM (a real LiteSVM runtime
//! with the system, SPL Token and ATA programs and the ed25519 precompile)
//! in-process, registers the Strata program natively through `native-svm`,
//! and serves the standard Solana JSON-RPC and websocket APIs on 127.0.0.1,
//! so every binary and any Solana client talks to it unchanged.
//!
//! It is offline by construction: no remote RPC is configured, so it never
//! fetches accounts from a public cluster. It is not a validator: no
//! consensus, no compute-unit metering for the native program.
#![warn(missing_docs)]

use std::net::TcpListener;
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
    /// JSON-RPC port on 127.0.0.1 (0 picks a free one).
    pub rpc_port: u16,
    /// Websocket port on 127.0.0.1 (0 picks a free one).
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
    #[error(
        "cannot bind 127.0.0.1:{port}: {source} (is another chain running? pick another port)"
    )]
    Port {
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
}

/// A running local chain; dropping it stops the chain.
pub struct Localnet {
    rpc_url: String,
    ws_url: String,
    commands: Sender<SimnetCommand>,
    thread: Option<JoinHandle<()>>,
}

impl Localnet {
    /// Starts the chain and waits until its RPC answers.
    pub fn start(config: &LocalnetConfig) -> Result<Self, LocalnetError> {
        let rpc_port = pick_port(config.rpc_port)?;
        let ws_port = pick_port(config.ws_port)?;
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
                bind_host: "127.0.0.1".into(),
                bind_port: rpc_port,
                ws_port,
                gossip_port: pick_port(0)?,
                tpu_port: pick_port(0)?,
                tpu_quic_port: pick_port(0)?,
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

        Ok(Self {
            rpc_url: format!("http://127.0.0.1:{rpc_port}"),
            ws_url: format!("ws://127.0.0.1:{ws_port}"),
            commands,
            thread: Some(thread),
        })
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

/// `port`, checked free, or a free port if `port` is 0.
fn pick_port(port: u16) -> Result<u16, LocalnetError> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|source| LocalnetError::Port { port, source })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| LocalnetError::Port { port, source })
}
