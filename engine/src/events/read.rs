//! Reading play events back: what is on air, history, a day's statistics, a
//! track's plays and the listener sessions still open. Every store answers
//! these the same; the statistics are computed here, from the plays and
//! sessions a store returns, so that no backend has its own arithmetic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::{Day, Month};
use super::error::EventSinkError;
use super::id::EventId;
use super::model::{ClientHash, Play, PlayEvent, Transport};

/// Tracks listed in [`DayStats::top_tracks`].
pub const TOP_TRACKS: usize = 10;

/// Open sessions are looked for among those that joined on the station's
/// latest this many days with listener sessions (see [`EventReader::open_sessions`]).
pub const OPEN_SESSION_DAYS: usize = 31;

/// The longest listener session, in days, whose every day is counted in
/// [`DayStats`]; a session open longer counts on its last this many days.
pub const MAX_SESSION_DAYS: u32 = 366;

/// Reads play events back from a store. Every implementation gives the same
/// answers for the same events, whatever order they were written in and
/// however often.
///
/// Reads may block on disk or network I/O: call them off the real-time path
/// (from an HTTP handler, through a blocking pool).
pub trait EventReader {
    /// The play on air on `station`: its latest play if that has no end yet.
    fn now_playing(&self, station: &str) -> Result<Option<Play>, EventSinkError>;

    /// Plays of `station` newest first, at most `limit`, that started before
    /// `before_unix_ms` (all with `None`). To page back, pass the
    /// `started_at_unix_ms` of the oldest play of the previous page.
    fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError>;

    /// Listener and play figures of `station` for one UTC day (see [`DayStats`]).
    fn day_stats(&self, station: &str, day: Day) -> Result<DayStats, EventSinkError>;

    /// Every play of `track_id` that started in `month` (UTC), on any
    /// station, newest first, with totals.
    fn track_plays(&self, track_id: &str, month: Month) -> Result<TrackPlays, EventSinkError>;

    /// Listener sessions of `station` that joined and never left (their
    /// engine stopped uncleanly), newest first. Only sessions that joined on
    /// one of the station's latest [`OPEN_SESSION_DAYS`] days with sessions
    /// are looked for.
    fn open_sessions(&self, station: &str) -> Result<Vec<ListenerSession>, EventSinkError>;

    /// Sessions of the listener with this client hash that joined in `month`
    /// (UTC), on any station, newest first.
    fn listener_sessions(
        &self,
        client_hash: &ClientHash,
        month: Month,
    ) -> Result<Vec<ListenerSession>, EventSinkError>;

    /// The latest `limit` events of `station`, newest first.
    fn recent_events(&self, station: &str, limit: usize) -> Result<Vec<PlayEvent>, EventSinkError>;
}

impl std::fmt::Debug for dyn EventReader + Send + Sync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventReader")
    }
}

impl<R: EventReader + ?Sized> EventReader for std::sync::Mutex<R> {
    fn now_playing(&self, station: &str) -> Result<Option<Play>, EventSinkError> {
        lock(self).now_playing(station)
    }

    fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError> {
        lock(self).history(station, limit, before_unix_ms)
    }

    fn day_stats(&self, station: &str, day: Day) -> Result<DayStats, EventSinkError> {
        lock(self).day_stats(station, day)
    }

    fn track_plays(&self, track_id: &str, month: Month) -> Result<TrackPlays, EventSinkError> {
        lock(self).track_plays(track_id, month)
    }

    fn open_sessions(&self, station: &str) -> Result<Vec<ListenerSession>, EventSinkError> {
        lock(self).open_sessions(station)
    }

    fn listener_sessions(
        &self,
        client_hash: &ClientHash,
        month: Month,
    ) -> Result<Vec<ListenerSession>, EventSinkError> {
        lock(self).listener_sessions(client_hash, month)
    }

    fn recent_events(&self, station: &str, limit: usize) -> Result<Vec<PlayEvent>, EventSinkError> {
        lock(self).recent_events(station, limit)
    }
}

/// A reader behind a mutex stays usable after a panic elsewhere: every read
/// leaves it as it found it.
fn lock<R: ?Sized>(mutex: &std::sync::Mutex<R>) -> std::sync::MutexGuard<'_, R> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One listener's session on a station: a `ListenerJoined` event and the
/// `ListenerLeft` that closed it, if any yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSession {
    /// The id of the `ListenerJoined` event.
    pub id: EventId,
    pub station: String,
    pub session_id: String,
    pub client_hash: ClientHash,
    pub transport: Transport,
    pub rendition_kbps: u32,
    pub user_agent_family: String,
    pub joined_at_unix_ms: u64,
    pub left: Option<SessionEnd>,
}

/// How a [`ListenerSession`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// The id of the `ListenerLeft` event.
    pub id: EventId,
    pub at_unix_ms: u64,
    pub listened_ms: u64,
    pub disconnect_reason: String,
}

/// A station's figures for one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayStats {
    pub station: String,
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Sum of `listened_ms` of the sessions that ended that day.
    pub listener_ms: u64,
    /// `listener_ms` in hours.
    pub listener_hours: f64,
    /// The most listeners connected at once that day. The count starts with
    /// the sessions open at 00:00 UTC (joined earlier, not left by then); the
    /// day's joins and leaves then add and remove one each, in event-id
    /// order; the peak is the highest count reached, the starting count
    /// included. A session still open counts until the end of the day.
    pub peak_listeners: u64,
    /// Plays that started that day.
    pub plays: u64,
    /// The most played tracks of the day: by plays, then listener-ms, then
    /// track id; at most [`TOP_TRACKS`].
    pub top_tracks: Vec<TrackTotal>,
}

/// One track's plays within a [`DayStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackTotal {
    pub track_id: String,
    pub title: String,
    pub plays: u64,
    /// Listener-milliseconds of those plays that ended.
    pub listener_ms: u64,
}

/// A track's plays in one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackPlays {
    pub track_id: String,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Newest first.
    pub plays: Vec<Play>,
    pub total_plays: u64,
    /// Listener-milliseconds of the plays that ended.
    pub total_listener_ms: u64,
    /// `total_listener_ms` in hours.
    pub total_listener_hours: f64,
}

impl TrackPlays {
    /// Sorts `plays` newest first and sums them.
    pub fn from_plays(track_id: &str, month: Month, mut plays: Vec<Play>) -> Self {
        plays.sort_by_key(|play| std::cmp::Reverse(play.id));
        let total_listener_ms = plays
            .iter()
            .filter_map(|play| play.ended.map(|end| end.listener_ms))
            .fold(0u64, u64::saturating_add);
        Self {
            track_id: track_id.to_string(),
            month: month.to_string(),
            total_plays: plays.len() as u64,
            total_listener_ms,
            total_listener_hours: hours(total_listener_ms),
            plays,
        }
    }
}

/// What [`DayStats`] needs of one play that started on the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayTotal {
    pub play_id: EventId,
    pub track_id: String,
    pub title: String,
    /// 0 while the play has not ended.
    pub listener_ms: u64,
}

/// What [`DayStats`] needs of one listener session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpan {
    pub joined: EventId,
    /// The `ListenerLeft` event's id and `listened_ms`.
    pub left: Option<(EventId, u64)>,
}

impl DayStats {
    /// The figures of `day` from the plays that started on it and the sessions
    /// that were open during it (others are ignored, so a store may pass more).
    /// A session appearing more than once counts once.
    pub fn compute(
        station: &str,
        day: Day,
        plays: impl IntoIterator<Item = PlayTotal>,
        sessions: impl IntoIterator<Item = SessionSpan>,
    ) -> Self {
        let (start, end) = (day.start_unix_ms(), day.end_unix_ms());
        let mut play_count = 0u64;
        let mut by_track: BTreeMap<String, TrackTotal> = BTreeMap::new();
        let mut seen_plays = std::collections::HashSet::new();
        for play in plays {
            let at = play.play_id.unix_ms();
            if at < start || at >= end || !seen_plays.insert(play.play_id) {
                continue;
            }
            play_count += 1;
            let total = by_track
                .entry(play.track_id.clone())
                .or_insert_with(|| TrackTotal {
                    track_id: play.track_id.clone(),
                    title: play.title.clone(),
                    plays: 0,
                    listener_ms: 0,
                });
            total.plays += 1;
            total.listener_ms = total.listener_ms.saturating_add(play.listener_ms);
        }
        let mut top_tracks: Vec<TrackTotal> = by_track.into_values().collect();
        top_tracks.sort_by(|a, b| {
            b.plays
                .cmp(&a.plays)
                .then(b.listener_ms.cmp(&a.listener_ms))
                .then_with(|| a.track_id.cmp(&b.track_id))
        });
        top_tracks.truncate(TOP_TRACKS);

        let mut unique: BTreeMap<EventId, SessionSpan> = BTreeMap::new();
        for session in sessions {
            unique.insert(session.joined, session);
        }
        let mut listener_ms = 0u64;
        let mut open_at_start = 0u64;
        // (event id, +1 for a join or -1 for a leave) within the day.
        let mut changes: Vec<(EventId, i64)> = Vec::new();
        for session in unique.values() {
            let joined = session.joined.unix_ms();
            if let Some((left_id, _)) = session.left
                && left_id < session.joined
            {
                continue; // a leave before its join is not a session
            }
            let left_at = session.left.map(|(id, _)| id.unix_ms());
            if joined >= end || left_at.is_some_and(|left| left < start) {
                continue; // not open during the day
            }
            if let Some((left_id, listened)) = session.left
                && left_id.unix_ms() < end
            {
                listener_ms = listener_ms.saturating_add(listened);
                changes.push((left_id, -1));
            }
            if joined < start {
                open_at_start += 1;
            } else {
                changes.push((session.joined, 1));
            }
        }
        changes.sort();
        let mut count = i64::try_from(open_at_start).unwrap_or(i64::MAX);
        let mut peak = count;
        for (_, change) in changes {
            count += change;
            peak = peak.max(count);
        }
        Self {
            station: station.to_string(),
            day: day.to_string(),
            listener_ms,
            listener_hours: hours(listener_ms),
            peak_listeners: u64::try_from(peak).unwrap_or(0),
            plays: play_count,
            top_tracks,
        }
    }
}

/// Whether a store lists a session among those of `day` (ScyllaDB's layout,
/// which SQLite follows so that both give the same statistics): on its join
/// day once the join is stored; on every day from its join to its leave
/// (the last [`MAX_SESSION_DAYS`] of them at most) once the leave is stored;
/// and on every day while it is open and joined on one of the station's
/// latest [`OPEN_SESSION_DAYS`] days with sessions (`in_open_window`).
pub(crate) fn session_listed_on_day(
    joined_day: Day,
    join_stored: bool,
    left: Option<EventId>,
    in_open_window: bool,
    day: Day,
) -> bool {
    match left {
        Some(left) => {
            let (first, last) = session_days(joined_day, left);
            (join_stored && day == joined_day) || (first <= day && day <= last)
        }
        None => join_stored && (day == joined_day || in_open_window),
    }
}

/// The days a closed session is listed on: from its join day (or the
/// [`MAX_SESSION_DAYS`]th day before its leave, if later) to its leave day.
pub(crate) fn session_days(joined_day: Day, left: EventId) -> (Day, Day) {
    let left_day = Day::of_unix_ms(left.unix_ms());
    let earliest = Day::from_days_since_epoch(
        left_day
            .days_since_epoch()
            .saturating_sub(MAX_SESSION_DAYS - 1),
    );
    (joined_day.max(earliest), left_day)
}

fn hours(ms: u64) -> f64 {
    ms as f64 / 3_600_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: [u8; 6] = [1, 0, 0, 0, 0, 9];

    fn id_at(unix_ms: u64) -> EventId {
        EventId::from_parts(0x01B2_1DD2_1381_4000 + unix_ms * 10_000, 0, &NODE)
    }

    fn span(joined_ms: u64, left: Option<(u64, u64)>) -> SessionSpan {
        SessionSpan {
            joined: id_at(joined_ms),
            left: left.map(|(at, listened)| (id_at(at), listened)),
        }
    }

    #[test]
    fn the_peak_starts_from_the_sessions_open_at_midnight() {
        let day = Day::from_days_since_epoch(10);
        let s = day.start_unix_ms();
        let stats = DayStats::compute(
            "lofi",
            day,
            [],
            [
                // Open across midnight, leaves in the morning.
                span(s - 1000, Some((s + 5000, 6000))),
                // Open across the whole day.
                span(s - 2000, None),
                // Joins and leaves within the day, overlapping the first.
                span(s + 1000, Some((s + 2000, 1000))),
                span(s + 1500, Some((s + 9000, 7500))),
                // Left the day before: not counted.
                span(s - 9000, Some((s - 10, 8990))),
                // Joins the next day: not counted.
                span(day.end_unix_ms() + 1, None),
                // Joins late and stays past midnight: counts, ends no listening today.
                span(day.end_unix_ms() - 10, Some((day.end_unix_ms() + 10, 20))),
            ],
        );
        // At 00:00: 2 open; +1 (1000) = 3; +1 (1500) = 4; -1 (2000) = 3; ...
        assert_eq!(stats.peak_listeners, 4);
        assert_eq!(stats.listener_ms, 6000 + 1000 + 7500);
        assert_eq!(stats.day, "1970-01-11");
    }

    #[test]
    fn a_session_given_twice_counts_once_and_a_leave_before_its_join_never() {
        let day = Day::from_days_since_epoch(3);
        let s = day.start_unix_ms();
        let stats = DayStats::compute(
            "lofi",
            day,
            [],
            [
                span(s + 10, Some((s + 20, 10))),
                span(s + 10, Some((s + 20, 10))),
                span(s + 50, Some((s + 40, 99))),
            ],
        );
        assert_eq!(stats.peak_listeners, 1);
        assert_eq!(stats.listener_ms, 10);
    }

    #[test]
    fn top_tracks_rank_by_plays_then_listener_time_then_id() {
        let day = Day::from_days_since_epoch(5);
        let s = day.start_unix_ms();
        let play = |ms: u64, track: &str, listener_ms: u64| PlayTotal {
            play_id: id_at(s + ms),
            track_id: track.into(),
            title: format!("Title {track}"),
            listener_ms,
        };
        let stats = DayStats::compute(
            "lofi",
            day,
            [
                play(1, "b", 10),
                play(2, "a", 5),
                play(3, "c", 1),
                play(4, "c", 1),
                play(5, "d", 10),
                // The day before: not a play of this day.
                PlayTotal {
                    play_id: id_at(s - 1),
                    ..play(0, "z", 0)
                },
            ],
            [],
        );
        assert_eq!(stats.plays, 5);
        let order: Vec<&str> = stats
            .top_tracks
            .iter()
            .map(|total| total.track_id.as_str())
            .collect();
        assert_eq!(order, ["c", "b", "d", "a"]);
        assert_eq!(stats.top_tracks[0].plays, 2);
        assert_eq!(stats.top_tracks[0].title, "Title c");
        assert_eq!(stats.peak_listeners, 0);
    }
}
