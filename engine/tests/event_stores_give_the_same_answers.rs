//! One realistic station day written to both event stores, SQLite and
//! ScyllaDB, in the same batches (some twice, some out of order): every read
//! gives the same answer from both. The SQLite half runs in every `cargo
//! test` and checks the answers against figures worked out by hand; the
//! ScyllaDB half needs a CQL node (`scripts/cassandra.sh run -- ...`).

// The helpers outside the tests fail the test when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cql;

use sonicforge_engine::events::{
    ClientHash, Day, DayStats, EndReason, EventId, EventKind, EventReader, EventSink, Month,
    PlayEvent, SqliteSink, TrackSource, Transport,
};
use uuid::{Timestamp, Uuid};

const TEST: &str = "event_stores_give_the_same_answers";
const STATION: &str = "lofi";
/// 100 ns ticks from 1582-10-15 to the Unix epoch.
const TICKS_BEFORE_UNIX_EPOCH: u64 = 0x01B2_1DD2_1381_4000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// The day under test: Sunday 2025-03-09 (UTC).
fn the_day() -> Day {
    "2025-03-09".parse().unwrap()
}

/// An event at `unix_ms`, as a process with a fixed node id would take it.
fn at(unix_ms: u64, kind: EventKind) -> PlayEvent {
    let ticks = TICKS_BEFORE_UNIX_EPOCH + unix_ms * 10_000;
    let uuid = Uuid::new_v1(
        Timestamp::from_gregorian_time(ticks, 0),
        &[0x01, 0, 0, 0, 0, 0x42],
    );
    PlayEvent::with_id(EventId::try_from(uuid).unwrap(), STATION, kind)
}

fn client(n: u8) -> ClientHash {
    ClientHash::from_address(std::net::Ipv4Addr::new(192, 0, 2, n).into(), b"test salt")
}

/// Builds the day's events in the order the station emits them.
struct Day0 {
    events: Vec<PlayEvent>,
}

impl Day0 {
    fn push(&mut self, unix_ms: u64, kind: EventKind) -> EventId {
        let event = at(unix_ms, kind);
        let id = event.id;
        self.events.push(event);
        id
    }

    fn start(&mut self, unix_ms: u64, track: &str) -> EventId {
        self.push(
            unix_ms,
            EventKind::TrackStarted {
                track_id: track.into(),
                title: format!("Track {track}"),
                source: TrackSource::Prompt(format!("prompt of {track}")),
                generator: "procedural".into(),
                duration_ms: 240_000,
                mastering: None,
            },
        )
    }

    fn end(
        &mut self,
        unix_ms: u64,
        play: EventId,
        track: &str,
        reason: EndReason,
        listener_ms: u64,
    ) {
        self.push(
            unix_ms,
            EventKind::TrackEnded {
                track_id: track.into(),
                played_ms: unix_ms - play.unix_ms(),
                reason,
                play_id: Some(play),
                listener_ms,
            },
        );
    }

    fn join(&mut self, unix_ms: u64, session: &str, who: u8, transport: Transport) -> EventId {
        self.push(
            unix_ms,
            EventKind::ListenerJoined {
                session_id: session.into(),
                transport,
                rendition_kbps: 128,
                client_hash: client(who),
                user_agent_family: "firefox".into(),
            },
        )
    }

    fn leave(
        &mut self,
        unix_ms: u64,
        joined: EventId,
        session: &str,
        who: u8,
        transport: Transport,
    ) {
        self.push(
            unix_ms,
            EventKind::ListenerLeft {
                session_id: session.into(),
                transport,
                rendition_kbps: 128,
                listened_ms: unix_ms - joined.unix_ms(),
                disconnect_reason: "client_closed".into(),
                joined_id: Some(joined),
                client_hash: Some(client(who)),
            },
        );
    }
}

/// From 23:00 the evening before to 00:15 the morning after: plays crossing
/// midnight both ways, listeners joining and leaving across midnight, a skip,
/// a playlist swap, an actor restart, a crash (a play and three sessions never
/// closed) and a restart whose session ids start again from 1.
fn realistic_day() -> Vec<PlayEvent> {
    use EndReason::{Finished, Skipped, Swapped};
    use Transport::{Http, Websocket};
    let t0 = the_day().start_unix_ms();
    let eve = t0 - HOUR;
    let mut day = Day0 { events: Vec::new() };
    day.push(eve, EventKind::StationStarted);
    let p1 = day.start(eve + 1_000, "a");
    let s1 = day.join(eve + 10 * MINUTE, "1", 1, Websocket);
    let _s2 = day.join(eve + 30 * MINUTE, "2", 2, Http);
    day.end(eve + 58 * MINUTE, p1, "a", Finished, 3_000_000);
    let p2 = day.start(eve + 58 * MINUTE + 1, "b");
    day.end(t0 + 5 * MINUTE, p2, "b", Finished, 1_400_000);
    let p3 = day.start(t0 + 5 * MINUTE + 1, "a");
    day.leave(t0 + 20 * MINUTE, s1, "1", 1, Websocket);
    let _s3 = day.join(t0 + 25 * MINUTE, "3", 1, Websocket);
    day.push(
        t0 + 30 * MINUTE,
        EventKind::Skip {
            track_id: "a".into(),
        },
    );
    day.end(t0 + 30 * MINUTE + 1, p3, "a", Skipped, 2_500_000);
    let p4 = day.start(t0 + 30 * MINUTE + 2, "c");
    day.push(
        t0 + HOUR,
        EventKind::PlaylistSwapped {
            from: "day".into(),
            to: "night".into(),
        },
    );
    day.end(t0 + HOUR + 1, p4, "c", Swapped, 3_600_000);
    let p5 = day.start(t0 + HOUR + 2, "d");
    let _s4 = day.join(t0 + HOUR + 10 * MINUTE, "4", 3, Http);
    day.push(
        t0 + HOUR + 20 * MINUTE,
        EventKind::ActorRestarted {
            actor: "encoder".into(),
            reason: "panicked".into(),
        },
    );
    day.end(t0 + 2 * HOUR, p5, "d", Finished, 9_000_000);
    let _p6 = day.start(t0 + 2 * HOUR + 1, "a");
    // The engine dies at 02:30: p6 and sessions 2, 3 and 4 are never closed.
    day.push(t0 + 3 * HOUR, EventKind::StationStarted);
    let p7 = day.start(t0 + 3 * HOUR + 1_000, "b");
    let s5 = day.join(t0 + 3 * HOUR + 5 * MINUTE, "1", 2, Websocket);
    day.end(t0 + 3 * HOUR + 10 * MINUTE, p7, "b", Finished, 600_000);
    let p8 = day.start(t0 + 3 * HOUR + 10 * MINUTE + 1, "c");
    day.leave(t0 + 3 * HOUR + 20 * MINUTE, s5, "1", 2, Websocket);
    let s6 = day.join(t0 + 23 * HOUR + 50 * MINUTE, "2", 4, Http);
    day.end(t0 + 23 * HOUR + 55 * MINUTE, p8, "c", Finished, 1_000);
    let _p9 = day.start(t0 + 23 * HOUR + 55 * MINUTE + 1, "a");
    day.leave(t0 + 24 * HOUR + 10 * MINUTE, s6, "2", 4, Http);
    day.events
}

/// Writes the day in batches of five, the second batch twice and the last
/// two in reverse order (a play's end before its start).
fn write_day(sink: &mut dyn EventSink, events: &[PlayEvent]) {
    let batches: Vec<&[PlayEvent]> = events.chunks(5).collect();
    let (last, rest) = batches.split_last().unwrap();
    let (second_last, rest) = rest.split_last().unwrap();
    for (index, batch) in rest.iter().enumerate() {
        sink.write_batch(batch).unwrap();
        if index == 1 {
            sink.write_batch(batch).unwrap();
        }
    }
    sink.write_batch(last).unwrap();
    sink.write_batch(second_last).unwrap();
}

/// Every read the stores offer, over the three days.
#[derive(Debug, PartialEq)]
struct Answers {
    now_playing: Option<sonicforge_engine::events::Play>,
    history_all: Vec<sonicforge_engine::events::Play>,
    history_pages: Vec<Vec<sonicforge_engine::events::Play>>,
    stats: Vec<DayStats>,
    track_plays: Vec<sonicforge_engine::events::TrackPlays>,
    open_sessions: Vec<sonicforge_engine::events::ListenerSession>,
    listener_sessions: Vec<Vec<sonicforge_engine::events::ListenerSession>>,
    recent_events: Vec<PlayEvent>,
    other_station: (Option<sonicforge_engine::events::Play>, usize, DayStats),
}

fn answers(reader: &dyn EventReader) -> Answers {
    let day = the_day();
    let mut history_pages = Vec::new();
    let mut before = None;
    loop {
        let page = reader.history(STATION, 4, before).unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|play| play.started_at_unix_ms);
        history_pages.push(page);
        assert!(history_pages.len() < 10, "paging does not end");
    }
    let march: Month = "2025-03".parse().unwrap();
    Answers {
        now_playing: reader.now_playing(STATION).unwrap(),
        history_all: reader.history(STATION, 100, None).unwrap(),
        history_pages,
        stats: [day.previous().unwrap(), day, day.next(), day.next().next()]
            .into_iter()
            .map(|day| reader.day_stats(STATION, day).unwrap())
            .collect(),
        track_plays: ["a", "b", "c", "d", "z"]
            .into_iter()
            .map(|track| reader.track_plays(track, march).unwrap())
            .chain([reader.track_plays("a", "2025-04".parse().unwrap()).unwrap()])
            .collect(),
        open_sessions: reader.open_sessions(STATION).unwrap(),
        listener_sessions: (1..=5)
            .map(|who| reader.listener_sessions(&client(who), march).unwrap())
            .collect(),
        recent_events: reader.recent_events(STATION, 7).unwrap(),
        other_station: (
            reader.now_playing("jazz").unwrap(),
            reader.history("jazz", 10, None).unwrap().len(),
            reader.day_stats("jazz", day).unwrap(),
        ),
    }
}

/// The answers SQLite gives, checked against the figures worked out by hand.
fn sqlite_answers(events: &[PlayEvent]) -> Answers {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SqliteSink::open(dir.path().join("events.db")).unwrap();
    write_day(&mut sink, events);
    let answers = answers(&sink);
    let t0 = the_day().start_unix_ms();

    let now = answers.now_playing.as_ref().unwrap();
    assert_eq!(
        (now.track_id.as_str(), now.started_at_unix_ms),
        ("a", t0 + 23 * HOUR + 55 * MINUTE + 1)
    );
    let tracks: Vec<&str> = answers
        .history_all
        .iter()
        .map(|play| play.track_id.as_str())
        .collect();
    assert_eq!(tracks, ["a", "c", "b", "a", "d", "c", "a", "b", "a"]);
    // p6 was cut off by the crash: no end.
    assert_eq!(answers.history_all[3].ended, None);
    assert_eq!(
        answers.history_all[5]
            .ended
            .map(|end| (end.reason, end.listener_ms)),
        Some((EndReason::Swapped, 3_600_000))
    );
    let pages: Vec<usize> = answers.history_pages.iter().map(Vec::len).collect();
    assert_eq!(pages, [4, 4, 1]);
    assert_eq!(answers.history_pages.concat(), answers.history_all);

    let [eve, day, morning, later] = &answers.stats[..] else {
        panic!("four days of stats");
    };
    // The evening before: two plays, two listeners joined, nobody left.
    assert_eq!((eve.plays, eve.peak_listeners, eve.listener_ms), (2, 2, 0));
    // The day: sessions 1 (70 min, joined the evening before) and 5 (15 min)
    // ended; at 00:00 sessions 1 and 2 were open; 3, 4, 5 and 6 joined, 1 and
    // 5 left; 2, 3 and 4 were never closed: peak 4.
    assert_eq!(day.plays, 7);
    assert_eq!(day.listener_ms, 70 * MINUTE + 15 * MINUTE);
    assert_eq!(day.peak_listeners, 4);
    assert!((day.listener_hours - 85.0 / 60.0).abs() < 1e-12);
    let top: Vec<(&str, u64, u64)> = day
        .top_tracks
        .iter()
        .map(|total| (total.track_id.as_str(), total.plays, total.listener_ms))
        .collect();
    assert_eq!(
        top,
        [
            ("a", 3, 2_500_000),
            ("c", 2, 3_601_000),
            ("d", 1, 9_000_000),
            ("b", 1, 600_000)
        ]
    );
    assert_eq!(day.top_tracks[0].title, "Track a");
    // The morning after: 2, 3, 4 (still open) and 6 at 00:00; 6 left after 20 min.
    assert_eq!(
        (morning.plays, morning.peak_listeners, morning.listener_ms),
        (0, 4, 20 * MINUTE)
    );
    // Two days on, the three sessions never closed still count as connected.
    assert_eq!(
        (later.plays, later.peak_listeners, later.listener_ms),
        (0, 3, 0)
    );

    let a = &answers.track_plays[0];
    assert_eq!(
        (a.total_plays, a.total_listener_ms),
        (4, 3_000_000 + 2_500_000)
    );
    assert_eq!(answers.track_plays[4].total_plays, 0, "no track z");
    assert_eq!(answers.track_plays[5].total_plays, 0, "no plays in April");

    let open: Vec<&str> = answers
        .open_sessions
        .iter()
        .map(|session| session.session_id.as_str())
        .collect();
    assert_eq!(open, ["4", "3", "2"]);
    assert!(
        answers
            .open_sessions
            .iter()
            .all(|session| session.left.is_none())
    );
    let first_listener: Vec<(&str, Option<u64>)> = answers.listener_sessions[0]
        .iter()
        .map(|session| {
            (
                session.session_id.as_str(),
                session.left.as_ref().map(|left| left.listened_ms),
            )
        })
        .collect();
    assert_eq!(first_listener, [("3", None), ("1", Some(70 * MINUTE))]);
    assert!(answers.listener_sessions[4].is_empty());
    assert_eq!(answers.recent_events.len(), 7);
    assert_eq!(answers.recent_events[0], events[events.len() - 1]);
    assert_eq!(answers.other_station.0, None);
    assert_eq!(answers.other_station.1, 0);
    assert_eq!(answers.other_station.2.peak_listeners, 0);
    answers
}

#[test]
fn sqlite_answers_the_realistic_day_as_worked_out_by_hand() {
    sqlite_answers(&realistic_day());
}

#[test]
fn scylladb_and_sqlite_give_the_same_answers_for_the_same_day() {
    let Some(nodes) = cql::nodes(TEST) else {
        return;
    };
    let events = realistic_day();
    let expected = sqlite_answers(&events);
    let (keyspace, store) = cql::migrated_store(&nodes, "agree");
    write_day(&mut store.sink(), &events);
    let answers = answers(&store);
    // Field by field first, for a readable failure.
    assert_eq!(answers.now_playing, expected.now_playing);
    assert_eq!(answers.history_all, expected.history_all);
    assert_eq!(answers.history_pages, expected.history_pages);
    assert_eq!(answers.stats, expected.stats);
    assert_eq!(answers.track_plays, expected.track_plays);
    assert_eq!(answers.open_sessions, expected.open_sessions);
    assert_eq!(answers.listener_sessions, expected.listener_sessions);
    assert_eq!(answers.recent_events, expected.recent_events);
    assert_eq!(answers, expected);
    cql::drop_keyspace(&nodes, &keyspace);
}
