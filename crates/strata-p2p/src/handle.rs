//! The narrow API the node, verifier and relayer use: a cheap clonable
//! [`P2pHandle`] that sends commands to the event loop, and [`P2pEvents`], the
//! stream of what happened on the network.

use std::path::PathBuf;
use std::sync::Arc;

use strata_primitives::protocol::{ProtocolSpec, TopicSpec};
use tokio::sync::{mpsc, oneshot};

use crate::distribution::{
    ChunkStore, DownloadOptions, DownloadReport, FileRoot, DEFAULT_CHUNK_SIZE,
};
use crate::error::P2pError;
use crate::event::{P2pEvent, Reachability};
use crate::identity::NodeId;
use crate::peers::Misbehaviour;

/// Counters of this node.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Chunk bytes uploaded to other peers.
    pub chunk_bytes_uploaded: u64,
    /// Chunk requests served.
    pub chunks_served: u64,
    /// Peers currently connected.
    pub connected_peers: usize,
    /// Peers banned for misbehaviour.
    pub banned_peers: usize,
    /// The latest ping round trip to each connected peer that has answered
    /// one (libp2p's ping, every 15 s per connection).
    pub rtts: Vec<(NodeId, std::time::Duration)>,
}

/// What a handle asks of the event loop; each carries where its answer goes.
pub(crate) enum Command {
    Dial(String, oneshot::Sender<Result<(), P2pError>>),
    AddAddress(NodeId, String),
    /// Publish on the topic of this name.
    Publish(&'static str, Vec<u8>, oneshot::Sender<Result<(), P2pError>>),
    /// Request on the protocol of this name.
    Request(
        NodeId,
        &'static str,
        Vec<u8>,
        oneshot::Sender<Result<Vec<u8>, P2pError>>,
    ),
    ListenAddrs(oneshot::Sender<Vec<String>>),
    ConnectedPeers(oneshot::Sender<Vec<NodeId>>),
    Reachability(oneshot::Sender<Reachability>),
    ListenViaRelay(String, oneshot::Sender<Result<(), P2pError>>),
    Seed(Arc<ChunkStore>),
    /// Stop serving (and fetching) a file.
    StopSeeding(FileRoot),
    Download(
        FileRoot,
        PathBuf,
        DownloadOptions,
        oneshot::Sender<Result<DownloadReport, P2pError>>,
    ),
    Stats(oneshot::Sender<NodeStats>),
    /// Penalise a peer for what the application saw it do.
    Report(NodeId, Misbehaviour),
    Shutdown,
}

/// Clonable handle to a running p2p node.
#[derive(Clone)]
pub struct P2pHandle {
    pub(crate) node_id: NodeId,
    pub(crate) tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for P2pHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P2pHandle({})", self.node_id)
    }
}

impl P2pHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Shutdown)?;
        rx.await.map_err(|_| P2pError::Shutdown)
    }

    /// This node's id (its Solana pubkey).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Addresses we listen on, each ending in `/p2p/<our peer id>` so they can
    /// be handed to other nodes or registered on-chain as they are.
    pub async fn listen_addrs(&self) -> Result<Vec<String>, P2pError> {
        self.call(Command::ListenAddrs).await
    }

    /// Dial a multiaddr (with or without `/p2p/<id>`).
    pub async fn dial(&self, addr: &str) -> Result<(), P2pError> {
        self.call(|tx| Command::Dial(addr.to_string(), tx)).await?
    }

    /// Tell the swarm where a peer can be reached (e.g. from the chain).
    pub async fn add_address(&self, node: NodeId, addr: &str) -> Result<(), P2pError> {
        self.tx
            .send(Command::AddAddress(node, addr.to_string()))
            .await
            .map_err(|_| P2pError::Shutdown)
    }

    /// Connects to each of `peers` (id and the addresses it is known at) that
    /// is neither us nor already connected, trying its addresses in order;
    /// returns how many connected. For bootstrap lists, such as the
    /// multiaddrs nodes registered on-chain.
    pub async fn connect_to(&self, peers: &[(NodeId, Vec<String>)]) -> usize {
        let connected = self.connected_peers().await.unwrap_or_default();
        let mut n = 0;
        for (id, addrs) in peers {
            if *id == self.node_id || connected.contains(id) {
                continue;
            }
            for addr in addrs {
                let _ = self.add_address(*id, addr).await;
                if self.dial(addr).await.is_ok() {
                    n += 1;
                    break;
                }
            }
        }
        n
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<NodeId>, P2pError> {
        self.call(Command::ConnectedPeers).await
    }

    /// Publish a payload on `topic`, signed with our node key. The topic must
    /// have been registered ([`P2pConfig::topics`](crate::P2pConfig::topics));
    /// otherwise [`P2pError::UnknownTopic`].
    pub async fn publish(&self, topic: &TopicSpec, payload: Vec<u8>) -> Result<(), P2pError> {
        let name = topic.name;
        self.call(|tx| Command::Publish(name, payload, tx)).await?
    }

    /// Send a request on `protocol` and wait for the answer (bounded by the
    /// protocol's registered limits and time-out). The protocol must have been
    /// registered ([`P2pConfig::protocols`](crate::P2pConfig::protocols));
    /// otherwise [`P2pError::UnknownProtocol`].
    pub async fn request(
        &self,
        to: NodeId,
        protocol: &ProtocolSpec,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, P2pError> {
        let name = protocol.name;
        self.call(|tx| Command::Request(to, name, payload, tx))
            .await?
    }

    /// Penalises `node` for a misbehaviour only the application can see
    /// (normally [`Misbehaviour::Application`]): it counts towards the same
    /// ban as the layer's own findings, and shows up as
    /// [`P2pEvent::PeerPenalised`](crate::P2pEvent::PeerPenalised).
    pub async fn report(&self, node: NodeId, misbehaviour: Misbehaviour) -> Result<(), P2pError> {
        self.tx
            .send(Command::Report(node, misbehaviour))
            .await
            .map_err(|_| P2pError::Shutdown)
    }

    /// How we are reachable right now.
    pub async fn reachability(&self) -> Result<Reachability, P2pError> {
        self.call(Command::Reachability).await
    }

    /// Reserve a slot on a relay (`relay_addr` must include `/p2p/<relay>`)
    /// and listen through it.
    pub async fn listen_via_relay(&self, relay_addr: &str) -> Result<(), P2pError> {
        self.call(|tx| Command::ListenViaRelay(relay_addr.to_string(), tx))
            .await?
    }

    /// Share a complete local file; returns its root. Hashing runs off the
    /// async executor.
    pub async fn seed_file(&self, path: impl Into<PathBuf>) -> Result<FileRoot, P2pError> {
        self.seed_file_with_chunk_size(path, DEFAULT_CHUNK_SIZE)
            .await
    }

    /// [`seed_file`](Self::seed_file) with an explicit chunk size.
    pub async fn seed_file_with_chunk_size(
        &self,
        path: impl Into<PathBuf>,
        chunk_size: u32,
    ) -> Result<FileRoot, P2pError> {
        let path = path.into();
        let store = tokio::task::spawn_blocking(move || ChunkStore::seed(&path, chunk_size))
            .await
            .map_err(|e| P2pError::Transport(e.to_string()))??;
        let root = store.root();
        self.tx
            .send(Command::Seed(Arc::new(store)))
            .await
            .map_err(|_| P2pError::Shutdown)?;
        Ok(root)
    }

    /// Stop serving `root` (and end its download, if one runs, with
    /// [`P2pError::Stopped`]): for a file the application deleted, such as
    /// an evicted policy version or one it refused, so that peers are not
    /// handed chunks of it any more. The file on disk is the caller's.
    pub async fn stop_seeding(&self, root: FileRoot) -> Result<(), P2pError> {
        self.tx
            .send(Command::StopSeeding(root))
            .await
            .map_err(|_| P2pError::Shutdown)
    }

    /// Download `root` into `dest` (resuming a partial download there), and
    /// keep serving it afterwards. Every chunk is verified before it is
    /// written; corrupt senders are banned.
    pub async fn download(
        &self,
        root: FileRoot,
        dest: impl Into<PathBuf>,
        options: DownloadOptions,
    ) -> Result<DownloadReport, P2pError> {
        let dest = dest.into();
        self.call(|tx| Command::Download(root, dest, options, tx))
            .await?
    }

    /// Counters.
    pub async fn stats(&self) -> Result<NodeStats, P2pError> {
        self.call(Command::Stats).await
    }

    /// Stop the event loop (also happens when every handle is dropped).
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// The stream of [`P2pEvent`]s. Events are dropped (with a warning) if the
/// application stops reading, so a slow consumer never stalls the network.
#[derive(Debug)]
pub struct P2pEvents {
    pub(crate) rx: mpsc::Receiver<P2pEvent>,
}

impl P2pEvents {
    /// Next event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<P2pEvent> {
        self.rx.recv().await
    }
}

impl futures::Stream for P2pEvents {
    type Item = P2pEvent;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<P2pEvent>> {
        self.rx.poll_recv(cx)
    }
}
