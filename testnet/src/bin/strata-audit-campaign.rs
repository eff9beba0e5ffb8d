//! `strata-audit-campaign`: the verification network measured on a live
//! local testnet (see `strata_testnet::audit_campaign`): a detection table
//! per cheating mode, then the verifiers' CPU over the nodes' serving CPU at
//! the default audit rate.

use std::time::Duration;

use clap::Parser;
use strata_chain::params::TOKEN;
use strata_testnet::audit_campaign::{cost, detection, CampaignOptions};

#[derive(Parser)]
#[command(
    name = "strata-audit-campaign",
    version,
    about = "Measure detection and verification cost on a local testnet"
)]
struct Cli {
    /// Tasks each node serves in the detection phase (at least).
    #[arg(long, default_value_t = 8)]
    detection_tasks: usize,
    /// Tasks served in the cost phase.
    #[arg(long, default_value_t = 400)]
    cost_tasks: usize,
    /// Tokens generated per task.
    #[arg(long, default_value_t = 24)]
    max_tokens: u32,
    /// Seconds to let audits and challenges settle after each load.
    #[arg(long, default_value_t = 180)]
    settle_secs: u64,
    /// Skip the detection phase.
    #[arg(long)]
    cost_only: bool,
    /// Skip the cost phase.
    #[arg(long)]
    detection_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Engines on their own threads, so each one's CPU time is its own.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    strata_service::init_logging("warn");
    let cli = Cli::parse();
    let o = CampaignOptions {
        detection_tasks: cli.detection_tasks,
        cost_tasks: cli.cost_tasks,
        max_tokens: cli.max_tokens,
        settle: Duration::from_secs(cli.settle_secs),
    };
    let root = tempfile::tempdir()?;
    if !cli.cost_only {
        let rows = detection(&root.path().join("detection"), &o).await?;
        println!("Detection (audit rate 100 %, 3 verifiers; each mode on its own testnet beside an honest node):\n");
        println!("| node | served | audited | detected | detected % | upheld challenges | median time to slash | median slots to slash | stake lost (tokens) |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows {
            let pct = if r.audited == 0 {
                0.0
            } else {
                100.0 * r.detected as f64 / r.audited as f64
            };
            println!(
                "| {} | {} | {} | {} | {:.0} % | {} | {} | {} | {:.1} |",
                r.mode,
                r.served,
                r.audited,
                r.detected,
                pct,
                r.upheld,
                r.median_secs_to_slash
                    .map_or("-".into(), |s| format!("{s:.1} s")),
                r.median_slots_to_slash
                    .map_or("-".into(), |s| s.to_string()),
                r.stake_lost as f64 / TOKEN as f64
            );
        }
    }
    if !cli.detection_only {
        let c = cost(&root.path().join("cost"), &o).await?;
        println!(
            "\nCost (3 honest nodes, 3 verifiers, audit rate {} bps): {} tasks served, {} audited",
            c.audit_rate_bps, c.tasks, c.audited
        );
        let ratio = |x: u64| 100.0 * x as f64 / c.serving_cpu_micros.max(1) as f64;
        println!("| CPU | seconds | over serving |");
        println!("|---|---:|---:|");
        println!(
            "| nodes serving | {:.2} | 100 % |",
            c.serving_cpu_micros as f64 / 1e6
        );
        println!(
            "| verifiers auditing | {:.3} | {:.3} % |",
            c.verifier_cpu_micros as f64 / 1e6,
            ratio(c.verifier_cpu_micros)
        );
        println!(
            "| nodes opening (re-deriving states) | {:.3} | {:.3} % |",
            c.opening_cpu_micros as f64 / 1e6,
            ratio(c.opening_cpu_micros)
        );
    }
    Ok(())
}
