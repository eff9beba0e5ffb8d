//! `strata file seed` and `strata file fetch`: share a file (model weights,
//! a policy update) over the peer-to-peer network, and download one by its
//! root from several peers at once with every chunk verified on arrival.
//!
//! The p2p identity is the `--keypair` when that file exists (so peers see the
//! operator's node key), otherwise a throw-away key: fetching needs no
//! account.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use strata_p2p::{
    DownloadOptions, FileRoot, NodeId, NodeIdentity, P2pConfig, P2pEvent, P2pEvents, P2pHandle,
};
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS};

use crate::output::{Output, Report};

/// Listen address used when none is given: every interface, a free port.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/0";

/// Options shared by both commands.
pub struct NetOptions {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Peers to dial at start (`…/p2p/<id>`).
    pub peers: Vec<String>,
    /// LAN mode (mDNS).
    pub mdns: bool,
    /// Upload cap in bytes/s.
    pub upload_rate: Option<u64>,
}

fn identity(keypair: &Path) -> anyhow::Result<NodeIdentity> {
    if keypair.exists() {
        NodeIdentity::from_solana_keypair_file(keypair)
            .with_context(|| format!("reading the p2p identity from {}", keypair.display()))
    } else {
        Ok(NodeIdentity::generate())
    }
}

async fn start(
    keypair: &Path,
    net: &NetOptions,
) -> anyhow::Result<(P2pHandle, P2pEvents, Vec<String>)> {
    let config = P2pConfig {
        listen: if net.listen.is_empty() {
            vec![DEFAULT_LISTEN.to_string()]
        } else {
            net.listen.clone()
        },
        bootstrap: net.peers.clone(),
        mdns: net.mdns,
        upload_rate_limit: net.upload_rate,
        // The whole catalogue, as every Strata peer speaks it, though files
        // need none of it.
        ..P2pConfig::default()
            .with_protocols(ALL_PROTOCOLS)
            .with_topics(ALL_TOPICS)
    };
    let (handle, mut events) = strata_p2p::start(identity(keypair)?, config).await?;
    // Addresses are known once the listeners are up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Some(P2pEvent::Listening { .. })) | Err(_) => {
                let addrs = handle.listen_addrs().await?;
                if !addrs.is_empty() {
                    return Ok((handle, events, addrs));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
        }
    }
    Err(anyhow!(
        "the p2p node did not start listening on {:?}",
        net.listen
    ))
}

/// Shares `path` until Ctrl-C: prints its root and the addresses to fetch it
/// from, then serves chunks to whoever asks.
pub async fn seed(keypair: &Path, path: &Path, net: NetOptions, out: Output) -> anyhow::Result<()> {
    if !path.is_file() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let size = std::fs::metadata(path)?.len();
    let (handle, mut events, addrs) = start(keypair, &net).await?;
    let started = Instant::now();
    let root = handle.seed_file(path.to_path_buf()).await?;
    let hashed = started.elapsed().as_secs_f64();
    let fetch_from = addrs
        .iter()
        .find(|a| !a.contains("/127.0.0.1/"))
        .or(addrs.first())
        .cloned()
        .unwrap_or_default();
    out.report(
        &Report::new()
            .text("root", root)
            .field("bytes", size, format_bytes(size))
            .field("hash_seconds", hashed, format!("{hashed:.2} s"))
            .text("node", handle.node_id())
            .field("addrs", addrs.clone(), addrs.join(" "))
            .text(
                "fetch",
                format!("strata file fetch {root} --peer {fetch_from} -o <file>"),
            ),
    );
    // Serve until Ctrl-C; events are drained so the node never waits on us.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::signal::ctrl_c().await?;
    let stats = handle.stats().await?;
    eprintln!(
        "stopping: served {} chunks ({}) to peers",
        stats.chunks_served,
        format_bytes(stats.chunk_bytes_uploaded)
    );
    handle.shutdown().await;
    drain.abort();
    Ok(())
}

/// Downloads `root` into `dest` from the given peers (and any other peer
/// that holds chunks), resuming a partial download, with a progress bar on
/// stderr.
pub async fn fetch(
    keypair: &Path,
    root: &str,
    dest: PathBuf,
    net: NetOptions,
    out: Output,
) -> anyhow::Result<()> {
    let root: FileRoot = root.parse().map_err(|e| anyhow!("{root:?}: {e}"))?;
    if net.peers.is_empty() && !net.mdns {
        anyhow::bail!(
            "give at least one --peer /ip4/…/tcp/…/p2p/<id> that has the file (or --mdns)"
        );
    }
    let sources = net
        .peers
        .iter()
        .map(|a| NodeId::from_multiaddr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let (handle, mut events, _) = start(keypair, &net).await?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map_err(|e| anyhow!("progress style: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_message(format!("fetching {}", &root.to_string()[..12]));
    let progress = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let P2pEvent::DownloadProgress {
                    root: r,
                    bytes,
                    size,
                    ..
                } = ev
                {
                    if r == root {
                        bar.set_length(size);
                        bar.set_position(bytes);
                    }
                }
            }
        })
    };
    let report = handle
        .download(
            root,
            dest.clone(),
            DownloadOptions {
                peers: sources,
                star: false,
            },
        )
        .await;
    progress.abort();
    bar.finish_and_clear();
    let report = report.with_context(|| format!("downloading {root}"))?;
    handle.shutdown().await;

    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let fetched_bytes: u64 = report.bytes_from.iter().map(|(_, b)| b).sum();
    let mut from: Vec<(NodeId, u64)> = report.bytes_from.clone();
    from.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    out.report(
        &Report::new()
            .text("root", root)
            .text("file", dest.display())
            .field("bytes", report.bytes, format_bytes(report.bytes))
            .number("chunks_fetched", report.chunks_fetched)
            .number("chunks_resumed", report.chunks_resumed)
            .number("chunks_rejected", report.chunks_rejected)
            .field(
                "seconds",
                secs,
                format!(
                    "{secs:.2} s ({}/s)",
                    format_bytes((fetched_bytes as f64 / secs) as u64)
                ),
            )
            .field(
                "from",
                from.iter()
                    .map(|(n, b)| serde_json::json!({ "node": n.to_string(), "bytes": b }))
                    .collect::<Vec<_>>(),
                from.iter()
                    .map(|(n, b)| format!("{n} {}", format_bytes(*b)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
    );
    Ok(())
}

fn format_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
