//! p2p-bench: how fast does a file spread, and how fast is request-response?
//!
//! Distribution: one source with a capped uplink (a rate limit in the
//! transport's chunk server), N peers on 127.0.0.1, each round with fresh
//! nodes. "swarm" = peers trade chunks among themselves (rarest first);
//! "star" = every peer pulls the whole file from the source only. Both are
//! printed as a ratio to one single transfer measured in the same run.
//!
//! Usage: `p2p-bench [--mb 100] [--rate-mbps 25] [--peers 4,8,16] [--no-star]`

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use strata_p2p::{
    DownloadOptions, FileRoot, NodeIdentity, P2pConfig, P2pEvent, P2pEvents, P2pHandle,
};
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, HIDDEN_STATE, TASK};

struct Args {
    mb: usize,
    rate_mbps: u64,
    peers: Vec<usize>,
    star: bool,
    progress: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mb: 100,
        rate_mbps: 25,
        peers: vec![4, 8, 16],
        star: true,
        progress: std::env::var("CI").is_err(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--mb" => a.mb = val()?.parse().map_err(|e| format!("--mb: {e}"))?,
            "--rate-mbps" => a.rate_mbps = val()?.parse().map_err(|e| format!("--rate-mbps: {e}"))?,
            "--peers" => {
                a.peers = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|e| format!("--peers: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--no-star" => a.star = false,
            "--no-progress" => a.progress = false,
            "-h" | "--help" => {
                return Err("usage: p2p-bench [--mb N] [--rate-mbps N] [--peers 4,8,16] [--no-star] [--no-progress]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.mb == 0 || a.rate_mbps == 0 || a.peers.contains(&0) {
        return Err("sizes, rates and peer counts must be positive".into());
    }
    Ok(a)
}

/// A node speaking Strata's whole catalogue, as a deployed peer does.
async fn node(config: P2pConfig) -> Result<(P2pHandle, P2pEvents, String), String> {
    let config = config.with_protocols(ALL_PROTOCOLS).with_topics(ALL_TOPICS);
    let (h, mut ev) = strata_p2p::start(NodeIdentity::generate(), config)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(P2pEvent::Listening { .. })) =
            tokio::time::timeout(Duration::from_secs(1), ev.recv()).await
        {
            break;
        }
    }
    let addr = h
        .listen_addrs()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no listen address")?;
    Ok((h, ev, addr))
}

/// One distribution round with fresh nodes; returns (seconds, source copies uploaded).
async fn round(
    src: &Path,
    dir: &Path,
    n: usize,
    star: bool,
    rate: u64,
    bars: Option<&MultiProgress>,
) -> Result<(f64, f64), String> {
    // The star baseline is a plain server: every peer gets every chunk from it.
    let (source, _sev, saddr) = node(P2pConfig {
        upload_rate_limit: Some(rate),
        super_seed: !star,
        ..P2pConfig::local()
    })
    .await?;
    let root: FileRoot = source.seed_file(src).await.map_err(|e| e.to_string())?;
    let size = std::fs::metadata(src).map_err(|e| e.to_string())?.len();
    let mut peers = Vec::new();
    for _ in 0..n {
        peers.push(
            node(P2pConfig {
                bootstrap: vec![saddr.clone()],
                ..P2pConfig::local()
            })
            .await?,
        );
    }
    let label = if star { "star " } else { "swarm" };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (h, mut ev, _)) in peers.into_iter().enumerate() {
        let dest = dir.join(format!("{label}-{n}-{i}.bin"));
        let _ = std::fs::remove_file(&dest);
        let opts = DownloadOptions {
            peers: vec![source.node_id()],
            star,
        };
        let bar = bars.map(|m| {
            let b = m.add(ProgressBar::new(size));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(format!("{label} n={n:>2} peer {i:>2}"));
            b
        });
        tasks.push(tokio::spawn(async move {
            let dl = h.download(root, &dest, opts);
            tokio::pin!(dl);
            let res = loop {
                tokio::select! {
                    r = &mut dl => break r,
                    Some(e) = ev.recv() => {
                        if let (Some(b), P2pEvent::DownloadProgress { bytes, .. }) = (&bar, e) {
                            b.set_position(bytes);
                        }
                    }
                }
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let _ = std::fs::remove_file(&dest);
            h.shutdown().await;
            if let (Ok(r), true) = (&res, std::env::var_os("P2P_BENCH_VERBOSE").is_some()) {
                eprintln!(
                    "{label} n={n} peer {i}: {:.2} s, from {:?}",
                    r.elapsed.as_secs_f64(),
                    r.bytes_from
                        .iter()
                        .map(|(p, b)| (p.to_string()[..6].to_string(), b >> 20))
                        .collect::<Vec<_>>()
                );
            }
            res.map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let up = source
        .stats()
        .await
        .map_err(|e| e.to_string())?
        .chunk_bytes_uploaded;
    source.shutdown().await;
    Ok((secs, up as f64 / size as f64))
}

async fn rr_bench() -> Result<(), String> {
    // b echoes; a (which dialled b) asks.
    let (b, mut bev, baddr) = node(P2pConfig::local()).await?;
    let (a, _aev, _) = node(P2pConfig {
        bootstrap: vec![baddr],
        ..P2pConfig::local()
    })
    .await?;
    tokio::spawn(async move {
        while let Some(e) = bev.recv().await {
            if let P2pEvent::Request(r) = e {
                let p = r.payload.clone();
                let _ = r.respond(if p.len() > 64 { vec![1] } else { p });
            }
        }
    });
    let bid = b.node_id();
    // a dialled b at start; wait until that connection is up.
    for _ in 0..100 {
        if a.connected_peers()
            .await
            .map_err(|e| e.to_string())?
            .contains(&bid)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // warm up (connection, protocol negotiation)
    for _ in 0..10 {
        a.request(bid, &TASK, vec![0; 32])
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        a.request(bid, &TASK, vec![7; 32])
            .await
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!(
        "request-response round trip (32 B, loopback, 1000 sequential): p50 {:.0} µs, p99 {:.0} µs, mean {:.0} µs",
        pct(0.5),
        pct(0.99),
        lat.iter().sum::<f64>() / lat.len() as f64
    );
    let payload = vec![3u8; 4 << 20];
    let n = 64;
    let t = Instant::now();
    let mut futs = Vec::new();
    for _ in 0..n {
        let a = a.clone();
        let p = payload.clone();
        futs.push(tokio::spawn(async move {
            a.request(bid, &HIDDEN_STATE, p).await
        }));
    }
    for f in futs {
        f.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "request-response throughput (64 x 4 MiB hidden-state requests, concurrent): {:.0} MiB/s",
        (n * 4) as f64 / s
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = dir.path().join("source.bin");
    let mut data = vec![0u8; args.mb << 20];
    blake3::Hasher::new()
        .update(b"p2p-bench")
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(&src, &data).map_err(|e| e.to_string())?;
    drop(data);
    let rate = args.rate_mbps << 20;
    let bars = args.progress.then(MultiProgress::new);

    println!(
        "file {} MiB, source uplink capped at {} MiB/s, peers on 127.0.0.1 in one process",
        args.mb, args.rate_mbps
    );
    let (single, _) = round(&src, dir.path(), 1, true, rate, bars.as_ref()).await?;
    println!("single transfer (1 peer): {single:.2} s\n");
    println!("| peers | swarm s | swarm / single | source copies sent | star s | star / single |");
    println!("|------:|--------:|---------------:|-------------------:|-------:|--------------:|");
    for &n in &args.peers {
        let (sw, copies) = round(&src, dir.path(), n, false, rate, bars.as_ref()).await?;
        let star = if args.star {
            let (st, _) = round(&src, dir.path(), n, true, rate, bars.as_ref()).await?;
            format!("{st:.2} | {:.2}x", st / single)
        } else {
            "- | -".into()
        };
        println!(
            "| {n:>5} | {sw:>7.2} | {:>13.2}x | {copies:>18.2} | {star} |",
            sw / single
        );
    }
    println!();
    rr_bench().await
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("p2p-bench failed: {e}");
        std::process::exit(1);
    }
}
