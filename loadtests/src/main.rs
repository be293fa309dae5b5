//! `sonicforge-loadtests`: load tools that talk to a SonicForge engine over loopback.
//!
//! `swarm` opens many WebSocket and/or HTTP listeners on one thread, measures time to
//! first audio, gaps, latency, skips and how each session ended, samples the server's
//! CPU and memory, and prints a table (and writes a JSON report). It can add a
//! reconnect storm (many listeners connecting at once after the ramp) and follow
//! stalled listeners to the server's close of them and its memory meanwhile.
//!
//! `chaos` kills the station's actors on a seeded schedule while listeners decode the
//! stream, puts every gap, flag and silence down to a kill, and checks restarts,
//! escalations and memory; it exits non-zero when a check fails.
//!
//! `icecast-source` feeds an Icecast mount with a station's stream, re-paged, for
//! side-by-side runs of the swarm against Icecast.
//!
//! `swaps` swaps a station between two playlists on air and times each swap from the
//! request to the first audio of the new playlist at a WebSocket listener.

mod chaos;
mod compare;
mod events;
mod http1;
mod icecast;
mod listener;
mod ogg;
mod proc_stats;
mod report;
mod stalls;
mod storm;
mod swaps;
mod swarm;
mod target;
mod wire;

use std::process::ExitCode;

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
    /// Kill actors on a seeded schedule while listeners decode the stream; check that
    /// no kill is heard beyond what its kind allows.
    Chaos(chaos::ChaosArgs),
    /// Write play events through the engine's sinks (a CQL node, or SQLite) at a target
    /// rate, several batches in flight; report the sustained rate and batch latency.
    Events(events::EventsArgs),
    /// Swap a station between two playlists on air, `now`, and time each swap from
    /// request to the first audio of the new playlist at a WebSocket listener.
    Swaps(swaps::SwapsArgs),
    /// Relay a station's HTTP Ogg/Opus stream to an Icecast mount as its source, on
    /// pages of a chosen duration (for side-by-side runs against Icecast).
    IcecastSource(icecast::SourceArgs),
    /// Print swarm reports side by side, one row per server.
    Compare(compare::CompareArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Swarm(args) => run_swarm(&args).map(|()| ExitCode::SUCCESS),
        Command::Chaos(args) => run_chaos(&args),
        Command::Events(args) => events::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Swaps(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(swaps::run(&args))
            .map(|()| ExitCode::SUCCESS),
        Command::IcecastSource(args) => {
            let summary = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(icecast::run(&args))?;
            println!(
                "icecast source done: {} packets, {} bytes sent",
                summary.packets, summary.bytes_sent
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            print!("{}", compare::run(&args)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_chaos(args: &chaos::ChaosArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(chaos::rng::seed_from_clock);
    println!("chaos seed: {seed}");
    let failed = || println!("chaos run failed (replay with --seed {seed})");
    // One thread, as for the swarm: the listeners and the kill schedule share it, and
    // the other cores stay with the engine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    let report = match local.block_on(&runtime, chaos::run(args, seed)) {
        Ok(report) => report,
        Err(error) => {
            failed();
            return Err(error.into());
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.report {
        report.write_json(path)?;
        println!("report written to {path}");
    }
    if report.passed {
        Ok(ExitCode::SUCCESS)
    } else {
        failed();
        Ok(ExitCode::FAILURE)
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
