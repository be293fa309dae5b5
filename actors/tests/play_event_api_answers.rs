//! The play-event read API answers from the store while the station plays: now
//! playing, history with paging, the day's figures and a track's plays; bad queries
//! get a 400 naming the field, unknown stations a 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

fn json(engine: &common::Engine, path: &str) -> (u16, Value) {
    let (status, body) = engine.get(path);
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("{path} answered {status} with no JSON ({error}): {body}"));
    (status, value)
}

#[test]
fn history_stats_and_track_plays_follow_the_station() {
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    engine.wait_ready();

    // Tracks are 9 s long: within 40 s at least two have started and one has ended.
    let deadline = Instant::now() + Duration::from_secs(40);
    let plays = loop {
        let (status, page) = json(&engine, "/api/stations/main/history?limit=10");
        assert_eq!(status, 200, "{page}");
        let plays = page["plays"].as_array().unwrap().clone();
        if plays.len() >= 2 {
            break plays;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than two plays stored after 40 s: {page}; log:\n{}",
            engine.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Newest first, the older one ended.
    let started = |play: &Value| play["started_at_unix_ms"].as_u64().unwrap();
    assert!(started(&plays[0]) >= started(&plays[1]));
    assert!(!plays[1]["ended"].is_null(), "{plays:?}");

    let (status, now) = json(&engine, "/api/stations/main/now-playing");
    assert_eq!(status, 200);
    assert_eq!(now["station"], "main");
    assert!(!now["now_playing"].is_null(), "{now}");
    assert!(now["now_playing"]["ended"].is_null(), "{now}");

    // Paging back from the newest play leaves it out.
    let before = started(&plays[0]);
    let (status, older) = json(
        &engine,
        &format!("/api/stations/main/history?limit=1&before={before}"),
    );
    assert_eq!(status, 200);
    let older = older["plays"].as_array().unwrap();
    assert_eq!(older.len(), 1);
    assert!(started(&older[0]) < before);

    let (status, stats) = json(&engine, "/api/stations/main/stats");
    assert_eq!(status, 200, "{stats}");
    assert!(stats["plays"].as_u64().unwrap() >= 2, "{stats}");
    assert!(!stats["top_tracks"].as_array().unwrap().is_empty());
    let day = stats["day"].as_str().unwrap().to_string();
    let (status, same_day) = json(&engine, &format!("/api/stations/main/stats?day={day}"));
    assert_eq!(status, 200);
    assert_eq!(same_day["day"], stats["day"]);

    let track = plays[1]["track_id"].as_str().unwrap();
    let month = &day[..7];
    let (status, track_plays) = json(&engine, &format!("/api/tracks/{track}/plays?month={month}"));
    assert_eq!(status, 200, "{track_plays}");
    assert!(
        track_plays["total_plays"].as_u64().unwrap() >= 1,
        "{track_plays}"
    );
    assert_eq!(track_plays["plays"][0]["track_id"], track);
    let (status, empty) = json(&engine, &format!("/api/tracks/{track}/plays?month=1999-01"));
    assert_eq!(status, 200);
    assert_eq!(empty["total_plays"], 0);
}

#[test]
fn bad_queries_and_unknown_stations_are_refused_clearly() {
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    // Malformed: 400. Well-formed but no such day: 422.
    for (path, field, expected) in [
        ("/api/stations/main/history?limit=0", "limit", 400),
        ("/api/stations/main/history?limit=100000", "limit", 400),
        ("/api/stations/main/stats?day=2026-13-01", "day", 422),
        ("/api/stations/main/stats?day=yesterday", "day", 400),
        ("/api/tracks/some-track/plays?month=2026-1", "month", 400),
        ("/api/tracks/some-track/plays?month=1969-12", "month", 422),
    ] {
        let (status, answer) = json(&engine, path);
        assert_eq!(status, expected, "{path}: {answer}");
        assert_eq!(answer["detail"]["field"], field, "{path}: {answer}");
    }
    for path in [
        "/api/stations/main/history?limit=ten",
        "/api/stations/main/history?colour=red",
    ] {
        let (status, answer) = json(&engine, path);
        assert_eq!(status, 400, "{path}: {answer}");
    }
    for path in [
        "/api/stations/nope/now-playing",
        "/api/stations/nope/history",
        "/api/stations/nope/stats",
    ] {
        let (status, answer) = json(&engine, path);
        assert_eq!(status, 404, "{path}: {answer}");
    }
}
