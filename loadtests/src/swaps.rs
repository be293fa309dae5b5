//! `swaps`: how long a playlist swap on air takes to be heard. One WebSocket listener
//! listens while the tool swaps the station between two playlists it creates, `now`,
//! `--count` times; each swap is timed from just before its request is sent to the
//! first audio packet after the now_playing message that names a track of the new
//! playlist. Gaps and discontinuities in the listener's packets are counted too.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::chaos::engine_api::Engine;
use crate::target::TargetUrl;
use crate::wire::parse_packet_header;

/// The two playlists swapped between.
const PLAYLISTS: [(&str, &str); 2] = [
    ("swap-test-a", "synthwave driving 100 bpm E minor"),
    ("swap-test-b", "ambient calm 70 bpm C major"),
];

#[derive(Debug, clap::Args)]
pub struct SwapsArgs {
    /// Base URL of the engine; loopback only.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Station id.
    #[arg(long, default_value = "main")]
    pub station: String,
    /// Swaps to time.
    #[arg(long, default_value_t = 20)]
    pub count: u32,
    /// Seconds between swaps: time for the engine to render the other playlist's
    /// first track ahead again.
    #[arg(long, default_value_t = 8)]
    pub interval_secs: u64,
    /// Length of the test playlists' tracks in seconds.
    #[arg(long, default_value_t = 30)]
    pub track_seconds: u32,
    /// Bearer token with role operator (`sonicforge token --role operator`).
    #[arg(long, env = "SONICFORGE_TOKEN")]
    pub token: Option<String>,
    /// Write the measurements as JSON here.
    #[arg(long)]
    pub report: Option<String>,
}

/// One timed swap.
#[derive(Debug, Clone, serde::Serialize)]
struct Swap {
    to: String,
    /// The engine had the new playlist's first track ready.
    first_track_ready: bool,
    /// From the request to the first packet of the new track.
    heard_ms: f64,
    /// From the request to the swap's answer.
    answered_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    station: String,
    swaps: Vec<Swap>,
    heard_p50_ms: f64,
    heard_p99_ms: f64,
    heard_max_ms: f64,
    not_ready: usize,
    gaps: u64,
    discontinuities: u64,
}

/// Sends one JSON request; returns the status and the JSON body (`Null` when the
/// body is not JSON).
async fn request(
    engine: &Engine,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = engine.send_json(method, path, body).await?;
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response.status, json))
}

pub async fn run(args: &SwapsArgs) -> anyhow::Result<()> {
    let target = TargetUrl::parse(&args.url)?;
    let api = Engine {
        addr: target.resolve().await?,
        authority: target.authority(),
        token: args.token.clone(),
    };
    for (name, prompt) in PLAYLISTS {
        let body = format!(
            r#"{{"name": "{name}", "items": [{{"prompt": "{prompt}", "seconds": {}}}]}}"#,
            args.track_seconds
        );
        let (status, answer) = request(&api, "POST", "/api/playlists", &body).await?;
        let status = if status == 409 {
            request(&api, "PUT", &format!("/api/playlists/{name}"), &body)
                .await?
                .0
        } else {
            status
        };
        if !(200..300).contains(&status) {
            bail!("cannot create playlist {name}: HTTP {status} {answer}");
        }
    }

    let url = format!(
        "ws://{}/stations/{}/ws{}",
        target.authority(),
        args.station,
        args.token
            .as_ref()
            .map(|token| format!("?token={token}"))
            .unwrap_or_default()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("cannot listen on {url}"))?;
    let mut previous_pts: Option<u64> = None;
    let (mut gaps, mut discontinuities) = (0u64, 0u64);
    let mut swaps = Vec::new();
    let mut next_swap = Instant::now() + Duration::from_secs(args.interval_secs);
    let path = format!("/api/stations/{}/playlist", args.station);

    for index in 0..args.count {
        let to = PLAYLISTS[index as usize % 2].0;
        // Listen until the swap is due.
        let mut pending: Option<(Instant, tokio::task::JoinHandle<_>)> = None;
        let mut announced = false;
        let mut answered: Option<(Instant, bool)> = None;
        loop {
            if pending.is_none() && Instant::now() >= next_swap {
                let body = format!(r#"{{"playlist": "{to}", "when": "now"}}"#);
                let api = api.clone();
                let path = path.clone();
                let requested = Instant::now();
                pending = Some((
                    requested,
                    tokio::spawn(async move { request(&api, "PUT", &path, &body).await }),
                ));
            }
            if let Some((_, handle)) = &mut pending
                && answered.is_none()
                && handle.is_finished()
            {
                let (status, answer) = handle.await??;
                if status != 200 {
                    bail!("swap to {to}: HTTP {status} {answer}");
                }
                let ready = answer["first_track_ready"].as_bool().unwrap_or(false);
                answered = Some((Instant::now(), ready));
            }
            let message = tokio::time::timeout(Duration::from_millis(50), socket.next()).await;
            let Ok(message) = message else { continue };
            let message = message
                .context("the listener was disconnected")?
                .context("the listener's socket failed")?;
            match message {
                Message::Binary(bytes) => {
                    let header = parse_packet_header(&bytes)?;
                    if header.is_discontinuity() {
                        discontinuities += 1;
                    }
                    if let Some(previous) = previous_pts
                        && header.pts != previous + 960
                    {
                        gaps += 1;
                    }
                    previous_pts = Some(header.pts);
                    if announced && let Some((requested, _)) = &pending {
                        let heard = requested.elapsed();
                        let (requested, handle) = pending.take().context("a swap in flight")?;
                        let (answered_at, first_track_ready) = match answered {
                            Some(answered) => answered,
                            None => {
                                let (_, answer) = handle.await??;
                                (
                                    Instant::now(),
                                    answer["first_track_ready"].as_bool().unwrap_or(false),
                                )
                            }
                        };
                        let swap = Swap {
                            to: to.to_string(),
                            first_track_ready,
                            heard_ms: heard.as_secs_f64() * 1000.0,
                            answered_ms: answered_at
                                .saturating_duration_since(requested)
                                .as_secs_f64()
                                * 1000.0,
                        };
                        println!(
                            "swap {:>2} to {}: heard after {:7.1} ms (answer {:6.1} ms, first track ready: {})",
                            index + 1,
                            swap.to,
                            swap.heard_ms,
                            swap.answered_ms,
                            swap.first_track_ready
                        );
                        swaps.push(swap);
                        next_swap = Instant::now() + Duration::from_secs(args.interval_secs);
                        break;
                    }
                }
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if pending.is_some()
                        && value["type"] == "now_playing"
                        && value["now_playing"]["playlist"] == to
                    {
                        announced = true;
                    }
                }
                _ => {}
            }
            if let Some((requested, _)) = &pending
                && requested.elapsed() > Duration::from_secs(60)
            {
                bail!("swap to {to} not heard within 60 s");
            }
        }
    }

    let mut heard: Vec<f64> = swaps.iter().map(|s| s.heard_ms).collect();
    heard.sort_by(f64::total_cmp);
    let report = Report {
        station: args.station.clone(),
        heard_p50_ms: percentile(&heard, 50.0),
        heard_p99_ms: percentile(&heard, 99.0),
        heard_max_ms: heard.last().copied().unwrap_or(0.0),
        not_ready: swaps.iter().filter(|s| !s.first_track_ready).count(),
        gaps,
        discontinuities,
        swaps,
    };
    println!(
        "{} swaps: heard p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; first track not ready {} times; {} gaps, {} discontinuities",
        report.swaps.len(),
        report.heard_p50_ms,
        report.heard_p99_ms,
        report.heard_max_ms,
        report.not_ready,
        report.gaps,
        report.discontinuities
    );
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {path}"))?;
        println!("report written to {path}");
    }
    Ok(())
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], percent: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 10.0);
        assert_eq!(percentile(&values, 99.0), 20.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
