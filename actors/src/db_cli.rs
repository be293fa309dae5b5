//! `sonicforge db`: the ScyllaDB schema of the play events.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use sonicforge_actors::events::{schema_options, scylla_options};
use sonicforge_engine::events::{CQL_SCHEMA_VERSION, ScyllaStore};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the keyspace (with the configured replication) and the event tables
    /// where missing, apply the configured TTLs and compaction, and record the schema
    /// version. Safe to run again.
    Migrate {
        /// Configuration file; the embedded config/sonicforge.toml when absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the schema version the keyspace holds and whether this build can use it.
    Check {
        /// Configuration file; the embedded config/sonicforge.toml when absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(command: &DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Migrate { config } => migrate(config.as_deref()),
        DbCommand::Check { config } => check(config.as_deref()),
    }
}

fn migrate(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = crate::load_config(config)?;
    let scylla = &config.events.scylla;
    let options = scylla_options(scylla, |name| std::env::var(name).ok())?;
    let cluster = options.cluster_name();
    let outcome = ScyllaStore::migrate(options, schema_options(scylla))
        .with_context(|| format!("cannot migrate the event schema on {cluster}"))?;
    match outcome.previous_version {
        None => println!(
            "keyspace {}{}: event schema version {} applied ({} tables)",
            outcome.keyspace,
            if outcome.created_keyspace {
                " created"
            } else {
                ""
            },
            outcome.version,
            outcome.tables
        ),
        Some(version) => println!(
            "keyspace {}: event schema version {version} already applied; {} tables checked, TTLs and compaction set",
            outcome.keyspace, outcome.tables
        ),
    }
    Ok(())
}

fn check(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = crate::load_config(config)?;
    let options = scylla_options(&config.events.scylla, |name| std::env::var(name).ok())?;
    let cluster = options.cluster_name();
    let keyspace = options.keyspace.clone();
    let found = ScyllaStore::schema_version(options)
        .with_context(|| format!("cannot read the event schema version on {cluster}"))?;
    match found {
        Some(version) if version == CQL_SCHEMA_VERSION => {
            println!("keyspace {keyspace}: event schema version {version} (this build's)");
            Ok(())
        }
        Some(version) => anyhow::bail!(
            "keyspace {keyspace}: event schema version {version}, but this build needs version {CQL_SCHEMA_VERSION}"
        ),
        None => anyhow::bail!(
            "keyspace {keyspace}: no event schema (this build needs version {CQL_SCHEMA_VERSION}): run `sonicforge db migrate`"
        ),
    }
}
