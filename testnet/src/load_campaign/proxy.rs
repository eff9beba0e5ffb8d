//! The chain's RPC as the services see it: a TCP forwarder in front of the
//! embedded chain that the fault injector can take down. Every service is
//! given the forwarder's URL; during an outage it refuses new connections
//! (the port is closed) and cuts the open ones, which is what a dead RPC
//! endpoint looks like from outside. The campaign itself reads the chain
//! directly.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A forwarder from `listen` to `target` that can be switched off and on.
pub struct RpcProxy {
    listen: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RpcProxy {
    /// Binds `listen` (port 0 picks one) and forwards every connection to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (up, rx) = watch::channel(true);
        let task = tokio::spawn(serve(listener, listen, target, rx));
        Ok(Self { listen, up, task })
    }

    /// The URL services use for the chain.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts (`false`) or ends (`true`) an outage.
    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts while up; during an outage drops the listener (so connections are
/// refused, not left hanging) and binds the same port again afterwards.
async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    mut state: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { continue };
                let conn_up = state.clone();
                tokio::spawn(forward(inbound, target, conn_up));
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*state.borrow_and_update() {
                    drop(listener);
                    // Wait for the outage to end, then listen again.
                    while !*state.borrow_and_update() {
                        if state.changed().await.is_err() {
                            return;
                        }
                    }
                    listener = loop {
                        match TcpListener::bind(addr).await {
                            Ok(l) => break l,
                            Err(e) => {
                                tracing::warn!(%addr, error = %e, "rpc proxy: rebinding");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                        }
                    };
                }
            }
        }
    }
}

/// Copies both ways until either side closes or an outage starts.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = up.wait_for(|u| !*u) => {}
    }
}
