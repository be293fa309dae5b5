//! Stalled listeners against the server: once a second during a run with stalled
//! listeners (or a storm) the swarm reads the server's resident memory and, from its
//! `/metrics`, how many listeners it has closed as `stalled` or `too_slow` per
//! transport. With the moment each stalled listener stopped reading, that gives the
//! server's memory before the stalls, at its peak and once every stalled listener was
//! closed, and the time from stall to close per transport.
//!
//! The server counts closes, not which listener it closed: the k-th close of a
//! transport is matched with the k-th stall of that transport. That holds when only
//! stalled listeners are closed (no slow ones in the run) and is as fine as the
//! sampling (1 s).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::listener::Transport;
use crate::report::{Distribution, ReportError, histogram, micros};

/// How often the server is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The counter whose `stalled` and `too_slow` series count the server's closes.
const DISCONNECTS: &str = "sonicforge_listener_disconnects_total";

/// One reading of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerSample {
    pub at: Instant,
    pub rss_bytes: u64,
    /// Listeners closed as `stalled` or `too_slow` so far, by transport (ws, http);
    /// `None` when `/metrics` could not be read (or the target is a peer).
    pub closed: Option<[u64; 2]>,
}

/// Sums the `stalled` and `too_slow` disconnects of `station` per transport (ws, http)
/// from parsed `/metrics` series.
pub fn closes_by_transport(metrics: &BTreeMap<String, f64>, station: &str) -> [u64; 2] {
    let mut closed = [0u64; 2];
    for (series, value) in metrics {
        let Some(labels) = series
            .strip_prefix(DISCONNECTS)
            .and_then(|rest| rest.strip_prefix('{'))
            .and_then(|rest| rest.strip_suffix('}'))
        else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.trim(), value.trim().trim_matches('"')))
            })
            .collect();
        if labels.get("station") != Some(&station)
            || !matches!(labels.get("reason"), Some(&("stalled" | "too_slow")))
        {
            continue;
        }
        let transport = match labels.get("transport") {
            Some(&"websocket") => Transport::Ws,
            Some(&"http") => Transport::Http,
            _ => continue,
        };
        closed[transport as usize] += value.max(0.0).round() as u64;
    }
    closed
}

/// Stalled listeners of one transport.
#[derive(Debug, Clone, Serialize)]
pub struct StallTransportReport {
    pub transport: String,
    /// Listeners that stopped reading.
    pub stalled: u64,
    /// Listeners of this transport the server closed as `stalled` or `too_slow` during
    /// the run (from `/metrics`).
    pub closed_by_server: Option<u64>,
    /// Stall to the server's close, seconds (the k-th close matched with the k-th stall).
    pub server_close_s: Option<Distribution>,
    /// Stall to the moment the listener's own socket reported the connection gone
    /// (the kernel's close, which may come after the server's session ended).
    pub client_noticed_s: Option<Distribution>,
}

/// The server's resident memory around the stalls, MiB; times from the run's start.
#[derive(Debug, Clone, Serialize)]
pub struct StallMemoryReport {
    /// The first listener stopped reading.
    pub first_stall_secs: f64,
    /// The last sample at or before the first stall.
    pub before_stalls_mib: f64,
    /// Highest sample from the first stall until every stalled listener was closed
    /// (or the end).
    pub peak_mib: f64,
    pub peak_at_secs: f64,
    /// First sample at which the server had closed as many listeners of each transport
    /// as stalled.
    pub all_closed_at_secs: Option<f64>,
    pub after_closed_mib: Option<f64>,
    pub end_mib: f64,
    /// (peak - before the stalls) per stalled listener, KiB.
    pub peak_growth_per_stalled_kib: Option<f64>,
}

/// One sample as it goes into the JSON report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SamplePoint {
    pub at_secs: f64,
    pub rss_mib: f64,
    pub closed_ws: Option<u64>,
    pub closed_http: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    pub transports: Vec<StallTransportReport>,
    pub memory: Option<StallMemoryReport>,
    pub samples: Vec<SamplePoint>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn secs_since(start: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(start).as_secs_f64()
}

/// Builds the stall report. `stalls` holds when each stalled listener stopped reading
/// and `client_drops` the stall-to-noticed durations, both by transport (ws, http);
/// `samples` are the server readings in time order.
pub fn stall_report(
    start: Instant,
    stalls: &[Vec<Instant>; 2],
    client_drops: &[Vec<Duration>; 2],
    samples: &[ServerSample],
) -> Result<StallReport, ReportError> {
    let baseline = samples.first().and_then(|sample| sample.closed);
    let mut transports = Vec::new();
    // When each transport had closed as many as stalled, if it did.
    let mut all_closed: [Option<Instant>; 2] = [None, None];
    for transport in Transport::ALL {
        let index = transport as usize;
        let mut stalled = stalls[index].clone();
        stalled.sort_unstable();
        let mut server = histogram()?;
        let mut closed_by_server = None;
        if let Some(baseline) = baseline {
            let closes: Vec<(Instant, u64)> = samples
                .iter()
                .filter_map(|sample| {
                    sample
                        .closed
                        .map(|closed| (sample.at, closed[index].saturating_sub(baseline[index])))
                })
                .collect();
            let total = closes.last().map_or(0, |&(_, count)| count);
            closed_by_server = Some(total);
            for (k, stall) in stalled.iter().enumerate() {
                let wanted = k as u64 + 1;
                let Some(&(closed_at, _)) = closes.iter().find(|&&(_, count)| count >= wanted)
                else {
                    break;
                };
                server.saturating_record(micros(closed_at.saturating_duration_since(*stall)));
            }
            if !stalled.is_empty() {
                all_closed[index] = closes
                    .iter()
                    .find(|&&(_, count)| count >= stalled.len() as u64)
                    .map(|&(at, _)| at);
            }
        }
        let mut client = histogram()?;
        for drop in &client_drops[index] {
            client.saturating_record(micros(*drop));
        }
        if stalled.is_empty() && client.is_empty() {
            continue;
        }
        transports.push(StallTransportReport {
            transport: transport.label().to_owned(),
            stalled: stalled.len() as u64,
            closed_by_server,
            server_close_s: Distribution::of(&server, 1e-6),
            client_noticed_s: Distribution::of(&client, 1e-6),
        });
    }

    let first_stall = stalls.iter().flatten().min().copied();
    let memory = match (first_stall, samples.last()) {
        (Some(first_stall), Some(last)) => {
            let before = samples
                .iter()
                .take_while(|sample| sample.at <= first_stall)
                .last()
                .unwrap_or(&samples[0]);
            let every_transport_closed = Transport::ALL.iter().all(|transport| {
                stalls[*transport as usize].is_empty() || all_closed[*transport as usize].is_some()
            });
            let all_closed_at = every_transport_closed
                .then(|| all_closed.iter().flatten().max().copied())
                .flatten();
            let peak = samples
                .iter()
                .filter(|sample| {
                    sample.at >= first_stall && all_closed_at.is_none_or(|at| sample.at <= at)
                })
                .max_by_key(|sample| sample.rss_bytes)
                .unwrap_or(before);
            let after_closed = all_closed_at
                .and_then(|at| samples.iter().find(|sample| sample.at >= at))
                .map(|sample| mib(sample.rss_bytes));
            let stalled_count: usize = stalls.iter().map(Vec::len).sum();
            Some(StallMemoryReport {
                first_stall_secs: secs_since(start, first_stall),
                before_stalls_mib: mib(before.rss_bytes),
                peak_mib: mib(peak.rss_bytes),
                peak_at_secs: secs_since(start, peak.at),
                all_closed_at_secs: all_closed_at.map(|at| secs_since(start, at)),
                after_closed_mib: after_closed,
                end_mib: mib(last.rss_bytes),
                peak_growth_per_stalled_kib: (stalled_count > 0).then(|| {
                    (peak.rss_bytes as f64 - before.rss_bytes as f64)
                        / 1024.0
                        / stalled_count as f64
                }),
            })
        }
        _ => None,
    };
    Ok(StallReport {
        transports,
        memory,
        samples: samples
            .iter()
            .map(|sample| SamplePoint {
                at_secs: secs_since(start, sample.at),
                rss_mib: mib(sample.rss_bytes),
                closed_ws: sample.closed.map(|closed| closed[0]),
                closed_http: sample.closed.map(|closed| closed[1]),
            })
            .collect(),
    })
}

impl StallReport {
    /// Lines for the swarm's table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let dist = |d: &Option<Distribution>| {
            d.as_ref().map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1}/{:.1}/{:.1} s", d.p50, d.p99, d.max),
            )
        };
        for t in &self.transports {
            let _ = writeln!(
                out,
                "stalls {}: {} stopped reading, {} closed by the server (stalled/too_slow); stall to server close p50/p99/max {}, to the socket reporting it {}",
                t.transport,
                t.stalled,
                t.closed_by_server
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                dist(&t.server_close_s),
                dist(&t.client_noticed_s)
            );
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(
                out,
                "stalls memory: first stall at {:.1} s; server RSS {:.1} MiB before, peak {:.1} MiB at {:.1} s ({} KiB per stalled listener), {} after all were closed{}, {:.1} MiB at the end",
                memory.first_stall_secs,
                memory.before_stalls_mib,
                memory.peak_mib,
                memory.peak_at_secs,
                memory
                    .peak_growth_per_stalled_kib
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                memory
                    .after_closed_mib
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} MiB")),
                memory.all_closed_at_secs.map_or_else(
                    || " (never all closed)".to_owned(),
                    |at| format!(" (at {at:.1} s)")
                ),
                memory.end_mib
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::parse_metrics;

    #[test]
    fn closes_are_summed_per_transport_for_the_station_and_reasons_that_mean_a_stall() {
        let metrics = parse_metrics(concat!(
            "sonicforge_listener_disconnects_total{reason=\"stalled\",station=\"main\",transport=\"websocket\"} 3\n",
            "sonicforge_listener_disconnects_total{reason=\"too_slow\",station=\"main\",transport=\"websocket\"} 2\n",
            "sonicforge_listener_disconnects_total{reason=\"client_closed\",station=\"main\",transport=\"websocket\"} 7\n",
            "sonicforge_listener_disconnects_total{station=\"main\",transport=\"http\",reason=\"stalled\"} 4\n",
            "sonicforge_listener_disconnects_total{reason=\"stalled\",station=\"other\",transport=\"http\"} 9\n",
            "sonicforge_listeners{station=\"main\",transport=\"websocket\"} 11\n",
        ));
        assert_eq!(closes_by_transport(&metrics, "main"), [5, 4]);
        assert_eq!(closes_by_transport(&metrics, "none"), [0, 0]);
    }

    fn sample(start: Instant, secs: u64, rss_mib: u64, closed: [u64; 2]) -> ServerSample {
        ServerSample {
            at: start + Duration::from_secs(secs),
            rss_bytes: rss_mib * 1024 * 1024,
            closed: Some(closed),
        }
    }

    #[test]
    fn kth_close_is_matched_with_the_kth_stall_and_memory_is_read_around_them() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        // Two WebSocket listeners stall at 10 s and 11 s, one HTTP listener at 10 s.
        let stalls = [vec![at(11), at(10)], vec![at(10)]];
        let client_drops = [vec![Duration::from_secs(20)], vec![]];
        // One close counted before the run (a baseline), then the closes come at
        // 20 s and 22 s (ws) and 25 s (http).
        let samples = [
            sample(start, 0, 100, [1, 0]),
            sample(start, 9, 120, [1, 0]),
            sample(start, 10, 121, [1, 0]),
            sample(start, 15, 140, [1, 0]),
            sample(start, 20, 139, [2, 0]),
            sample(start, 22, 135, [3, 0]),
            sample(start, 25, 125, [3, 1]),
            sample(start, 30, 122, [3, 1]),
        ];
        let report = stall_report(start, &stalls, &client_drops, &samples).unwrap();
        assert_eq!(report.transports.len(), 2);
        let ws = &report.transports[0];
        assert_eq!((ws.stalled, ws.closed_by_server), (2, Some(2)));
        let server = ws.server_close_s.unwrap();
        assert_eq!(server.count, 2);
        // 20 - 10 and 22 - 11.
        assert!((9.99..=10.01).contains(&server.min), "{server:?}");
        assert!((10.99..=11.01).contains(&server.max), "{server:?}");
        assert!((19.9..=20.1).contains(&ws.client_noticed_s.unwrap().p50));
        let http = &report.transports[1];
        assert!((14.9..=15.1).contains(&http.server_close_s.unwrap().p50));
        assert!(http.client_noticed_s.is_none());

        let memory = report.memory.clone().unwrap();
        assert_eq!(memory.first_stall_secs, 10.0);
        assert_eq!(memory.before_stalls_mib, 121.0);
        assert_eq!((memory.peak_mib, memory.peak_at_secs), (140.0, 15.0));
        assert_eq!(memory.all_closed_at_secs, Some(25.0));
        assert_eq!(memory.after_closed_mib, Some(125.0));
        assert_eq!(memory.end_mib, 122.0);
        let growth = memory.peak_growth_per_stalled_kib.unwrap();
        assert!((growth - 19.0 * 1024.0 / 3.0).abs() < 1e-6, "{growth}");
        assert_eq!(report.samples.len(), samples.len());
        assert!(
            report
                .table()
                .contains("stalls http: 1 stopped reading, 1 closed")
        );
    }

    #[test]
    fn stalls_never_closed_leave_no_close_time_and_the_peak_runs_to_the_end() {
        let start = Instant::now();
        let stalls = [vec![], vec![start + Duration::from_secs(5)]];
        let samples = [
            sample(start, 0, 100, [0, 0]),
            sample(start, 6, 130, [0, 0]),
            sample(start, 30, 150, [0, 0]),
        ];
        let report = stall_report(start, &stalls, &[vec![], vec![]], &samples).unwrap();
        let http = &report.transports[0];
        assert_eq!(
            (http.transport.as_str(), http.closed_by_server),
            ("http", Some(0))
        );
        assert!(http.server_close_s.is_none());
        let memory = report.memory.clone().unwrap();
        assert_eq!(memory.all_closed_at_secs, None);
        assert_eq!(memory.after_closed_mib, None);
        assert_eq!(memory.peak_mib, 150.0);
        assert!(report.table().contains("never all closed"));
    }
}
