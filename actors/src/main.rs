//! The `sonicforge` command.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sonicforge_actors::config::Config;
use sonicforge_actors::server::Engine;

mod db_cli;
mod master_cli;

/// SonicForge: a real-time broadcast engine for generated music.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the engine and serve its stations.
    Run {
        /// Configuration file; the embedded config/sonicforge.toml when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long, env = "SONICFORGE_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check a configuration file and print what it defines.
    CheckConfig {
        /// Configuration file; the embedded config/sonicforge.toml when absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Master a WAV or FLAC file into a WAV file (or, with --batch, every such file
    /// of a directory into another, in one batch).
    Master(master_cli::MasterArgs),
    /// Write the deterministic mastering test corpus as WAV files.
    MasteringCorpus {
        /// Directory to write quiet.wav, loud.wav, bass_heavy.wav, dull.wav,
        /// bright.wav and reference.wav into.
        dir: PathBuf,
        /// Length of each track in seconds (1..=600).
        #[arg(long, default_value_t = 180)]
        seconds: u64,
    },
    /// The ScyllaDB schema of the play events: `db migrate`, `db check`.
    #[command(subcommand)]
    Db(db_cli::DbCommand),
    /// Print a bearer token for the API, signed with the engine's secret (the
    /// environment variable of `[auth] secret_env`, `[auth] secret`, or the secret file
    /// in the data directory, made if missing).
    Token {
        /// What the token allows: listener, operator or admin.
        #[arg(long, value_enum)]
        role: sonicforge_actors::auth::Role,
        /// Lifetime, like 90s, 30m, 1h or 7d; `[auth] default_token_ttl` when absent,
        /// at most `[auth] max_token_ttl`.
        #[arg(long)]
        ttl: Option<String>,
        /// Who the token is for (the `sub` claim, shown in logs).
        #[arg(long, default_value = "sonicforge-cli")]
        subject: String,
        /// Configuration file; the embedded config/sonicforge.toml when absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the spectral error between two audio files: the RMS difference in dB
    /// over the 31 third-octave bands 20 Hz-20 kHz, both normalised to equal power.
    SpectralError { a: PathBuf, b: PathBuf },
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let mut config = Config::load(path)?;
    config.apply_environment(|key| std::env::var(key).ok())?;
    Ok(config)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sonicforge: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let config = load_config(config.as_deref())?;
            println!("config is valid: listen {}", config.server.listen);
            for station in &config.stations {
                println!(
                    "station {}: {} ({} kb/s), {} prompts",
                    station.id,
                    station.name,
                    station
                        .renditions_kbps
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    station.playlist.len()
                );
            }
            Ok(())
        }
        Command::Master(args) => master_cli::master(&args),
        Command::MasteringCorpus { dir, seconds } => master_cli::write_corpus(&dir, seconds),
        Command::SpectralError { a, b } => master_cli::spectral_error(&a, &b),
        Command::Db(command) => db_cli::run(&command),
        Command::Token {
            role,
            ttl,
            subject,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            println!("{}", issue_token(&config, role, ttl.as_deref(), &subject)?);
            Ok(())
        }
        Command::Run { config, listen } => {
            init_logging();
            raise_open_files_limit();
            let mut config = load_config(config.as_deref())?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            actix_web::rt::System::new().block_on(async move {
                let engine = Engine::start(config).context("cannot start the engine")?;
                for addr in &engine.addrs {
                    println!("listening on http://{addr}/");
                    for station in engine.stations.running() {
                        println!(
                            "  {}: player http://{addr}/stations/{}",
                            station.config.name,
                            station.id()
                        );
                    }
                }
                use std::io::Write as _;
                std::io::stdout().flush().ok();
                engine.serve().await.context("server failed")
            })
        }
    }
}

/// A token for `sonicforge token`.
fn issue_token(
    config: &Config,
    role: sonicforge_actors::auth::Role,
    ttl: Option<&str>,
    subject: &str,
) -> anyhow::Result<String> {
    use sonicforge_actors::auth;
    if !config.auth.enabled {
        anyhow::bail!("[auth] enabled = false in this config: the engine checks no tokens");
    }
    let subject = subject.trim();
    if subject.is_empty() || subject.len() > 128 {
        anyhow::bail!("--subject must be 1 to 128 characters");
    }
    let ttl = auth::token_ttl(&config.auth, ttl).context("--ttl")?;
    let (secret, _source) = auth::resolve_secret(config, |key| std::env::var(key).ok())?;
    let keys = auth::TokenKeys::new(&secret)?;
    Ok(keys.issue(role, subject, ttl)?)
}

/// Every listener is a socket: take the whole open-file allowance the system grants.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(limit = ?limit.maximum, "raised the open-file limit"),
        Err(error) => {
            tracing::warn!(%error, current = ?limit.current, "cannot raise the open-file limit")
        }
    }
}

/// Logs go to stderr: filtered by `SONICFORGE_LOG` (default `info`), as JSON lines
/// when `SONICFORGE_LOG_FORMAT=json`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SONICFORGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SONICFORGE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    // Panics go to the log as one structured line where they happened; supervision
    // then logs what it did about it. A backtrace comes with RUST_BACKTRACE=1.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| location.to_string())
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let message = sonicforge_actors::supervise::tree::panic_message(info.payload());
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(%location, thread, %backtrace, "panic: {}", message);
        } else {
            tracing::error!(%location, thread, "panic: {}", message);
        }
    }));
}
