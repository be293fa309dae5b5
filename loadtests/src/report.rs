//! Aggregation into histograms per transport and listener kind, and the report: JSON
//! for machines, a table for people.
//!
//! Every distribution is an HDR histogram shared by all listeners of a group; a
//! listener itself keeps only its [`Meter`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::listener::{EndReason, ListenerKind, ListenerSpec, Meter, Transport, Wave};
use crate::proc_stats::OpenFilesLimit;
use crate::stalls::StallReport;
use crate::storm::{MeterMark, StormRecorder, StormReport};

/// A listener that received at least this share of real time kept up.
pub const KEPT_UP_RATIO: f64 = 0.95;
/// Protocol error messages kept per group as examples.
const PROTOCOL_EXAMPLES: usize = 5;
/// Histogram range: 1 µs to one hour, three significant figures.
const HIST_MAX: u64 = 3_600_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot merge histograms: {0}")]
    Merge(#[from] hdrhistogram::AdditionError),
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the report: {0}")]
    Encode(#[from] serde_json::Error),
}

pub(crate) fn histogram() -> Result<Histogram<u64>, ReportError> {
    Ok(Histogram::new_with_bounds(1, HIST_MAX, 3)?)
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Everything recorded for one (transport, kind) group.
#[derive(Debug, Clone)]
pub struct GroupStats {
    pub listeners: u64,
    pub established: u64,
    pub got_audio: u64,
    pub kept_up: u64,
    pub ends: BTreeMap<String, u64>,
    pub protocol_examples: Vec<String>,
    /// Connect start to first audio, µs.
    time_to_first_audio: Histogram<u64>,
    /// Between consecutive audio units, µs.
    gap: Histogram<u64>,
    /// Each listener's largest gap, µs.
    listener_max_gap: Histogram<u64>,
    /// End-to-end latency of live (not pre-roll) packets, µs; negative values count separately.
    latency: Histogram<u64>,
    pub latency_negative: u64,
    /// Each listener's audio received per wall second, in thousandths of real time.
    receive_ratio: Histogram<u64>,
    /// Each listener's payload rate, bits per second.
    receive_rate: Histogram<u64>,
    /// Stall start to the moment the dropped connection was noticed, µs.
    stall_drop: Histogram<u64>,
    pub bytes: u64,
    pub units: u64,
    pub audio_samples: u64,
    pub pre_roll_units: u64,
    pub late: u64,
    pub discontinuities: u64,
    pub skipped_packets: u64,
    pub unflagged_jumps: u64,
    pub now_playing_messages: u64,
    /// Listener-seconds served inside the steady window.
    pub steady_listener_seconds: f64,
}

impl GroupStats {
    pub fn new() -> Result<Self, ReportError> {
        Ok(Self {
            listeners: 0,
            established: 0,
            got_audio: 0,
            kept_up: 0,
            ends: BTreeMap::new(),
            protocol_examples: Vec::new(),
            time_to_first_audio: histogram()?,
            gap: histogram()?,
            listener_max_gap: histogram()?,
            latency: histogram()?,
            latency_negative: 0,
            receive_ratio: histogram()?,
            receive_rate: histogram()?,
            stall_drop: histogram()?,
            bytes: 0,
            units: 0,
            audio_samples: 0,
            pre_roll_units: 0,
            late: 0,
            discontinuities: 0,
            skipped_packets: 0,
            unflagged_jumps: 0,
            now_playing_messages: 0,
            steady_listener_seconds: 0.0,
        })
    }

    pub fn record_time_to_first_audio(&mut self, duration: Duration) {
        self.time_to_first_audio.saturating_record(micros(duration));
    }

    pub fn record_gap(&mut self, gap: Duration) {
        self.gap.saturating_record(micros(gap));
    }

    pub fn record_latency_ms(&mut self, latency_ms: f64) {
        if latency_ms < 0.0 {
            self.latency_negative += 1;
            self.latency.saturating_record(0);
        } else {
            self.latency.saturating_record((latency_ms * 1000.0) as u64);
        }
    }

    /// Connect start to first audio, µs.
    pub(crate) fn time_to_first_audio(&self) -> &Histogram<u64> {
        &self.time_to_first_audio
    }

    /// Folds one finished listener into the group.
    pub(crate) fn add_listener(
        &mut self,
        meter: &Meter,
        end: &EndReason,
        ended_at: Instant,
        window: SteadyWindow,
    ) {
        self.listeners += 1;
        *self.ends.entry(end.label()).or_default() += 1;
        if let EndReason::Protocol(message) = end
            && self.protocol_examples.len() < PROTOCOL_EXAMPLES
            && !self.protocol_examples.contains(message)
        {
            self.protocol_examples.push(message.clone());
        }
        if let Some(established_at) = meter.established_at {
            self.established += 1;
            self.steady_listener_seconds += window.overlap(established_at, ended_at).as_secs_f64();
        }
        if meter.first_audio.is_some() {
            self.got_audio += 1;
            if meter.units > 1 {
                self.listener_max_gap
                    .saturating_record(micros(meter.max_gap));
            }
        }
        let ratio = meter.receive_ratio(ended_at);
        if let Some(ratio) = ratio {
            self.receive_ratio
                .saturating_record((ratio * 1000.0).round() as u64);
        }
        if let Some(rate) = meter.receive_bits_per_second(ended_at) {
            self.receive_rate.saturating_record(rate.round() as u64);
        }
        let never_skipped =
            meter.discontinuities == 0 && meter.skipped_packets == 0 && meter.unflagged_jumps == 0;
        if *end == EndReason::RunEnded
            && never_skipped
            && ratio.is_some_and(|ratio| ratio >= KEPT_UP_RATIO)
        {
            self.kept_up += 1;
        }
        if let (Some(stalled), Some(dropped)) = (meter.stalled_at, meter.dropped_at) {
            self.stall_drop
                .saturating_record(micros(dropped.saturating_duration_since(stalled)));
        }
        self.bytes += meter.bytes;
        self.units += meter.units;
        self.audio_samples += meter.audio_samples;
        self.pre_roll_units += meter.pre_roll_units;
        self.late += meter.late;
        self.discontinuities += meter.discontinuities;
        self.skipped_packets += meter.skipped_packets;
        self.unflagged_jumps += meter.unflagged_jumps;
        self.now_playing_messages += meter.now_playing_messages;
    }

    /// Adds another group's figures to this one.
    pub fn merge(&mut self, other: &GroupStats) -> Result<(), ReportError> {
        self.listeners += other.listeners;
        self.established += other.established;
        self.got_audio += other.got_audio;
        self.kept_up += other.kept_up;
        for (label, count) in &other.ends {
            *self.ends.entry(label.clone()).or_default() += count;
        }
        for example in &other.protocol_examples {
            if self.protocol_examples.len() < PROTOCOL_EXAMPLES
                && !self.protocol_examples.contains(example)
            {
                self.protocol_examples.push(example.clone());
            }
        }
        self.time_to_first_audio.add(&other.time_to_first_audio)?;
        self.gap.add(&other.gap)?;
        self.listener_max_gap.add(&other.listener_max_gap)?;
        self.latency.add(&other.latency)?;
        self.latency_negative += other.latency_negative;
        self.receive_ratio.add(&other.receive_ratio)?;
        self.receive_rate.add(&other.receive_rate)?;
        self.stall_drop.add(&other.stall_drop)?;
        self.bytes += other.bytes;
        self.units += other.units;
        self.audio_samples += other.audio_samples;
        self.pre_roll_units += other.pre_roll_units;
        self.late += other.late;
        self.discontinuities += other.discontinuities;
        self.skipped_packets += other.skipped_packets;
        self.unflagged_jumps += other.unflagged_jumps;
        self.now_playing_messages += other.now_playing_messages;
        self.steady_listener_seconds += other.steady_listener_seconds;
        Ok(())
    }

    fn summary(&self, transport: &str, kind: &str) -> GroupReport {
        GroupReport {
            transport: transport.to_owned(),
            kind: kind.to_owned(),
            listeners: self.listeners,
            established: self.established,
            got_audio: self.got_audio,
            kept_up: self.kept_up,
            ends: self.ends.clone(),
            protocol_error_examples: self.protocol_examples.clone(),
            time_to_first_audio_ms: Distribution::of(&self.time_to_first_audio, 1e-3),
            gap_ms: Distribution::of(&self.gap, 1e-3),
            listener_max_gap_ms: Distribution::of(&self.listener_max_gap, 1e-3),
            latency_ms: Distribution::of(&self.latency, 1e-3),
            latency_negative: self.latency_negative,
            receive_ratio: Distribution::of(&self.receive_ratio, 1e-3),
            receive_kbps: Distribution::of(&self.receive_rate, 1e-3),
            stall_drop_s: Distribution::of(&self.stall_drop, 1e-6),
            bytes: self.bytes,
            audio_messages: self.units,
            audio_seconds: self.audio_samples as f64 / 48_000.0,
            pre_roll_messages: self.pre_roll_units,
            late: self.late,
            skipped_packets: self.skipped_packets,
            discontinuities: self.discontinuities,
            unflagged_jumps: self.unflagged_jumps,
            now_playing_messages: self.now_playing_messages,
            steady_listener_hours: self.steady_listener_seconds / 3600.0,
        }
    }
}

/// p50/p90/p99/max of one histogram, in the report's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Distribution {
    /// Summarises `histogram`, scaling every value by `scale`; `None` when empty.
    pub(crate) fn of(histogram: &Histogram<u64>, scale: f64) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let at = |quantile| histogram.value_at_quantile(quantile) as f64 * scale;
        Some(Self {
            count: histogram.len(),
            min: histogram.min() as f64 * scale,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: histogram.max() as f64 * scale,
            mean: histogram.mean() * scale,
        })
    }
}

/// The part of the run, after the ramp, over which server cost is measured.
#[derive(Debug, Clone, Copy)]
pub struct SteadyWindow {
    pub start: Instant,
    pub end: Instant,
}

impl SteadyWindow {
    /// How much of `[from, to]` falls inside the window.
    pub fn overlap(self, from: Instant, to: Instant) -> Duration {
        let start = from.max(self.start);
        let end = to.min(self.end);
        end.saturating_duration_since(start)
    }
}

/// Collects every listener's figures, grouped by transport and kind; the listeners of
/// a storm apart.
#[derive(Debug)]
pub struct Recorder {
    groups: [[GroupStats; 3]; 2],
    window: SteadyWindow,
    storm: Option<StormRecorder>,
    /// When each stalled listener stopped reading, by transport.
    stalls: [Vec<Instant>; 2],
    /// Stall to the dropped connection being noticed, by transport.
    stall_drops: [Vec<Duration>; 2],
}

impl Recorder {
    pub fn new(window: SteadyWindow) -> Result<Self, ReportError> {
        let row = || -> Result<[GroupStats; 3], ReportError> {
            Ok([GroupStats::new()?, GroupStats::new()?, GroupStats::new()?])
        };
        Ok(Self {
            groups: [row()?, row()?],
            window,
            storm: None,
            stalls: [Vec::new(), Vec::new()],
            stall_drops: [Vec::new(), Vec::new()],
        })
    }

    /// A recorder that also keeps a storm's listeners and windows apart.
    pub fn with_storm(mut self, storm: StormRecorder) -> Self {
        self.storm = Some(storm);
        self
    }

    #[cfg(test)]
    pub fn group(&mut self, transport: Transport, kind: ListenerKind) -> &mut GroupStats {
        &mut self.groups[transport as usize][kind as usize]
    }

    /// The group a listener's figures go to: its transport and kind, or its
    /// transport's storm group.
    pub fn group_for(&mut self, spec: ListenerSpec) -> &mut GroupStats {
        match (spec.wave, self.storm.as_mut()) {
            (Wave::Storm, Some(storm)) => storm.group(spec.transport),
            _ => &mut self.groups[spec.transport as usize][spec.kind as usize],
        }
    }

    /// Counts what one unit of audio brought a base listener in the storm window it
    /// fell in (nothing without a storm).
    pub fn storm_window_unit(
        &mut self,
        spec: ListenerSpec,
        at: Instant,
        mark: MeterMark,
        meter: &Meter,
    ) {
        if spec.wave == Wave::Base
            && let Some(storm) = self.storm.as_mut()
        {
            storm.base_unit(spec.transport, at, mark, meter);
        }
    }

    /// The storm part of the report, if the run had a storm.
    pub fn storm_report(&self, listeners: u32) -> Option<StormReport> {
        self.storm.as_ref().map(|storm| storm.report(listeners))
    }

    /// When the stalled listeners stopped reading, and how long until each noticed its
    /// connection gone, by transport.
    pub fn stalls(&self) -> (&[Vec<Instant>; 2], &[Vec<Duration>; 2]) {
        (&self.stalls, &self.stall_drops)
    }

    /// Folds a listener that has ended into its group.
    pub fn finish(
        &mut self,
        spec: ListenerSpec,
        meter: &Meter,
        end: &EndReason,
        ended_at: Instant,
    ) {
        let window = self.window;
        if let Some(stalled_at) = meter.stalled_at {
            self.stalls[spec.transport as usize].push(stalled_at);
            if let Some(dropped_at) = meter.dropped_at {
                self.stall_drops[spec.transport as usize]
                    .push(dropped_at.saturating_duration_since(stalled_at));
            }
        }
        self.group_for(spec)
            .add_listener(meter, end, ended_at, window);
    }

    /// Listener-hours served inside the steady window, all groups together.
    pub fn steady_listener_hours(&self) -> f64 {
        let storm = self.storm.as_ref().map_or(0.0, |storm| {
            Transport::ALL
                .iter()
                .map(|transport| storm.group_ref(*transport).steady_listener_seconds)
                .sum()
        });
        (self
            .groups
            .iter()
            .flatten()
            .map(|group| group.steady_listener_seconds)
            .sum::<f64>()
            + storm)
            / 3600.0
    }

    /// One report row per group that had listeners, then one per transport for all kinds together.
    pub fn summaries(&self) -> Result<(Vec<GroupReport>, Vec<GroupReport>), ReportError> {
        let mut groups = Vec::new();
        let mut totals = Vec::new();
        for transport in Transport::ALL {
            let mut total = GroupStats::new()?;
            for kind in ListenerKind::ALL {
                let group = &self.groups[transport as usize][kind as usize];
                if group.listeners > 0 {
                    groups.push(group.summary(transport.label(), kind.label()));
                    total.merge(group)?;
                }
            }
            if total.listeners > 0 {
                totals.push(total.summary(transport.label(), "all"));
            }
        }
        Ok((groups, totals))
    }
}

/// One group's figures in the report. Times in ms (stall drops in s).
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub transport: String,
    pub kind: String,
    pub listeners: u64,
    /// Handshake (WebSocket 101, HTTP 200) completed.
    pub established: u64,
    pub got_audio: u64,
    /// Stayed to the end, received at least 95% of real time and was never skipped forward.
    pub kept_up: u64,
    /// How sessions ended, by reason.
    pub ends: BTreeMap<String, u64>,
    pub protocol_error_examples: Vec<String>,
    pub time_to_first_audio_ms: Option<Distribution>,
    /// Between consecutive audio messages (WebSocket) or pages (HTTP).
    pub gap_ms: Option<Distribution>,
    pub listener_max_gap_ms: Option<Distribution>,
    /// End-to-end latency of live packets (WebSocket only).
    pub latency_ms: Option<Distribution>,
    pub latency_negative: u64,
    /// Audio received per wall second per listener (1.0 = real time).
    pub receive_ratio: Option<Distribution>,
    pub receive_kbps: Option<Distribution>,
    /// Stall start to the dropped connection being noticed.
    pub stall_drop_s: Option<Distribution>,
    pub bytes: u64,
    pub audio_messages: u64,
    pub audio_seconds: f64,
    pub pre_roll_messages: u64,
    /// Audio units arriving more than their duration + 40 ms after the previous one.
    pub late: u64,
    /// Packets missing from timestamp jumps.
    pub skipped_packets: u64,
    pub discontinuities: u64,
    pub unflagged_jumps: u64,
    pub now_playing_messages: u64,
    pub steady_listener_hours: f64,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub url: String,
    pub station: String,
    pub transport: String,
    pub listeners: u32,
    pub ramp_per_sec: f64,
    pub duration_secs: u64,
    pub bitrate_kbps: u32,
    pub nominal_kbps: u32,
    pub slow_fraction: f64,
    pub slow_rate: f64,
    pub stall_fraction: f64,
    /// Seconds after the ramp at which stalled listeners stopped reading; none: at
    /// their first audio.
    pub stall_at_secs: Option<u64>,
    /// Listeners of the storm, and seconds after the ramp when it came.
    pub storm_listeners: u32,
    pub storm_after_secs: Option<u64>,
    pub started_unix_ms: u64,
    pub ramp_secs: f64,
    pub steady_secs: f64,
    pub wall_secs: f64,
}

/// The whole machine during the steady window: is anything else competing for the cores?
#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    pub cores: usize,
    pub load_average_after_ramp: Option<f64>,
    /// Cores busy on average (all processes).
    pub steady_busy_cores: f64,
    /// Cores used by the swarm itself.
    pub steady_swarm_cores: f64,
    /// Cores used by neither the swarm nor the server (known only with --server-pid).
    pub steady_other_cores: Option<f64>,
}

/// The swarm's own open-file limit against what the run needed.
#[derive(Debug, Clone, Serialize)]
pub struct OpenFilesReport {
    #[serde(flatten)]
    pub limit: OpenFilesLimit,
    pub needed: u64,
    pub sufficient: bool,
}

/// A process's CPU time and memory at one point of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcPoint {
    pub at_secs: f64,
    pub cpu_secs: f64,
    pub rss_mib: f64,
}

/// What the run cost the server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub pid: u32,
    pub clock_ticks_per_second: u64,
    pub before: ProcPoint,
    pub after_ramp: ProcPoint,
    pub end: ProcPoint,
    pub listeners_after_ramp: u64,
    pub steady_secs: f64,
    pub steady_cpu_secs: f64,
    /// Share of one core used during the steady window.
    pub steady_cpu_percent: f64,
    pub steady_listener_hours: f64,
    /// All the server's CPU in the steady window per listener-hour.
    pub cpu_secs_per_listener_hour: Option<f64>,
    /// How long the idle server was watched before the first listener.
    pub baseline_secs: f64,
    /// Share of one core the server used with no swarm listeners.
    pub idle_cpu_percent: Option<f64>,
    /// The steady window's CPU less what the idle rate would have used, per listener-hour.
    pub listener_cpu_secs_per_listener_hour: Option<f64>,
    pub rss_per_listener_kib: Option<f64>,
    /// Change of the server's own `sonicforge_*` series (counters) over the run.
    pub metrics_delta: BTreeMap<String, f64>,
}

/// What the run cost the swarm itself.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    pub cpu_secs: f64,
    pub cpu_percent: f64,
    pub rss_mib: f64,
    /// Listener tasks still running past the end and aborted.
    pub aborted_listeners: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub open_files: OpenFilesReport,
    pub groups: Vec<GroupReport>,
    pub totals: Vec<GroupReport>,
    pub server: Option<ServerReport>,
    pub machine: MachineReport,
    pub client: ClientReport,
    /// The storm's listeners and the base listeners before and during it.
    pub storm: Option<StormReport>,
    /// Stalled listeners against the server's closes and memory.
    pub stalls: Option<StallReport>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn write_json(&self, path: &str) -> Result<(), ReportError> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").map_err(|source| ReportError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let run = &self.run;
        let _ = writeln!(
            out,
            "swarm: {} {} listeners ({}) on {} station {}, {} kb/s, ramp {:.0}/s ({:.1} s), steady {:.1} s, wall {:.1} s",
            run.listeners,
            run.transport,
            kinds_line(run),
            run.url,
            run.station,
            run.bitrate_kbps,
            run.ramp_per_sec,
            run.ramp_secs,
            run.steady_secs,
            run.wall_secs
        );
        let _ = writeln!(
            out,
            "{:<5} {:<8} {:>6} {:>6} {:>6} {:>15} {:>15} {:>15} {:>13} {:>7} {:>7} {:>6} {:>6}",
            "tport",
            "kind",
            "lstnrs",
            "estab",
            "keptup",
            "ttfa p50/p99",
            "gap p99/max",
            "latency p50/99",
            "rate p50/min",
            "late",
            "skipped",
            "disc",
            "jumps"
        );
        for group in self.groups.iter().chain(&self.totals) {
            let pair = |d: &Option<Distribution>,
                        first: fn(&Distribution) -> f64,
                        second: fn(&Distribution) -> f64| {
                d.as_ref().map_or_else(
                    || "-".to_owned(),
                    |d| format!("{:.0}/{:.0}", first(d), second(d)),
                )
            };
            let _ = writeln!(
                out,
                "{:<5} {:<8} {:>6} {:>6} {:>6} {:>15} {:>15} {:>15} {:>13} {:>7} {:>7} {:>6} {:>6}",
                group.transport,
                group.kind,
                group.listeners,
                group.established,
                group.kept_up,
                pair(&group.time_to_first_audio_ms, |d| d.p50, |d| d.p99),
                pair(&group.gap_ms, |d| d.p99, |d| d.max),
                pair(&group.latency_ms, |d| d.p50, |d| d.p99),
                group
                    .receive_ratio
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| format!("{:.2}/{:.2}", d.p50, d.min)),
                group.late,
                group.skipped_packets,
                group.discontinuities,
                group.unflagged_jumps
            );
        }
        let _ = writeln!(
            out,
            "(times in ms; rate = audio received per wall second, 1.00 = real time)"
        );
        for group in &self.groups {
            let ends: Vec<String> = group
                .ends
                .iter()
                .map(|(label, count)| format!("{label}: {count}"))
                .collect();
            let _ = writeln!(
                out,
                "ends {} {}: {}",
                group.transport,
                group.kind,
                ends.join(", ")
            );
            if let Some(drop) = &group.stall_drop_s {
                let _ = writeln!(
                    out,
                    "  stalled listeners dropped {} times, {:.1} s p50 / {:.1} s max after they stopped reading",
                    drop.count, drop.p50, drop.max
                );
            }
            for example in &group.protocol_error_examples {
                let _ = writeln!(out, "  protocol error: {example}");
            }
        }
        if let Some(storm) = &self.storm {
            out.push_str(&storm.table());
        }
        if let Some(stalls) = &self.stalls {
            out.push_str(&stalls.table());
        }
        if let Some(server) = &self.server {
            let _ = writeln!(
                out,
                "server pid {}: CPU {:.1} s over {:.1} s steady ({:.1}% of a core) for {:.3} listener-hours = {} CPU s per listener-hour",
                server.pid,
                server.steady_cpu_secs,
                server.steady_secs,
                server.steady_cpu_percent,
                server.steady_listener_hours,
                server
                    .cpu_secs_per_listener_hour
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
            );
            if let Some(idle) = server.idle_cpu_percent {
                let _ = writeln!(
                    out,
                    "server idle {:.1}% of a core over {:.1} s before the swarm; above idle: {} CPU s per listener-hour",
                    idle,
                    server.baseline_secs,
                    server
                        .listener_cpu_secs_per_listener_hour
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
                );
            }
            let _ = writeln!(
                out,
                "server RSS {:.1} MiB before, {:.1} MiB after the ramp with {} listeners, {:.1} MiB at the end = {} KiB per listener",
                server.before.rss_mib,
                server.after_ramp.rss_mib,
                server.listeners_after_ramp,
                server.end.rss_mib,
                server
                    .rss_per_listener_kib
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
            );
        }
        let _ = writeln!(
            out,
            "swarm itself: CPU {:.1} s ({:.1}% of a core), RSS {:.1} MiB; open-file limit {} (needed {})",
            self.client.cpu_secs,
            self.client.cpu_percent,
            self.client.rss_mib,
            self.open_files
                .limit
                .soft
                .map_or_else(|| "unlimited".to_owned(), |v| v.to_string()),
            self.open_files.needed
        );
        let _ = writeln!(
            out,
            "machine: {} cores, {:.2} busy during the steady window ({:.2} the swarm, {} other processes), load average {} after the ramp",
            self.machine.cores,
            self.machine.steady_busy_cores,
            self.machine.steady_swarm_cores,
            self.machine
                .steady_other_cores
                .map_or_else(|| "?".to_owned(), |v| format!("{v:.2}")),
            self.machine
                .load_average_after_ramp
                .map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }
}

fn kinds_line(run: &RunInfo) -> String {
    let mut parts = Vec::new();
    if run.slow_fraction > 0.0 {
        parts.push(format!(
            "{:.0}% slow at {:.0}% rate",
            run.slow_fraction * 100.0,
            run.slow_rate * 100.0
        ));
    }
    if run.stall_fraction > 0.0 {
        parts.push(format!("{:.0}% stalled", run.stall_fraction * 100.0));
    }
    if parts.is_empty() {
        "all normal".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: Instant) -> SteadyWindow {
        SteadyWindow {
            start: start + Duration::from_secs(10),
            end: start + Duration::from_secs(70),
        }
    }

    /// A listener that connected at `connect_s` and received 20 ms packets every 20 ms
    /// (one late gap of `late_gap_ms` in the middle) until `end_s`.
    fn steady_listener(
        start: Instant,
        connect_s: u64,
        end_s: u64,
        late_gap_ms: u64,
        group: &mut GroupStats,
    ) -> Meter {
        let connected = start + Duration::from_secs(connect_s);
        let mut meter = Meter::new(connected);
        meter.established_at = Some(connected);
        let mut at = connected + Duration::from_millis(100);
        let end = start + Duration::from_secs(end_s);
        let mut pts = 0;
        let mut packet = 0;
        while at < end {
            meter.audio_arrived(at, 960, 320, group);
            meter.packet_timestamp(pts, false);
            pts += 960;
            packet += 1;
            at += Duration::from_millis(if packet == 100 { late_gap_ms } else { 20 });
        }
        meter
    }

    #[test]
    fn groups_count_ends_kept_up_and_listener_hours() {
        let start = Instant::now();
        let mut recorder = Recorder::new(window(start)).unwrap();
        let ws_normal = ListenerSpec {
            index: 0,
            transport: Transport::Ws,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let end = start + Duration::from_secs(70);
        for index in 0..4u64 {
            let group = recorder.group(Transport::Ws, ListenerKind::Normal);
            let meter = steady_listener(start, index, 70, 200, group);
            recorder.finish(ws_normal, &meter, &EndReason::RunEnded, end);
        }
        // One that was closed by the server after 40 s.
        let group = recorder.group(Transport::Ws, ListenerKind::Normal);
        let meter = steady_listener(start, 0, 40, 20, group);
        let closed = EndReason::ServerClosed {
            code: 1008,
            reason: "too slow".into(),
        };
        recorder.finish(ws_normal, &meter, &closed, start + Duration::from_secs(40));
        // One that never connected.
        let refused = Meter::new(start);
        let http_slow = ListenerSpec {
            index: 5,
            transport: Transport::Http,
            kind: ListenerKind::Slow,
            wave: Wave::Base,
        };
        recorder.finish(
            http_slow,
            &refused,
            &EndReason::ConnectError(std::io::ErrorKind::ConnectionRefused),
            start,
        );

        let (groups, totals) = recorder.summaries().unwrap();
        assert_eq!(groups.len(), 2);
        let ws = &groups[0];
        assert_eq!((ws.transport.as_str(), ws.kind.as_str()), ("ws", "normal"));
        assert_eq!(
            (ws.listeners, ws.established, ws.got_audio, ws.kept_up),
            (5, 5, 5, 4)
        );
        assert_eq!(ws.ends["run_ended"], 4);
        assert_eq!(ws.ends["server_closed: too slow (1008)"], 1);
        // Four listeners had one 200 ms gap each: late, and the max gap.
        assert_eq!(ws.late, 4);
        let gap = ws.gap_ms.unwrap();
        assert!((199.0..=201.0).contains(&gap.max), "{gap:?}");
        assert!((19.9..=20.1).contains(&gap.p50), "{gap:?}");
        let max_gap = ws.listener_max_gap_ms.unwrap();
        assert_eq!(max_gap.count, 5);
        assert!((19.9..=20.1).contains(&max_gap.min));
        // Listener-hours: four inside the window 60 s each, one 30 s (10 s..40 s).
        assert!((ws.steady_listener_hours - 270.0 / 3600.0).abs() < 1e-9);
        assert!((recorder.steady_listener_hours() - 270.0 / 3600.0).abs() < 1e-9);
        let ratio = ws.receive_ratio.unwrap();
        assert!(ratio.p50 > 0.98 && ratio.max < 1.01, "{ratio:?}");
        let ttfa = ws.time_to_first_audio_ms.unwrap();
        assert!((99.0..=101.0).contains(&ttfa.p99), "{ttfa:?}");

        let http = &groups[1];
        assert_eq!(
            (http.listeners, http.established, http.got_audio),
            (1, 0, 0)
        );
        assert_eq!(http.ends["connect_error: connection refused"], 1);
        assert!(http.time_to_first_audio_ms.is_none());

        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].listeners, 5);
        assert_eq!(totals[0].kind, "all");
        assert_eq!(totals[0].gap_ms.unwrap().count, ws.gap_ms.unwrap().count);
    }

    #[test]
    fn skipped_listener_did_not_keep_up() {
        let start = Instant::now();
        let mut recorder = Recorder::new(window(start)).unwrap();
        let spec = ListenerSpec {
            index: 0,
            transport: Transport::Ws,
            kind: ListenerKind::Slow,
            wave: Wave::Base,
        };
        let group = recorder.group(Transport::Ws, ListenerKind::Slow);
        let mut meter = steady_listener(start, 0, 70, 20, group);
        meter.packet_timestamp(meter.last_pts.unwrap() + 960 * 30, true);
        recorder.finish(
            spec,
            &meter,
            &EndReason::RunEnded,
            start + Duration::from_secs(70),
        );
        let (groups, _) = recorder.summaries().unwrap();
        assert_eq!(
            (
                groups[0].kept_up,
                groups[0].discontinuities,
                groups[0].skipped_packets
            ),
            (0, 1, 29)
        );
    }

    #[test]
    fn negative_latency_is_counted_apart() {
        let mut group = GroupStats::new().unwrap();
        group.record_latency_ms(-3.0);
        group.record_latency_ms(40.0);
        group.record_latency_ms(60.0);
        let summary = group.summary("ws", "normal");
        assert_eq!(summary.latency_negative, 1);
        let latency = summary.latency_ms.unwrap();
        assert_eq!(latency.count, 3);
        assert!((59.9..=60.1).contains(&latency.max));
    }

    #[test]
    fn stall_drop_time_is_measured_from_the_stall() {
        let start = Instant::now();
        let mut recorder = Recorder::new(window(start)).unwrap();
        let mut meter = Meter::new(start);
        meter.established_at = Some(start);
        meter.stalled_at = Some(start + Duration::from_secs(1));
        meter.dropped_at = Some(start + Duration::from_secs(21));
        let spec = ListenerSpec {
            index: 0,
            transport: Transport::Http,
            kind: ListenerKind::Stalled,
            wave: Wave::Base,
        };
        recorder.finish(
            spec,
            &meter,
            &EndReason::DroppedWhileStalled,
            start + Duration::from_secs(21),
        );
        let (groups, _) = recorder.summaries().unwrap();
        let drop = groups[0].stall_drop_s.unwrap();
        assert!((19.9..=20.1).contains(&drop.p50), "{drop:?}");
        assert_eq!(groups[0].ends["dropped_while_stalled"], 1);
    }

    #[test]
    fn overlap_is_clipped_to_the_window() {
        let start = Instant::now();
        let w = window(start);
        let s = |secs| start + Duration::from_secs(secs);
        assert_eq!(w.overlap(s(0), s(5)), Duration::ZERO);
        assert_eq!(w.overlap(s(0), s(20)), Duration::from_secs(10));
        assert_eq!(w.overlap(s(30), s(100)), Duration::from_secs(40));
        assert_eq!(w.overlap(s(80), s(100)), Duration::ZERO);
    }
}
