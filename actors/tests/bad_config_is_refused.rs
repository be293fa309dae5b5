//! Bad configuration files are refused with errors that name the file and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn check_config(text: &str) -> (bool, String) {
    let dir = common::TempDir::new();
    let path = dir.path.join("station.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
[[stations]]
id = "main"
name = "Main"
playlist = ["lofi chill 80 bpm A minor"]
"#;

#[test]
fn good_config_passes() {
    let (ok, stderr) = check_config(GOOD);
    assert!(ok, "{stderr}");
}

#[test]
fn unknown_key_is_refused() {
    let (ok, stderr) =
        check_config(&GOOD.replace("name = \"Main\"", "name = \"Main\"\nvolume = 11"));
    assert!(!ok);
    assert!(stderr.contains("station.toml"), "{stderr}");
    assert!(stderr.contains("volume"), "{stderr}");
}

#[test]
fn wrong_type_is_refused() {
    let (ok, stderr) = check_config(&format!("[listeners]\npre_roll_ms = \"short\"\n{GOOD}"));
    assert!(!ok);
    assert!(stderr.contains("pre_roll_ms"), "{stderr}");
}

#[test]
fn bad_bitrate_is_refused() {
    let (ok, stderr) = check_config(&GOOD.replace(
        "name = \"Main\"",
        "name = \"Main\"\nrenditions_kbps = [1000]",
    ));
    assert!(!ok);
    assert!(stderr.contains("renditions_kbps[0]"), "{stderr}");
    assert!(stderr.contains("6..=510"), "{stderr}");
}

#[test]
fn missing_file_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
        .args(["check-config", "--config", "/nonexistent/sonicforge.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/sonicforge.toml"));
}

#[test]
fn shipped_config_passes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/sonicforge.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
        .args(["check-config", "--config", path])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
