//! The play-event model: what a station records as it runs.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::EventId;

/// One thing that happened on a station, stamped when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayEvent {
    /// Unique and time-ordered; also the event's time to 100 ns.
    pub id: EventId,
    /// The station's name, as in its configuration.
    pub station: String,
    /// Milliseconds since the Unix epoch; the id's timestamp, truncated.
    pub at_unix_ms: u64,
    pub kind: EventKind,
}

impl PlayEvent {
    /// An event that happens now: takes a new id and stamps its time.
    pub fn new(station: impl Into<String>, kind: EventKind) -> Self {
        Self::with_id(EventId::now(), station, kind)
    }

    /// An event with an id taken earlier; its time is read from the id.
    pub fn with_id(id: EventId, station: impl Into<String>, kind: EventKind) -> Self {
        Self {
            id,
            station: station.into(),
            at_unix_ms: id.unix_ms(),
            kind,
        }
    }

    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }
}

/// What happened. The serde form is an object whose `"type"` field is the
/// snake_case name of the variant (see [`EventType`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The station's pipeline started.
    StationStarted,
    /// The station's pipeline stopped.
    StationStopped,
    /// A track went on air.
    TrackStarted {
        track_id: String,
        title: String,
        source: TrackSource,
        /// Name of the generator that made the track.
        generator: String,
        duration_ms: u64,
        /// What mastering did to the track; `None` when it was not mastered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mastering: Option<MasteringStats>,
    },
    /// A track went off air.
    TrackEnded {
        track_id: String,
        /// How much of it was on air.
        played_ms: u64,
        reason: EndReason,
        /// The id of the `TrackStarted` event of this play, so that a store can
        /// complete the play without reading. Missing in events stored before
        /// it was recorded; a store then matches the latest open play of the
        /// track.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        play_id: Option<EventId>,
        /// Listener-milliseconds during the play: the station's listener count
        /// integrated over the time it was on air (0 in older events).
        #[serde(default)]
        listener_ms: u64,
    },
    /// A listener connected.
    ListenerJoined {
        session_id: String,
        transport: Transport,
        rendition_kbps: u32,
        /// A salted hash of the client's address; the address itself is never recorded.
        client_hash: ClientHash,
        /// A coarse browser or player family such as "firefox", never the whole header.
        user_agent_family: String,
    },
    /// A listener disconnected.
    ListenerLeft {
        session_id: String,
        transport: Transport,
        rendition_kbps: u32,
        listened_ms: u64,
        disconnect_reason: String,
        /// The id of the session's `ListenerJoined` event, so that a store can
        /// close the session without reading. Missing in events stored before
        /// it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        joined_id: Option<EventId>,
        /// The session's client hash, as in its `ListenerJoined` event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_hash: Option<ClientHash>,
    },
    /// The scheduler moved from one playlist to another.
    PlaylistSwapped { from: String, to: String },
    /// An operator skipped a track.
    Skip { track_id: String },
    /// A supervised actor was restarted.
    ActorRestarted { actor: String, reason: String },
}

impl EventKind {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::StationStarted => EventType::StationStarted,
            Self::StationStopped => EventType::StationStopped,
            Self::TrackStarted { .. } => EventType::TrackStarted,
            Self::TrackEnded { .. } => EventType::TrackEnded,
            Self::ListenerJoined { .. } => EventType::ListenerJoined,
            Self::ListenerLeft { .. } => EventType::ListenerLeft,
            Self::PlaylistSwapped { .. } => EventType::PlaylistSwapped,
            Self::Skip { .. } => EventType::Skip,
            Self::ActorRestarted { .. } => EventType::ActorRestarted,
        }
    }
}

/// The kind of an event without its data: the `"type"` tag of [`EventKind`],
/// and the `kind` column of stored events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    StationStarted,
    StationStopped,
    TrackStarted,
    TrackEnded,
    ListenerJoined,
    ListenerLeft,
    PlaylistSwapped,
    Skip,
    ActorRestarted,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        Self::StationStarted,
        Self::StationStopped,
        Self::TrackStarted,
        Self::TrackEnded,
        Self::ListenerJoined,
        Self::ListenerLeft,
        Self::PlaylistSwapped,
        Self::Skip,
        Self::ActorRestarted,
    ];

    /// The snake_case name, the same as the serde tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StationStarted => "station_started",
            Self::StationStopped => "station_stopped",
            Self::TrackStarted => "track_started",
            Self::TrackEnded => "track_ended",
            Self::ListenerJoined => "listener_joined",
            Self::ListenerLeft => "listener_left",
            Self::PlaylistSwapped => "playlist_swapped",
            Self::Skip => "skip",
            Self::ActorRestarted => "actor_restarted",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`EventType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an event type")]
pub struct UnknownEventType {
    pub name: String,
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownEventType {
                name: name.chars().take(64).collect(),
            })
    }
}

/// Where a track came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// Generated from this text prompt.
    Prompt(String),
    /// Played from this file (a path as written in the playlist).
    File(String),
}

/// What the mastering chain measured and did. Every field may be missing: a
/// backend reports what it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MasteringStats {
    /// Integrated loudness before mastering, in LUFS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_lufs: Option<f64>,
    /// Integrated loudness after mastering, in LUFS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_lufs: Option<f64>,
    /// True peak after mastering, in dBTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_peak_dbtp: Option<f64>,
    /// Largest cut or boost the spectral EQ applied, in dB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eq_range_db: Option<f64>,
    /// Time mastering took, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Which implementation ran, e.g. "cpu" or "wgpu".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// Why a track went off air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It played to its end.
    Finished,
    /// An operator skipped it.
    Skipped,
    /// A playlist swap cut it short.
    Swapped,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Skipped => "skipped",
            Self::Swapped => "swapped",
        }
    }
}

impl FromStr for EndReason {
    type Err = UnknownEndReason;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "finished" => Ok(Self::Finished),
            "skipped" => Ok(Self::Skipped),
            "swapped" => Ok(Self::Swapped),
            _ => Err(UnknownEndReason {
                name: name.chars().take(64).collect(),
            }),
        }
    }
}

/// A name that is not an [`EndReason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a reason a track ends")]
pub struct UnknownEndReason {
    pub name: String,
}

/// How a listener receives the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Opus packets over a WebSocket.
    Websocket,
    /// An Ogg/Opus stream over HTTP.
    Http,
}

/// A salted hash of a listener's address, so that listeners can be counted
/// without recording who they are.
///
/// The text form is 16 hex digits: the first 8 bytes of SHA-256 over the salt
/// and the address. The station keeps the salt secret and may rotate it (for
/// example daily); without it, a hash cannot be traced back to an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientHash(String);

impl ClientHash {
    pub fn from_address(address: IpAddr, salt: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        match address {
            IpAddr::V4(v4) => hasher.update(v4.octets()),
            IpAddr::V6(v6) => hasher.update(v6.octets()),
        }
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(16);
        for byte in digest.iter().take(8) {
            // Writing into a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    /// A hash as a store kept it (its text form); it is not checked.
    pub fn from_stored(hash: impl Into<String>) -> Self {
        Self(hash.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One track on air, for history and royalty reports: a
/// [`TrackStarted`](EventKind::TrackStarted) event joined with the
/// [`TrackEnded`](EventKind::TrackEnded) that closed it, if any yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Play {
    /// The id of the `TrackStarted` event.
    pub id: EventId,
    pub station: String,
    pub track_id: String,
    pub title: String,
    pub source: TrackSource,
    pub generator: String,
    pub duration_ms: u64,
    pub mastering: Option<MasteringStats>,
    pub started_at_unix_ms: u64,
    /// `None` while the track is on air (or when its end was never recorded).
    pub ended: Option<PlayEnd>,
}

/// How a [`Play`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlayEnd {
    /// The id of the `TrackEnded` event.
    pub id: EventId,
    pub at_unix_ms: u64,
    pub played_ms: u64,
    pub reason: EndReason,
    /// Listener-milliseconds during the play (see [`EventKind::TrackEnded`]).
    pub listener_ms: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// One event of every kind, with every optional field filled.
    pub(crate) fn one_of_each_kind(station: &str) -> Vec<PlayEvent> {
        let kinds = vec![
            EventKind::StationStarted,
            EventKind::TrackStarted {
                track_id: "a1b2c3d4e5f60718".into(),
                title: "Midnight Static".into(),
                source: TrackSource::Prompt("lofi chill 80 bpm A minor".into()),
                generator: "procedural".into(),
                duration_ms: 180_000,
                mastering: Some(MasteringStats {
                    input_lufs: Some(-18.25),
                    output_lufs: Some(-14.0),
                    true_peak_dbtp: Some(-1.0),
                    eq_range_db: Some(3.5),
                    seconds: Some(0.42),
                    backend: Some("cpu".into()),
                }),
            },
            EventKind::ListenerJoined {
                session_id: "s-1".into(),
                transport: Transport::Websocket,
                rendition_kbps: 96,
                client_hash: ClientHash::from_address(Ipv4Addr::LOCALHOST.into(), b"salt"),
                user_agent_family: "firefox".into(),
            },
            EventKind::Skip {
                track_id: "a1b2c3d4e5f60718".into(),
            },
            EventKind::TrackEnded {
                track_id: "a1b2c3d4e5f60718".into(),
                played_ms: 61_000,
                reason: EndReason::Skipped,
                play_id: None,
                listener_ms: 61_000,
            },
            EventKind::TrackStarted {
                track_id: "file-1".into(),
                title: "Field Recording".into(),
                source: TrackSource::File("/music/field.flac".into()),
                generator: "file".into(),
                duration_ms: 200_000,
                mastering: None,
            },
            EventKind::PlaylistSwapped {
                from: "day".into(),
                to: "night".into(),
            },
            EventKind::TrackEnded {
                track_id: "file-1".into(),
                played_ms: 1_000,
                reason: EndReason::Swapped,
                play_id: None,
                listener_ms: 0,
            },
            EventKind::ListenerLeft {
                session_id: "s-1".into(),
                transport: Transport::Http,
                rendition_kbps: 64,
                listened_ms: 62_000,
                disconnect_reason: "client closed".into(),
                joined_id: None,
                client_hash: Some(ClientHash::from_address(
                    Ipv4Addr::LOCALHOST.into(),
                    b"salt",
                )),
            },
            EventKind::ActorRestarted {
                actor: "encoder".into(),
                reason: "panicked: index out of bounds".into(),
            },
            EventKind::StationStopped,
        ];
        let mut events: Vec<PlayEvent> = kinds
            .into_iter()
            .map(|kind| PlayEvent::new(station, kind))
            .collect();
        // Link the ends to their starts, as the station does.
        let first_play = events[1].id;
        let second_play = events[5].id;
        let joined = events[2].id;
        for event in &mut events {
            match &mut event.kind {
                EventKind::TrackEnded {
                    track_id, play_id, ..
                } => {
                    *play_id = Some(if track_id == "file-1" {
                        second_play
                    } else {
                        first_play
                    });
                }
                EventKind::ListenerLeft { joined_id, .. } => *joined_id = Some(joined),
                _ => {}
            }
        }
        events
    }

    #[test]
    fn every_event_kind_round_trips_through_json() {
        let events = one_of_each_kind("lofi");
        let covered: std::collections::BTreeSet<EventType> =
            events.iter().map(PlayEvent::event_type).collect();
        assert_eq!(covered.len(), EventType::ALL.len());
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            let back: PlayEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event, "{json}");
        }
    }

    #[test]
    fn the_type_tag_is_the_snake_case_event_type() {
        for event in one_of_each_kind("lofi") {
            let value = serde_json::to_value(&event.kind).unwrap();
            assert_eq!(value["type"], event.event_type().as_str());
            assert_eq!(
                serde_json::to_value(event.event_type()).unwrap(),
                event.event_type().as_str()
            );
            assert_eq!(
                event.event_type().as_str().parse::<EventType>(),
                Ok(event.event_type())
            );
        }
        assert!("track-started".parse::<EventType>().is_err());
    }

    #[test]
    fn enums_in_payloads_are_snake_case() {
        let json = serde_json::to_value(EventKind::TrackEnded {
            track_id: "t".into(),
            played_ms: 5,
            reason: EndReason::Finished,
            play_id: None,
            listener_ms: 7,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "track_ended", "track_id": "t", "played_ms": 5, "reason": "finished", "listener_ms": 7})
        );
        assert_eq!(
            serde_json::to_value(Transport::Websocket).unwrap(),
            "websocket"
        );
        assert_eq!(
            serde_json::to_value(TrackSource::File("/a.flac".into())).unwrap(),
            serde_json::json!({"file": "/a.flac"})
        );
    }

    #[test]
    fn payloads_stored_before_play_and_session_links_still_read() {
        let ended: EventKind = serde_json::from_str(
            r#"{"type": "track_ended", "track_id": "t", "played_ms": 5, "reason": "skipped"}"#,
        )
        .unwrap();
        assert_eq!(
            ended,
            EventKind::TrackEnded {
                track_id: "t".into(),
                played_ms: 5,
                reason: EndReason::Skipped,
                play_id: None,
                listener_ms: 0,
            }
        );
        let left: EventKind = serde_json::from_str(
            r#"{"type": "listener_left", "session_id": "9", "transport": "http",
                "rendition_kbps": 64, "listened_ms": 10, "disconnect_reason": "client_closed"}"#,
        )
        .unwrap();
        assert!(matches!(
            left,
            EventKind::ListenerLeft {
                joined_id: None,
                client_hash: None,
                ..
            }
        ));
        let play_id = EventId::now();
        let linked = EventKind::TrackEnded {
            track_id: "t".into(),
            played_ms: 5,
            reason: EndReason::Finished,
            play_id: Some(play_id),
            listener_ms: 9,
        };
        let json = serde_json::to_value(&linked).unwrap();
        assert_eq!(json["play_id"], play_id.to_string());
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), linked);
    }

    #[test]
    fn mastering_stats_with_missing_fields_still_read() {
        let stats: MasteringStats = serde_json::from_str(r#"{"output_lufs": -14.0}"#).unwrap();
        assert_eq!(
            stats,
            MasteringStats {
                output_lufs: Some(-14.0),
                ..MasteringStats::default()
            }
        );
        assert_eq!(
            serde_json::to_string(&MasteringStats::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn the_event_time_is_the_id_time() {
        let event = PlayEvent::new("lofi", EventKind::StationStarted);
        assert_eq!(event.at_unix_ms, event.id.unix_ms());
    }

    #[test]
    fn a_client_hash_hides_the_address_and_depends_on_the_salt() {
        let address: IpAddr = Ipv4Addr::new(192, 0, 2, 7).into();
        let hash = ClientHash::from_address(address, b"monday");
        assert_eq!(hash.as_str().len(), 16);
        assert!(hash.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!hash.as_str().contains("192.0.2.7"));
        assert_eq!(hash, ClientHash::from_address(address, b"monday"));
        assert_ne!(hash, ClientHash::from_address(address, b"tuesday"));
        assert_ne!(
            hash,
            ClientHash::from_address(Ipv6Addr::LOCALHOST.into(), b"monday")
        );
    }
}
