//! Why an event sink failed.

use std::fmt;
use std::path::PathBuf;

use super::id::EventId;

/// The error of a sink's driver, kept as the source of an [`EventSinkError`]
/// so that no driver type shows in the engine's API.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a sink was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkOperation {
    /// Opening the database.
    Open,
    /// Setting connection options (journal mode, synchronous level, timeouts).
    Configure,
    /// Reading or creating the schema.
    Schema,
    /// Writing a batch of events.
    Write,
    /// Reading events or history back.
    Read,
}

impl SinkOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Configure => "configure",
            Self::Schema => "read or create the schema of",
            Self::Write => "write to",
            Self::Read => "read from",
        }
    }
}

impl fmt::Display for SinkOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an [`EventSink`](super::EventSink) could not open, write or read.
///
/// A failed [`write_batch`](super::EventSink::write_batch) has written
/// nothing. [`is_retryable`](Self::is_retryable) tells the writer whether to
/// keep the batch and try the same sink again later, or to stop using the sink
/// until it is reopened or an operator steps in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventSinkError {
    #[error("cannot create the directory {} for the event database", .path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the event database {} has schema version {found}, newer than version {supported} that this build reads",
        .path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the event database {} has schema version {found}, which this build does not know (it reads version {supported})",
        .path.display()
    )]
    SchemaUnknown {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot {operation} the event database {}: the file is corrupt or not a database", .path.display())]
    Corrupt {
        path: PathBuf,
        operation: SinkOperation,
        #[source]
        source: DriverError,
    },
    #[error("cannot {operation} the event database {} for now (busy, locked, full or an I/O error)", .path.display())]
    Unavailable {
        path: PathBuf,
        operation: SinkOperation,
        #[source]
        source: DriverError,
    },
    #[error("cannot {operation} the event database {}", .path.display())]
    Database {
        path: PathBuf,
        operation: SinkOperation,
        #[source]
        source: DriverError,
    },
    #[error("cannot encode event {id} for storage")]
    Encode {
        id: EventId,
        #[source]
        source: serde_json::Error,
    },
    #[error("the event database {} holds a row that cannot be read ({row})", .path.display())]
    Decode {
        path: PathBuf,
        /// Which row: the event id as stored (it may itself be what cannot be
        /// read), or what the row counted.
        row: String,
        #[source]
        source: DriverError,
    },
    #[error(
        "cannot {operation} the CQL cluster {cluster} for now (unreachable, timed out or overloaded)"
    )]
    ClusterUnavailable {
        /// The cluster's contact points and keyspace.
        cluster: String,
        operation: SinkOperation,
        #[source]
        source: DriverError,
    },
    #[error(
        "cannot {operation} the CQL cluster {cluster}: it refused the request (authentication, permissions, or a statement its schema does not accept)"
    )]
    ClusterRefused {
        cluster: String,
        operation: SinkOperation,
        #[source]
        source: DriverError,
    },
    #[error(
        "the keyspace {keyspace} on {cluster} has {}, but this build needs event schema version {expected}: {}",
        found_schema(*found), schema_advice(*found, *expected)
    )]
    CqlSchemaMismatch {
        cluster: String,
        keyspace: String,
        /// The version recorded in the keyspace; `None` when there is none.
        found: Option<i64>,
        expected: i64,
    },
    #[error("cannot set up the connection to the CQL cluster {cluster}: {message}")]
    ClusterSetup {
        cluster: String,
        message: String,
        #[source]
        source: Option<DriverError>,
    },
}

fn found_schema(found: Option<i64>) -> String {
    match found {
        Some(version) => format!("event schema version {version}"),
        None => "no event schema".to_string(),
    }
}

fn schema_advice(found: Option<i64>, expected: i64) -> &'static str {
    match found {
        Some(version) if version > expected => "a newer build migrated it; run that build",
        _ => "run `sonicforge db migrate` first",
    }
}

impl EventSinkError {
    /// Whether the same request may succeed later against the same sink: the
    /// database was busy, locked, full or failed to do I/O. Every other error
    /// needs the sink reopened or an operator's attention.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::ClusterUnavailable { .. }
        )
    }

    /// The operation that failed.
    pub fn operation(&self) -> SinkOperation {
        match self {
            Self::CreateDirectory { .. } => SinkOperation::Open,
            Self::SchemaTooNew { .. } | Self::SchemaUnknown { .. } => SinkOperation::Schema,
            Self::Corrupt { operation, .. }
            | Self::Unavailable { operation, .. }
            | Self::Database { operation, .. }
            | Self::ClusterUnavailable { operation, .. }
            | Self::ClusterRefused { operation, .. } => *operation,
            Self::Encode { .. } => SinkOperation::Write,
            Self::Decode { .. } => SinkOperation::Read,
            Self::CqlSchemaMismatch { .. } => SinkOperation::Schema,
            Self::ClusterSetup { .. } => SinkOperation::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_errors_can_be_sent_to_another_thread() {
        fn is_send_sync<T: Send + Sync + 'static>() {}
        is_send_sync::<EventSinkError>();
    }

    #[test]
    fn only_an_unavailable_database_is_worth_retrying() {
        let unavailable = EventSinkError::Unavailable {
            path: "events.db".into(),
            operation: SinkOperation::Write,
            source: "database is locked".into(),
        };
        assert!(unavailable.is_retryable());
        assert_eq!(unavailable.operation(), SinkOperation::Write);
        assert_eq!(
            unavailable.to_string(),
            "cannot write to the event database events.db for now (busy, locked, full or an I/O error)"
        );
        let too_new = EventSinkError::SchemaTooNew {
            path: "events.db".into(),
            found: 2,
            supported: 1,
        };
        assert!(!too_new.is_retryable());
    }

    #[test]
    fn an_unreachable_cluster_is_worth_retrying_a_schema_mismatch_is_not() {
        let away = EventSinkError::ClusterUnavailable {
            cluster: "127.0.0.1:9042/sonicforge".into(),
            operation: SinkOperation::Write,
            source: "connection refused".into(),
        };
        assert!(away.is_retryable());
        let older = EventSinkError::CqlSchemaMismatch {
            cluster: "127.0.0.1:9042".into(),
            keyspace: "sonicforge".into(),
            found: None,
            expected: 1,
        };
        assert!(!older.is_retryable());
        assert_eq!(older.operation(), SinkOperation::Schema);
        assert_eq!(
            older.to_string(),
            "the keyspace sonicforge on 127.0.0.1:9042 has no event schema, but this build needs event schema version 1: run `sonicforge db migrate` first"
        );
        let newer = EventSinkError::CqlSchemaMismatch {
            cluster: "n".into(),
            keyspace: "k".into(),
            found: Some(3),
            expected: 1,
        };
        let message = newer.to_string();
        assert!(
            message.contains("version 3") && message.contains("version 1"),
            "{message}"
        );
        assert!(message.contains("newer build"), "{message}");
    }
}
