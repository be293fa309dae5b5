//! `sonicforge-loadtests`: load tools that talk to a SonicForge engine over loopback.
//!
//! `swarm` opens many WebSocket and/or HTTP listeners on one thread, measures time to
//! first audio, gaps, latency, skips and how each session ended, samples the server's
//! CPU and memory, and prints a table (and writes a JSON report).

mod http1;
mod listener;
mod ogg;
mod proc_stats;
mod report;
mod swarm;
mod target;
mod wire;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sonicforge-loadtests",
    version,
    about = "Load tools for the SonicForge engine (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ramp up a swarm of listeners, hold them for a while, report what they heard.
    Swarm(swarm::SwarmArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Swarm(args) => run_swarm(&args),
    }
}

fn run_swarm(args: &swarm::SwarmArgs) -> anyhow::Result<()> {
    // One thread: the listeners share histograms without locks, and the swarm leaves
    // the other cores to the engine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, swarm::run(args))?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        report.write_json(path)?;
        println!("report written to {path}");
    }
    Ok(())
}
