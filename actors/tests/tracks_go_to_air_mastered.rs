//! Every generated track is mastered before it goes on air: the station's API shows
//! the mastering statistics of the track on air, at the station's own target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[test]
fn the_track_on_air_was_mastered_to_the_station_target() {
    let config = format!(
        "[mastering]\nbackend = \"cpu\"\n{}",
        common::SHORT_TRACKS_CONFIG
            .replace("seed = 42", "seed = 42\nmastering_target_lufs = -16.0")
    );
    let engine = common::Engine::start(&config);
    engine.wait_ready();
    let (status, body) = engine.get("/api/stations/main");
    assert_eq!(status, 200, "{body}");
    let station: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mastering = &station["now_playing"]["mastering"];
    let output_lufs = mastering["output_lufs"].as_f64().expect("mastering stats");
    assert!((output_lufs + 16.0).abs() < 0.5, "{mastering}");
    assert!(
        mastering["true_peak_dbtp"].as_f64().unwrap() <= -1.0,
        "{mastering}"
    );
    assert_eq!(mastering["backend"], "cpu");
    assert!(engine.metric("sonicforge_mastering_seconds_count{") >= 1.0);
}
