//! `strata-load-campaign`: paying clients against a local testnet whose
//! services run as processes, under SIGKILLs, an RPC outage and a network
//! partition, then the books reconciled (see
//! `strata_testnet::load_campaign`). Exits non-zero when anything did not
//! add up.
//!
//! The partition needs a network namespace of its own (iptables rules on
//! its loopback touch nothing of the host): the program re-runs itself
//! under `unshare --user --map-root-user --net` unless `--no-partition`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use strata_testnet::genesis::TOKEN;
use strata_testnet::load_campaign::faults::{FaultKind, FaultTimes};
use strata_testnet::load_campaign::load::Outcome;
use strata_testnet::load_campaign::{
    self, errors_by_class, kinds_injected, percentile, CampaignOptions, CampaignReport,
    MEMORY_GROWTH_LIMIT,
};

/// Set in the copy that runs inside the namespace.
const INSIDE: &str = "STRATA_CAMPAIGN_NETNS";

#[derive(Parser, Debug)]
#[command(
    name = "strata-load-campaign",
    version,
    about = "Paying clients against a local testnet under faults, then the books reconciled"
)]
struct Cli {
    /// Concurrent paying clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Seconds the clients send.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Verifiers.
    #[arg(long, default_value_t = 1)]
    verifiers: usize,
    /// Seed of every random choice (printed; a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds a killed process stays down.
    #[arg(long, default_value_t = 3)]
    down_secs: u64,
    /// Seconds the chain's RPC is down.
    #[arg(long, default_value_t = 60)]
    rpc_outage_secs: u64,
    /// Seconds a node is cut off from its peers.
    #[arg(long, default_value_t = 45)]
    partition_secs: u64,
    /// Mean seconds between extra faults once every kind came.
    #[arg(long, default_value_t = 40)]
    extra_fault_every_secs: u64,
    /// No faults at all (a reference run).
    #[arg(long)]
    no_faults: bool,
    /// No partition (and no namespace).
    #[arg(long)]
    no_partition: bool,
    /// Completion lengths (tokens) clients draw from.
    #[arg(long, value_delimiter = ',', default_value = "4,16,48")]
    lengths: Vec<u32>,
    /// Share of streams clients abandon half way.
    #[arg(long, default_value_t = 0.15)]
    cancel_share: f64,
    /// Seconds to wait for receipts and vouchers to settle afterwards.
    #[arg(long, default_value_t = 240)]
    settle_secs: u64,
    /// Working directory (a fresh temporary one by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where strata-node, strata-gateway, strata-relayer and
    /// strata-verifier are [default: beside this program].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.clients > 0 && cli.nodes > 0,
        "--clients and --nodes must be at least 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.cancel_share),
        "--cancel-share must be between 0 and 1"
    );
    anyhow::ensure!(
        !cli.lengths.is_empty() && cli.lengths.iter().all(|l| (1..=256).contains(l)),
        "--lengths must be token counts from 1 to 256"
    );
    let partition = !cli.no_faults && !cli.no_partition;
    if partition && std::env::var_os(INSIDE).is_none() {
        return reexec_in_namespace();
    }
    if std::env::var_os(INSIDE).is_some() {
        // A new network namespace starts with its loopback down.
        run_ok(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    }
    strata_service::init_logging("warn");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(campaign(cli, partition))
}

/// Runs this program again inside a new user and network namespace.
fn reexec_in_namespace() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--"])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .status()
        .context(
            "running unshare (util-linux) for the partition's network namespace; \
             --no-partition runs without it",
        )?;
    std::process::exit(status.code().unwrap_or(1));
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

async fn campaign(cli: Cli, partition: bool) -> anyhow::Result<()> {
    let seed = cli.seed.unwrap_or_else(rand::random);
    let tmp = tempfile::tempdir()?;
    let dir = cli.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .to_path_buf(),
    };
    for b in [
        "strata-node",
        "strata-gateway",
        "strata-relayer",
        "strata-verifier",
    ] {
        anyhow::ensure!(
            bin_dir.join(b).exists(),
            "{b} is not in {} (build it: cargo build -p strata-node -p strata-gateway -p strata-relayer -p strata-verifier, or pass --bin-dir)",
            bin_dir.display()
        );
    }
    println!(
        "load campaign: {} clients for {} s, {} nodes, {} verifiers, faults {}, seed {seed}, dir {}",
        cli.clients,
        cli.duration_secs,
        cli.nodes,
        cli.verifiers,
        if cli.no_faults { "off" } else if partition { "on" } else { "on (no partition)" },
        dir.display()
    );
    let options = CampaignOptions {
        dir: dir.clone(),
        bin_dir,
        clients: cli.clients,
        duration: Duration::from_secs(cli.duration_secs),
        nodes: cli.nodes,
        verifiers: cli.verifiers,
        seed,
        times: FaultTimes {
            down: Duration::from_secs(cli.down_secs),
            rpc_outage: Duration::from_secs(cli.rpc_outage_secs),
            partition: Duration::from_secs(cli.partition_secs),
            extra_every: Duration::from_secs(cli.extra_fault_every_secs.max(1)),
        },
        faults: !cli.no_faults,
        lengths: cli.lengths.clone(),
        cancel_share: cli.cancel_share,
        deposit: 1_000 * TOKEN,
        settle_timeout: Duration::from_secs(cli.settle_secs),
    };
    let report = load_campaign::run(options).await?;
    print_report(&report, Duration::from_secs(cli.rpc_outage_secs));
    let mut missing: Vec<FaultKind> = Vec::new();
    if !cli.no_faults {
        let injected = kinds_injected(&report.faults);
        missing = FaultKind::ALL
            .into_iter()
            .filter(|k| !injected.contains(k) && (partition || *k != FaultKind::Partition))
            .collect();
    }
    if report.passed() && missing.is_empty() {
        println!("CAMPAIGN PASSED (seed {seed})");
        Ok(())
    } else {
        if !missing.is_empty() {
            println!("fault kinds never injected: {missing:?}");
        }
        println!("CAMPAIGN FAILED (seed {seed}); logs in {}", dir.display());
        // Keep the directory for the post-mortem.
        let _ = tmp.keep();
        std::process::exit(1);
    }
}

fn print_report(r: &CampaignReport, rpc_outage: Duration) {
    let reqs = &r.requests;
    let served: Vec<_> = reqs
        .iter()
        .filter(|q| matches!(q.outcome, Outcome::Served { .. }))
        .collect();
    let mut took: Vec<Duration> = served.iter().map(|q| q.took).collect();
    let mut first: Vec<Duration> = served
        .iter()
        .filter(|q| q.stream)
        .filter_map(|q| match q.outcome {
            Outcome::Served { first, .. } => Some(first),
            _ => None,
        })
        .collect();
    let secs = r.load_time.as_secs_f64().max(1e-9);
    let ms =
        |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3));
    println!();
    println!(
        "== requests ({:.0} s of load, settled {:.0} s after)",
        secs,
        r.settle_time.as_secs_f64()
    );
    println!("  sent            {}", reqs.len());
    println!(
        "  served          {} ({:.2} tasks/s)",
        served.len(),
        served.len() as f64 / secs
    );
    println!("  cancelled       {}", r.reconciliation.cancelled);
    println!("  failed          {}", r.reconciliation.failed);
    println!(
        "  latency ms      p50 {}  p99 {}",
        ms(percentile(&mut took, 50.0)),
        ms(percentile(&mut took, 99.0))
    );
    println!(
        "  first token ms  p50 {}  p99 {} (streams)",
        ms(percentile(&mut first, 50.0)),
        ms(percentile(&mut first, 99.0))
    );
    // What clients saw while the chain's RPC was away (the gateway serves
    // on its last readings of stakes and escrows for a while).
    for f in r.faults.iter().filter(|f| f.kind == FaultKind::RpcOutage) {
        let (from, to) = (f.at, f.at + rpc_outage);
        let within: Vec<_> = reqs
            .iter()
            .filter(|q| q.started >= from && q.started + q.took <= to)
            .collect();
        let ok = within
            .iter()
            .filter(|q| matches!(q.outcome, Outcome::Served { .. }))
            .count();
        println!(
            "  during the RPC outage at {:.0} s: {ok} of {} requests served",
            from.as_secs_f64(),
            within.len()
        );
    }
    println!("== errors by class");
    for (class, n) in errors_by_class(reqs) {
        println!("  {n:>6}  {class}");
    }
    println!("== faults");
    for f in &r.faults {
        println!("  {:>5.0}s  {:?}: {}", f.at.as_secs_f64(), f.kind, f.detail);
    }
    println!("== processes (memory: median RSS of the longest life's 2nd quarter -> last quarter)");
    for s in &r.services {
        let mem = s.memory.map_or("-".into(), |m| {
            format!(
                "{} -> {} MiB ({:.2}x over {:.0} s, peak {} MiB){}",
                m.early_kib / 1024,
                m.late_kib / 1024,
                m.ratio(),
                m.lived.as_secs_f64(),
                m.peak_kib / 1024,
                if m.ratio() > MEMORY_GROWTH_LIMIT {
                    "  GROWING"
                } else {
                    ""
                }
            )
        });
        println!(
            "  {:<12} kills {:>2}  crashes {:>2}  {mem}",
            s.name, s.kills, s.unexpected_exits
        );
    }
    let c = &r.reconciliation;
    println!("== reconciliation");
    println!(
        "  served tasks in exactly one posted batch, proof to the chain's root: {}/{}",
        c.served_on_chain, c.served
    );
    println!(
        "  receipts {} in {} posted batches; channels checked {}",
        c.receipts, c.batches, c.channels
    );
    println!(
        "  charged (sum of receipts) {}; charges not told to a client {} (abandoned streams {})",
        c.charged, c.unmatched_charges, c.cancelled
    );
    for (what, n) in &c.unmatched_by {
        println!("    {n:>5}  charged, not told: {what}");
    }
    println!(
        "  escrows paid out {} = nodes earned {} + fees {} ({} claimed from the pool); slashed {}",
        c.escrow_out, c.node_earnings, c.fees, c.claimed, c.slashed
    );
    if c.problems.is_empty() {
        println!("  reconciliation: exact");
    } else {
        println!("  reconciliation: {} problems", c.problems.len());
        for p in c.problems.iter().take(30) {
            println!("    - {p}");
        }
    }
}
