//! `strata-economics`: an honest and a cheating node serve the same tasks
//! under the local testnet's parameters and the real audit rules; prints
//! both balances per cheating mode, at the testnet's price and at prices
//! around the break-even point (see `strata_testnet::economics`).

use clap::Parser;
use strata_chain::params::TOKEN;
use strata_testnet::economics::{break_even_price, simulate, strategies, Economy};

#[derive(Parser)]
#[command(
    name = "strata-economics",
    version,
    about = "Simulate an honest and a cheating node"
)]
struct Cli {
    /// Tasks each node serves.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Tokens per task (prompt and completion).
    #[arg(long, default_value_t = 100)]
    tokens: u64,
    /// Stake of each node, whole tokens.
    #[arg(long, default_value_t = 1_000)]
    stake: u64,
    /// Compute cost as a share of the price, percent.
    #[arg(long, default_value_t = 50)]
    cost_percent: u64,
}

fn tokens(base: i128) -> String {
    format!("{:.3}", base as f64 / TOKEN as f64)
}

fn main() {
    let cli = Cli::parse();
    let params = strata_chain::params::local();
    let mut e = Economy {
        params,
        tasks: cli.tasks,
        tokens_per_task: cli.tokens,
        outputs_per_task: (cli.tokens / 2) as u32,
        n_layers: 30,
        price_per_token: 10,
        reward_per_token: 2,
        cost_bps: cli.cost_percent * 100,
        stake: cli.stake * TOKEN,
    };
    println!(
        "audit rate {} bps, {} layers and {} steps per audit, slash {} bps (challenger share {} bps), stake {} tokens, {} tasks of {} tokens, cost {} % of price",
        params.audit_rate_bps,
        params.audit_layers,
        params.audit_positions,
        params.slash_bps,
        params.challenger_share_bps,
        cli.stake,
        cli.tasks,
        cli.tokens,
        cli.cost_percent
    );
    let seed = [7u8; 32];
    // The testnet's price, a price far above it, and one above the
    // break-even of skipping layers (where cheating would pay, which is why
    // the gateway caps a task's price from the serving node's stake).
    for (label, price_per_token) in [
        ("testnet price", 10u64),
        ("1 token per task", TOKEN / cli.tokens),
        ("160 tokens per task", 160 * TOKEN / cli.tokens),
    ] {
        e.price_per_token = price_per_token;
        let honest = simulate(&e, None, seed);
        println!(
            "\n{label}: {} base units per token; honest node balance {} tokens ({} tasks audited)",
            price_per_token,
            tokens(honest.balance),
            honest.audited
        );
        println!("| mode | saves | audited | caught | detected | slashed (tokens) | balance (tokens) | vs honest | break-even price per task (tokens) |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in strategies() {
            let c = simulate(&e, Some(&s), seed);
            let detected = c.caught as f64 / c.audited.max(1) as f64;
            println!(
                "| {} | {} % | {} | {} | {:.1} % | {} | {} | {} | {:.2} |",
                s.name,
                s.saves_bps / 100,
                c.audited,
                c.caught,
                100.0 * detected,
                tokens(c.slashed as i128),
                tokens(c.balance),
                tokens(c.balance - honest.balance),
                break_even_price(&e, detected.max(1e-9), s.saves_bps) / TOKEN as f64
            );
        }
    }
}
