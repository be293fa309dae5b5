//! Play events: what each station records for royalty reports, listener
//! statistics and history, and the sinks that store them.
//!
//! | sink | name | where events go |
//! | --- | --- | --- |
//! | [`SqliteSink`] | `"sqlite"` | one SQLite file, the embedded default: no database server needed |
//! | [`ScyllaSink`] | `"scylla"` | a ScyllaDB or Apache Cassandra cluster through CQL, sharing one [`ScyllaStore`] per process |
//!
//! Both also read events back through [`EventReader`], with the same answers
//! for the same events.
//!
//! Every event is a [`PlayEvent`]: a time-ordered [`EventId`] (a version-1
//! UUID, so a CQL `timeuuid`) taken when the event happens, the station, the
//! time in Unix milliseconds, and an [`EventKind`] with its data.
//!
//! # The contract
//! [`EventSink::write_batch`] stores a batch of events off the real-time path;
//! it may block on disk or network I/O. A batch is written whole or not at all
//! (SQLite: one transaction), or, where the store has no transactions across
//! partitions (ScyllaDB), so that writing it again completes it without
//! changing what is already stored: after an error, the writer must keep the
//! batch and write it again before it counts as stored.
//! Writing is idempotent: an event whose id is already stored is ignored, with
//! everything derived from it (ScyllaDB writes every cell with the event's
//! time as its write timestamp, so a second write lands on the same cells),
//! so a writer may resend a batch it is unsure about. On an error the batch is
//! not stored: [`EventSinkError::is_retryable`] says "keep the batch and try again later"
//! (the database is busy, locked, full or away); every other error means this
//! sink cannot take events until it is reopened or an operator steps in (a
//! corrupt file, a schema from a newer build), and the writer keeps its batches
//! meanwhile.
//!
//! Creating an event allocates and takes a short process-wide lock for its id
//! (see [`EventId`]): the audio thread hands what it knows to an actor, which
//! makes the event.

mod calendar;
mod error;
mod id;
mod model;
mod read;
mod scylla;
mod spool;
mod sqlite;

pub use calendar::{DateError, Day, Month};
pub use error::{DriverError, EventSinkError, SinkOperation};
pub use id::{EventId, EventIdError};
pub use model::{
    ClientHash, EndReason, EventKind, EventType, MasteringStats, Play, PlayEnd, PlayEvent,
    TrackSource, Transport, UnknownEndReason, UnknownEventType,
};
pub use read::{
    DayStats, EventReader, ListenerSession, MAX_SESSION_DAYS, OPEN_SESSION_DAYS, PlayTotal,
    SessionEnd, SessionSpan, TOP_TRACKS, TrackPlays, TrackTotal,
};
pub use scylla::{
    CQL_SCHEMA_VERSION, CqlConsistency, MigrateOutcome, Replication, SchemaOptions, ScyllaOptions,
    ScyllaSink, ScyllaStore, TableTtls, TlsFiles,
};
pub use spool::{
    CorruptionKind, MAX_RECORD_BYTES, OpenedSpool, Spool, SpoolCorruption, SpoolError, SpoolOptions,
};
pub use sqlite::{SQLITE_SCHEMA_VERSION, SqliteOptions, SqliteSink};

/// A place that stores play events. See the module's contract.
pub trait EventSink: Send {
    /// Short name for logs and metrics, such as `"sqlite"`.
    fn name(&self) -> &str;

    /// Stores `events` in one transaction, ignoring any whose id is already
    /// stored. An empty batch succeeds without touching the database.
    fn write_batch(&mut self, events: &[PlayEvent]) -> Result<(), EventSinkError>;
}
