//! The CQL schema (`schema.cql`), its version, and the migration that
//! applies it.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::unprepared::Statement;

use super::{ScyllaOptions, classify};
use crate::events::error::{EventSinkError, SinkOperation};

/// The schema version this build writes and reads.
pub const CQL_SCHEMA_VERSION: i64 = 1;

/// The row of `schema_version` that holds the event schema's version.
const COMPONENT: &str = "events";

/// The schema's tables, with placeholders in braces.
const SCHEMA_CQL: &str = include_str!("schema.cql");

/// Time allowed for one schema change (creating a table may take seconds).
pub(crate) const DDL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest TTL CQL accepts: 20 years, in days.
const MAX_TTL_DAYS: u32 = 7300;

/// How the keyspace is replicated when `migrate` creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy`: `factor` copies, datacenters ignored (one datacenter,
    /// tests and development).
    Simple { factor: u32 },
    /// `NetworkTopologyStrategy`: so many copies in each named datacenter.
    NetworkTopology { datacenters: Vec<(String, u32)> },
}

impl Replication {
    fn cql(&self) -> String {
        match self {
            Self::Simple { factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Self::NetworkTopology { datacenters } => {
                let mut cql = String::from("{'class': 'NetworkTopologyStrategy'");
                for (name, factor) in datacenters {
                    cql.push_str(&format!(", '{name}': {factor}"));
                }
                cql.push('}');
                cql
            }
        }
    }
}

/// How long rows live in each group of tables, in days (each table's
/// `default_time_to_live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableTtls {
    /// `events_by_station_day`.
    pub events_days: u32,
    /// `plays_by_station_day`, `plays_by_track_month`.
    pub plays_days: u32,
    /// The three listener session tables.
    pub sessions_days: u32,
    /// `track_day_totals`.
    pub totals_days: u32,
}

impl TableTtls {
    /// `station_days` outlives every table it points into.
    fn days_of_station_days(&self) -> u32 {
        self.events_days
            .max(self.plays_days)
            .max(self.sessions_days)
            .max(self.totals_days)
    }
}

/// What `migrate` creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    pub replication: Replication,
    pub ttls: TableTtls,
    /// Window of the time-window compaction of the time-partitioned tables.
    pub compaction_window_days: u32,
}

impl SchemaOptions {
    pub(crate) fn validate(&self, cluster: &str) -> Result<(), EventSinkError> {
        let setup = |message: String| EventSinkError::ClusterSetup {
            cluster: cluster.to_string(),
            message,
            source: None,
        };
        let ttls = self.ttls;
        for (name, days) in [
            ("events", ttls.events_days),
            ("plays", ttls.plays_days),
            ("sessions", ttls.sessions_days),
            ("totals", ttls.totals_days),
        ] {
            if !(1..=MAX_TTL_DAYS).contains(&days) {
                return Err(setup(format!(
                    "the TTL of the {name} tables is {days} days; CQL accepts 1 to {MAX_TTL_DAYS}"
                )));
            }
        }
        if self.compaction_window_days == 0 {
            return Err(setup(
                "the compaction window must be at least one day".into(),
            ));
        }
        match &self.replication {
            Replication::Simple { factor } if *factor == 0 => {
                return Err(setup("the replication factor must be at least 1".into()));
            }
            Replication::NetworkTopology { datacenters } => {
                if datacenters.is_empty() {
                    return Err(setup(
                        "NetworkTopologyStrategy needs at least one datacenter".into(),
                    ));
                }
                for (name, factor) in datacenters {
                    let plain = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
                    if !plain || *factor == 0 {
                        return Err(setup(format!(
                            "datacenter {name:?} with replication factor {factor} is not usable"
                        )));
                    }
                }
            }
            Replication::Simple { .. } => {}
        }
        Ok(())
    }

    /// The CQL statements of the tables, placeholders filled in.
    pub(crate) fn table_statements(&self, keyspace: &str) -> Vec<String> {
        let seconds = |days: u32| (u64::from(days) * 86_400).to_string();
        let filled = SCHEMA_CQL
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("{keyspace}", keyspace)
            .replace("{events_ttl}", &seconds(self.ttls.events_days))
            .replace("{plays_ttl}", &seconds(self.ttls.plays_days))
            .replace("{sessions_ttl}", &seconds(self.ttls.sessions_days))
            .replace("{totals_ttl}", &seconds(self.ttls.totals_days))
            .replace("{days_ttl}", &seconds(self.ttls.days_of_station_days()))
            .replace("{window_days}", &self.compaction_window_days.to_string());
        filled
            .split(';')
            .map(str::trim)
            .filter(|statement| !statement.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `ALTER TABLE` statements that set the configured TTLs and compaction
    /// on tables that already exist.
    fn alter_statements(&self, keyspace: &str) -> Vec<String> {
        self.table_statements(keyspace)
            .iter()
            .filter_map(|create| {
                let table = create
                    .strip_prefix("CREATE TABLE IF NOT EXISTS ")?
                    .split_whitespace()
                    .next()?
                    .to_string();
                let options = create.split_once(") WITH ")?.1;
                // Clustering order cannot change after creation.
                let options: Vec<&str> = options
                    .split("\n    AND ")
                    .map(str::trim)
                    .filter(|option| !option.starts_with("CLUSTERING ORDER"))
                    .collect();
                (!options.is_empty())
                    .then(|| format!("ALTER TABLE {table} WITH {}", options.join(" AND ")))
            })
            .collect()
    }
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOutcome {
    pub keyspace: String,
    /// Whether the keyspace was created now.
    pub created_keyspace: bool,
    /// The version found before, `None` for a keyspace without one.
    pub previous_version: Option<i64>,
    pub version: i64,
    /// Tables created or checked.
    pub tables: usize,
}

/// The version recorded in the keyspace; `None` when the keyspace or its
/// version table or row is missing.
pub(crate) async fn read_version(
    session: &Session,
    options: &ScyllaOptions,
) -> Result<Option<i64>, EventSinkError> {
    let cluster = options.cluster_name();
    let cql = format!(
        "SELECT version FROM {}.schema_version WHERE component = ?",
        options.keyspace
    );
    let result = match session.query_unpaged(cql, (COMPONENT,)).await {
        Ok(result) => result,
        Err(error) if classify::is_missing_schema(&error) => return Ok(None),
        Err(error) => return Err(classify::execution(&cluster, SinkOperation::Schema, error)),
    };
    let rows = result
        .into_rows_result()
        .map_err(|error| classify::read(&cluster, error, false))?;
    let version: Option<(Option<i32>,)> = rows
        .maybe_first_row()
        .map_err(|error| classify::read(&cluster, error, false))?;
    Ok(version.and_then(|(version,)| version).map(i64::from))
}

async fn ddl(session: &Session, cluster: &str, cql: &str) -> Result<(), EventSinkError> {
    let mut statement = Statement::new(cql);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|error| classify::execution(cluster, SinkOperation::Schema, error))?;
    Ok(())
}

pub(crate) async fn migrate(
    session: &Session,
    options: &ScyllaOptions,
    schema: &SchemaOptions,
) -> Result<MigrateOutcome, EventSinkError> {
    let cluster = options.cluster_name();
    let keyspace = &options.keyspace;
    let existing = keyspace_exists(session, &cluster, keyspace).await?;
    let previous_version = if existing {
        read_version(session, options).await?
    } else {
        None
    };
    if let Some(found) = previous_version
        && found != CQL_SCHEMA_VERSION
    {
        // Only version 1 exists: anything else is a newer build's schema.
        return Err(EventSinkError::CqlSchemaMismatch {
            cluster: options.known_nodes.join(","),
            keyspace: keyspace.clone(),
            found: Some(found),
            expected: CQL_SCHEMA_VERSION,
        });
    }
    if !existing {
        ddl(
            session,
            &cluster,
            &format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {} AND durable_writes = true",
                schema.replication.cql()
            ),
        )
        .await?;
    }
    let tables = schema.table_statements(keyspace);
    for create in &tables {
        ddl(session, &cluster, create).await?;
    }
    if previous_version.is_some() {
        for alter in schema.alter_statements(keyspace) {
            ddl(session, &cluster, &alter).await?;
        }
    }
    let record = format!(
        "INSERT INTO {keyspace}.schema_version (component, version, migrated_at)
         VALUES (?, ?, toTimestamp(now()))"
    );
    let mut statement = Statement::new(record);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    let version = i32::try_from(CQL_SCHEMA_VERSION).unwrap_or(i32::MAX);
    session
        .query_unpaged(statement, (COMPONENT, version))
        .await
        .map_err(|error| classify::execution(&cluster, SinkOperation::Schema, error))?;
    Ok(MigrateOutcome {
        keyspace: keyspace.clone(),
        created_keyspace: !existing,
        previous_version,
        version: CQL_SCHEMA_VERSION,
        tables: tables.len(),
    })
}

async fn keyspace_exists(
    session: &Session,
    cluster: &str,
    keyspace: &str,
) -> Result<bool, EventSinkError> {
    let result = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(|error| classify::execution(cluster, SinkOperation::Schema, error))?;
    let rows = result
        .into_rows_result()
        .map_err(|error| classify::read(cluster, error, false))?;
    Ok(rows
        .maybe_first_row::<(String,)>()
        .map_err(|error| classify::read(cluster, error, false))?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaOptions {
        SchemaOptions {
            replication: Replication::Simple { factor: 1 },
            ttls: TableTtls {
                events_days: 400,
                plays_days: 800,
                sessions_days: 400,
                totals_days: 3650,
            },
            compaction_window_days: 1,
        }
    }

    #[test]
    fn every_placeholder_is_filled_and_every_table_is_created() {
        let statements = schema().table_statements("events_test");
        assert_eq!(statements.len(), 9);
        for statement in &statements {
            assert!(
                statement.starts_with("CREATE TABLE IF NOT EXISTS events_test."),
                "{statement}"
            );
            let mut rest = statement.as_str();
            while let Some(at) = rest.find('{') {
                rest = &rest[at + 1..];
                assert!(
                    rest.starts_with('\''),
                    "unfilled placeholder in {statement}"
                );
            }
            assert!(!statement.contains("COUNTER") && !statement.contains("counter"));
        }
        let events = &statements[2];
        assert!(events.contains("TimeWindowCompactionStrategy"), "{events}");
        assert!(events.contains("'compaction_window_size': 1"), "{events}");
        assert!(
            events.contains("default_time_to_live = 34560000"),
            "{events}"
        );
    }

    #[test]
    fn existing_tables_get_the_configured_options() {
        let alters = schema().alter_statements("ks");
        assert_eq!(alters.len(), 8, "{alters:#?}");
        assert!(alters.iter().all(|alter| !alter.contains("CLUSTERING")));
        assert!(alters.iter().any(|alter| alter.starts_with(
            "ALTER TABLE ks.events_by_station_day WITH compaction = {'class': 'TimeWindowCompactionStrategy'"
        )));
    }

    #[test]
    fn replication_is_simple_or_per_datacenter() {
        assert_eq!(
            Replication::Simple { factor: 3 }.cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            Replication::NetworkTopology {
                datacenters: vec![("dc1".into(), 3), ("dc2".into(), 2)]
            }
            .cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
    }

    #[test]
    fn unusable_schema_options_are_refused() {
        let mut options = schema();
        options.ttls.totals_days = 36_500;
        assert!(options.validate("c").is_err());
        let mut options = schema();
        options.replication = Replication::NetworkTopology {
            datacenters: vec![("dc1'; DROP".into(), 3)],
        };
        assert!(options.validate("c").is_err());
        assert!(schema().validate("c").is_ok());
    }
}
