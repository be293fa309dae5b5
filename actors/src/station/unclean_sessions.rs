//! Listener sessions that a previous run of the engine left open (it crashed, was
//! killed, or lost power) are closed when the station starts again, so that
//! listener-hours stay right.
//!
//! A session is open when its `ListenerJoined` event is stored, or waits in the
//! station's spool, and no `ListenerLeft` for it is stored or spooled. Each is closed
//! with a `ListenerLeft` whose reason is [`UNCLEAN_SHUTDOWN`] and whose listened time
//! runs from the join to the last sign of life of the previous run: the newest of the
//! station's events in the store or in the spool and of its [`AliveMarker`], a time
//! the running engine writes to a small file every [`ALIVE_EVERY`]. Nothing later is
//! known, so a session is never credited with time the engine was down (and loses at
//! most [`ALIVE_EVERY`]).
//!
//! The lookup runs before the station starts, so none of this run's events are
//! mistaken for the previous run's; the spool is read (not replayed) to see what
//! the store has not received yet.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sonicforge_engine::events::{
    ClientHash, EventId, EventKind, EventReader, EventSinkError, PlayEvent, Spool, SpoolCorruption,
    SpoolError, SpoolOptions, Transport,
};

/// The disconnect reason of the sessions closed here.
pub const UNCLEAN_SHUTDOWN: &str = "unclean_shutdown";
/// How often the running engine records that each station is alive.
pub const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A file holding the last time (Unix milliseconds, as text) a station was known alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliveMarker {
    path: std::path::PathBuf,
}

impl AliveMarker {
    /// The marker of `station` under `data_dir`.
    pub fn new(data_dir: &Path, station: &str) -> Self {
        Self {
            path: data_dir.join("alive").join(station),
        }
    }

    /// Records `unix_ms`; written to a temporary file and renamed, so a crash leaves
    /// either the old time or the new one.
    pub fn touch(&self, unix_ms: u64) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, unix_ms.to_string())?;
        std::fs::rename(&partial, &self.path)
    }

    /// The recorded time, if there is one that reads as a number.
    pub fn read(&self) -> Option<u64> {
        std::fs::read_to_string(&self.path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Why the previous run's open sessions could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum UncleanSessionsError {
    #[error("reading the event store: {0}")]
    Store(#[from] EventSinkError),
    #[error("reading the spool: {0}")]
    Spool(#[from] SpoolError),
}

/// A session to close: what its `ListenerLeft` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    /// The id of the session's `ListenerJoined` event.
    pub joined_id: EventId,
    pub client_hash: ClientHash,
    pub session_id: String,
    pub transport: Transport,
    pub rendition_kbps: u32,
    pub joined_at_unix_ms: u64,
}

/// The sessions a previous run of one station left open, and its last sign of life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UncleanSessions {
    pub sessions: Vec<OpenSession>,
    pub last_seen_unix_ms: u64,
    /// Bad bytes found in the spool while reading it (moved aside, good records kept):
    /// the caller reports them, as the event writer would.
    pub spool_corruption: Vec<SpoolCorruption>,
}

impl UncleanSessions {
    /// Looks them up for `station` in the store and in the spool at `spool_dir` (the
    /// station's own spool directory; a missing one holds nothing).
    pub fn find(
        reader: &dyn EventReader,
        station: &str,
        spool_dir: &Path,
        spool_options: SpoolOptions,
        alive: &AliveMarker,
    ) -> Result<Self, UncleanSessionsError> {
        let stored = reader.open_sessions(station)?;
        let newest_stored = reader
            .recent_events(station, 1)?
            .first()
            .map_or(0, |event| event.at_unix_ms)
            .max(alive.read().unwrap_or(0));
        let (spooled, corruption) = if spool_dir.exists() {
            let mut opened = Spool::open(spool_dir, spool_options)?;
            let count = usize::try_from(opened.spool.len_events()).unwrap_or(usize::MAX);
            (opened.spool.peek(count)?, opened.corruption)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut found = Self::from_parts(
            station,
            stored.into_iter().map(|session| OpenSession {
                joined_id: session.id,
                client_hash: session.client_hash,
                session_id: session.session_id,
                transport: session.transport,
                rendition_kbps: session.rendition_kbps,
                joined_at_unix_ms: session.joined_at_unix_ms,
            }),
            newest_stored,
            &spooled,
        );
        found.spool_corruption = corruption;
        Ok(found)
    }

    /// Combines the store's open sessions with the spooled events of `station`.
    pub fn from_parts(
        station: &str,
        stored_open: impl IntoIterator<Item = OpenSession>,
        newest_stored_unix_ms: u64,
        spooled: &[PlayEvent],
    ) -> Self {
        let mut open: HashMap<String, OpenSession> = stored_open
            .into_iter()
            .map(|session| (session.session_id.clone(), session))
            .collect();
        let mut left = HashSet::new();
        let mut last_seen = newest_stored_unix_ms;
        for event in spooled.iter().filter(|event| event.station == station) {
            last_seen = last_seen.max(event.at_unix_ms);
            match &event.kind {
                EventKind::ListenerJoined {
                    session_id,
                    transport,
                    rendition_kbps,
                    client_hash,
                    ..
                } => {
                    open.entry(session_id.clone()).or_insert(OpenSession {
                        joined_id: event.id,
                        client_hash: client_hash.clone(),
                        session_id: session_id.clone(),
                        transport: *transport,
                        rendition_kbps: *rendition_kbps,
                        joined_at_unix_ms: event.at_unix_ms,
                    });
                }
                EventKind::ListenerLeft { session_id, .. } => {
                    left.insert(session_id.clone());
                }
                _ => {}
            }
        }
        let mut sessions: Vec<OpenSession> = open
            .into_values()
            .filter(|session| !left.contains(&session.session_id))
            .collect();
        sessions.sort_by(|a, b| {
            (a.joined_at_unix_ms, &a.session_id).cmp(&(b.joined_at_unix_ms, &b.session_id))
        });
        Self {
            sessions,
            last_seen_unix_ms: last_seen,
            spool_corruption: Vec::new(),
        }
    }

    /// The `ListenerLeft` events that close them.
    pub fn closing_events(&self) -> Vec<EventKind> {
        self.sessions
            .iter()
            .map(|session| EventKind::ListenerLeft {
                session_id: session.session_id.clone(),
                transport: session.transport,
                rendition_kbps: session.rendition_kbps,
                listened_ms: self
                    .last_seen_unix_ms
                    .saturating_sub(session.joined_at_unix_ms),
                disconnect_reason: UNCLEAN_SHUTDOWN.to_string(),
                joined_id: Some(session.joined_id),
                client_hash: Some(session.client_hash.clone()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(station: &str, at_unix_ms: u64, kind: EventKind) -> PlayEvent {
        let mut event = PlayEvent::with_id(EventId::now(), station, kind);
        event.at_unix_ms = at_unix_ms;
        event
    }

    fn hash() -> ClientHash {
        ClientHash::from_address("127.0.0.1".parse().unwrap(), b"salt")
    }

    fn joined(session: &str) -> EventKind {
        EventKind::ListenerJoined {
            session_id: session.into(),
            transport: Transport::Websocket,
            rendition_kbps: 64,
            client_hash: hash(),
            user_agent_family: "firefox".into(),
        }
    }

    fn left(session: &str) -> EventKind {
        EventKind::ListenerLeft {
            session_id: session.into(),
            transport: Transport::Websocket,
            rendition_kbps: 64,
            listened_ms: 10,
            disconnect_reason: "client_closed".into(),
            joined_id: None,
            client_hash: None,
        }
    }

    fn stored(session: &str, joined_at_unix_ms: u64) -> OpenSession {
        OpenSession {
            joined_id: EventId::now(),
            client_hash: hash(),
            session_id: session.into(),
            transport: Transport::Http,
            rendition_kbps: 128,
            joined_at_unix_ms,
        }
    }

    #[test]
    fn sessions_open_in_the_store_or_the_spool_are_closed_up_to_the_last_sign_of_life() {
        let spooled = [
            event("main", 5_000, joined("spooled-open")),
            event("main", 6_000, joined("spooled-closed")),
            event("main", 7_000, left("spooled-closed")),
            event("main", 8_000, left("stored-but-left-in-spool")),
            event("other", 99_000, joined("other-station")),
        ];
        let stored_open = stored("stored-open", 1_000);
        let found = UncleanSessions::from_parts(
            "main",
            [
                stored_open.clone(),
                stored("stored-but-left-in-spool", 2_000),
            ],
            4_000,
            &spooled,
        );
        assert_eq!(found.last_seen_unix_ms, 8_000);
        let ids: Vec<&str> = found
            .sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        assert_eq!(ids, ["stored-open", "spooled-open"]);
        let closing = found.closing_events();
        assert_eq!(
            closing[0],
            EventKind::ListenerLeft {
                session_id: "stored-open".into(),
                transport: Transport::Http,
                rendition_kbps: 128,
                listened_ms: 7_000,
                disconnect_reason: UNCLEAN_SHUTDOWN.into(),
                joined_id: Some(stored_open.joined_id),
                client_hash: Some(hash()),
            }
        );
        assert!(matches!(
            &closing[1],
            EventKind::ListenerLeft {
                listened_ms: 3_000,
                ..
            }
        ));
    }

    #[test]
    fn the_alive_marker_keeps_the_last_time_written() {
        let dir = std::env::temp_dir().join(format!("sonicforge-alive-{}", std::process::id()));
        let marker = AliveMarker::new(&dir, "main");
        assert_eq!(marker.read(), None);
        marker.touch(1_000).unwrap();
        marker.touch(2_500).unwrap();
        assert_eq!(marker.read(), Some(2_500));
        std::fs::write(dir.join("alive").join("main"), "garbage").unwrap();
        assert_eq!(marker.read(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_clean_previous_run_leaves_nothing_to_close() {
        let found = UncleanSessions::from_parts("main", [], 0, &[]);
        assert!(found.sessions.is_empty());
        assert!(found.closing_events().is_empty());
    }
}
