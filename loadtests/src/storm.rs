//! The reconnect storm: after the ramp of the base listeners, a second wave of listeners
//! connects all at once. Its time to first audio is measured from the moment the storm
//! began; the base listeners' gaps, late units, discontinuities and skips are counted
//! apart for the window before the storm and the window of the storm, so the two can be
//! compared.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::listener::{Meter, Transport};
use crate::report::{Distribution, GroupStats, ReportError, histogram, micros};

/// When the storm comes and how long its window is.
#[derive(Debug, Clone, Copy)]
pub struct StormPlan {
    /// The moment every storm listener starts connecting.
    pub start: Instant,
    /// Length of the storm window, from `start`; the window before the storm is as long
    /// but never reaches back into the ramp.
    pub window: Duration,
    /// Start of the window before the storm (the end of the ramp at the earliest).
    pub before_from: Instant,
}

impl StormPlan {
    /// Which window `at` falls in, if any.
    fn phase(&self, at: Instant) -> Option<Phase> {
        if at >= self.before_from && at < self.start {
            Some(Phase::Before)
        } else if at >= self.start && at < self.start + self.window {
            Some(Phase::During)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before = 0,
    During = 1,
}

/// A listener's running counts just before it takes one unit of audio; with the meter
/// after the unit, it says what that unit brought.
#[derive(Debug, Clone, Copy)]
pub struct MeterMark {
    last_audio: Option<Instant>,
    late: u64,
    discontinuities: u64,
    skipped_packets: u64,
    unflagged_jumps: u64,
}

impl MeterMark {
    pub fn of(meter: &Meter) -> Self {
        Self {
            last_audio: meter.last_audio,
            late: meter.late,
            discontinuities: meter.discontinuities,
            skipped_packets: meter.skipped_packets,
            unflagged_jumps: meter.unflagged_jumps,
        }
    }
}

/// What the base listeners of one transport went through in one window.
#[derive(Debug, Clone)]
pub struct PhaseStats {
    /// Between consecutive audio units, µs, for units arriving in the window.
    gap: Histogram<u64>,
    units: u64,
    late: u64,
    discontinuities: u64,
    skipped_packets: u64,
    unflagged_jumps: u64,
}

impl PhaseStats {
    fn new() -> Result<Self, ReportError> {
        Ok(Self {
            gap: histogram()?,
            units: 0,
            late: 0,
            discontinuities: 0,
            skipped_packets: 0,
            unflagged_jumps: 0,
        })
    }

    fn add(&mut self, mark: MeterMark, meter: &Meter, at: Instant) {
        self.units += 1;
        if let Some(previous) = mark.last_audio {
            self.gap
                .saturating_record(micros(at.saturating_duration_since(previous)));
        }
        self.late += meter.late.saturating_sub(mark.late);
        self.discontinuities += meter.discontinuities.saturating_sub(mark.discontinuities);
        self.skipped_packets += meter.skipped_packets.saturating_sub(mark.skipped_packets);
        self.unflagged_jumps += meter.unflagged_jumps.saturating_sub(mark.unflagged_jumps);
    }

    fn report(&self, from: Instant, to: Instant, storm_start: Instant) -> PhaseReport {
        let offset = |at: Instant| {
            if at >= storm_start {
                at.duration_since(storm_start).as_secs_f64()
            } else {
                -storm_start.duration_since(at).as_secs_f64()
            }
        };
        PhaseReport {
            from_secs: offset(from),
            to_secs: offset(to),
            audio_units: self.units,
            gap_ms: Distribution::of(&self.gap, 1e-3),
            late: self.late,
            late_per_thousand_units: if self.units > 0 {
                self.late as f64 * 1000.0 / self.units as f64
            } else {
                0.0
            },
            discontinuities: self.discontinuities,
            skipped_packets: self.skipped_packets,
            unflagged_jumps: self.unflagged_jumps,
        }
    }
}

/// The storm's listeners (per transport) and the base listeners' figures per window.
#[derive(Debug)]
pub struct StormRecorder {
    plan: StormPlan,
    /// Storm listeners by transport; their time to first audio counts from the storm's start.
    groups: [GroupStats; 2],
    /// Base listeners by transport, then window (before, during).
    phases: [[PhaseStats; 2]; 2],
}

impl StormRecorder {
    pub fn new(plan: StormPlan) -> Result<Self, ReportError> {
        Ok(Self {
            plan,
            groups: [GroupStats::new()?, GroupStats::new()?],
            phases: [
                [PhaseStats::new()?, PhaseStats::new()?],
                [PhaseStats::new()?, PhaseStats::new()?],
            ],
        })
    }

    pub fn group(&mut self, transport: Transport) -> &mut GroupStats {
        &mut self.groups[transport as usize]
    }

    pub fn group_ref(&self, transport: Transport) -> &GroupStats {
        &self.groups[transport as usize]
    }

    /// Counts one unit of audio a base listener took at `at`, in the window it fell in.
    pub fn base_unit(&mut self, transport: Transport, at: Instant, mark: MeterMark, meter: &Meter) {
        if let Some(phase) = self.plan.phase(at) {
            self.phases[transport as usize][phase as usize].add(mark, meter, at);
        }
    }

    /// The storm part of the report: one entry per transport that had storm listeners.
    pub fn report(&self, listeners: u32) -> StormReport {
        let plan = self.plan;
        let transports = Transport::ALL
            .into_iter()
            .filter(|transport| self.groups[*transport as usize].listeners > 0)
            .map(|transport| {
                let group = &self.groups[transport as usize];
                let first_audio = group.time_to_first_audio();
                let window_micros = micros(plan.window);
                let served_within_window = if first_audio.is_empty() {
                    0
                } else {
                    first_audio.count_between(0, window_micros)
                };
                let all_served = group.got_audio == group.listeners;
                let phases = &self.phases[transport as usize];
                StormTransportReport {
                    transport: transport.label().to_owned(),
                    listeners: group.listeners,
                    established: group.established,
                    got_audio: group.got_audio,
                    served_within_window,
                    all_served_within_ms: all_served
                        .then(|| first_audio.max() as f64 * 1e-3)
                        .filter(|_| !first_audio.is_empty()),
                    first_audio_ms: Distribution::of(first_audio, 1e-3),
                    ends: group.ends.clone(),
                    base_before: phases[Phase::Before as usize].report(
                        plan.before_from,
                        plan.start,
                        plan.start,
                    ),
                    base_during: phases[Phase::During as usize].report(
                        plan.start,
                        plan.start + plan.window,
                        plan.start,
                    ),
                }
            })
            .collect();
        StormReport {
            listeners,
            window_secs: plan.window.as_secs_f64(),
            transports,
        }
    }
}

/// The base listeners of one transport in one window. Times relative to the storm's start.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub from_secs: f64,
    pub to_secs: f64,
    pub audio_units: u64,
    pub gap_ms: Option<Distribution>,
    /// Units arriving more than their duration + 40 ms after the previous one.
    pub late: u64,
    pub late_per_thousand_units: f64,
    pub discontinuities: u64,
    pub skipped_packets: u64,
    /// WebSocket: timestamp jumps without the flag; HTTP: granule jumps (skips forward).
    pub unflagged_jumps: u64,
}

/// The storm listeners of one transport, and the base listeners of that transport
/// before and during the storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormTransportReport {
    pub transport: String,
    pub listeners: u64,
    pub established: u64,
    pub got_audio: u64,
    /// Storm listeners whose first audio came within the storm window.
    pub served_within_window: u64,
    /// Storm start to the last storm listener's first audio, when every one got audio.
    pub all_served_within_ms: Option<f64>,
    /// Storm start to each storm listener's first audio.
    pub first_audio_ms: Option<Distribution>,
    pub ends: std::collections::BTreeMap<String, u64>,
    pub base_before: PhaseReport,
    pub base_during: PhaseReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    /// Storm listeners asked for.
    pub listeners: u32,
    pub window_secs: f64,
    pub transports: Vec<StormTransportReport>,
}

impl StormReport {
    /// Lines for the swarm's table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "storm: {} listeners at once, window {:.0} s",
            self.listeners, self.window_secs
        );
        for t in &self.transports {
            let first = t.first_audio_ms.as_ref().map_or_else(
                || "-".to_owned(),
                |d| format!("{:.0}/{:.0}/{:.0}", d.p50, d.p99, d.max),
            );
            let all = t.all_served_within_ms.map_or_else(
                || format!("not all served ({} of {})", t.got_audio, t.listeners),
                |ms| format!("all served within {:.2} s", ms / 1000.0),
            );
            let _ = writeln!(
                out,
                "  {} storm: {} listeners, {} established, {} got audio, {} within the window; first audio p50/p99/max {first} ms from the storm's start; {all}",
                t.transport, t.listeners, t.established, t.got_audio, t.served_within_window
            );
            for (name, phase) in [("before", &t.base_before), ("during", &t.base_during)] {
                let gap = phase.gap_ms.as_ref().map_or_else(
                    || "-".to_owned(),
                    |d| format!("{:.0}/{:.0}/{:.0}", d.p50, d.p99, d.max),
                );
                let _ = writeln!(
                    out,
                    "  {} base {name} ({:+.0}..{:+.0} s): {} units, gap p50/p99/max {gap} ms, late {} ({:.2} per 1000), discontinuities {}, skipped {}, jumps {}",
                    t.transport,
                    phase.from_secs,
                    phase.to_secs,
                    phase.audio_units,
                    phase.late,
                    phase.late_per_thousand_units,
                    phase.discontinuities,
                    phase.skipped_packets,
                    phase.unflagged_jumps
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::EndReason;
    use crate::report::SteadyWindow;

    fn window(start: Instant) -> SteadyWindow {
        SteadyWindow {
            start,
            end: start + Duration::from_secs(60),
        }
    }

    fn plan(start: Instant) -> StormPlan {
        StormPlan {
            start: start + Duration::from_secs(20),
            window: Duration::from_secs(10),
            before_from: start + Duration::from_secs(10),
        }
    }

    /// Feeds 20 ms packets to a base listener from `from_s` to `to_s`, with one
    /// flagged skip of three packets and one 200 ms gap at `event_s`.
    fn base_listener(
        recorder: &mut StormRecorder,
        start: Instant,
        from_s: u64,
        to_s: u64,
        event_s: u64,
    ) {
        let mut group = GroupStats::new().unwrap();
        let mut meter = Meter::new(start + Duration::from_secs(from_s));
        let mut at = start + Duration::from_secs(from_s);
        let end = start + Duration::from_secs(to_s);
        let event = start + Duration::from_secs(event_s);
        let mut pts = 0;
        let mut event_done = false;
        while at < end {
            let mark = MeterMark::of(&meter);
            meter.audio_arrived(at, 960, 300, &mut group);
            let skip = !event_done && at >= event;
            pts += if skip { 4 * 960 } else { 960 };
            meter.packet_timestamp(pts, skip);
            recorder.base_unit(Transport::Ws, at, mark, &meter);
            if skip {
                event_done = true;
                at += Duration::from_millis(200);
            } else {
                at += Duration::from_millis(20);
            }
        }
    }

    #[test]
    fn base_listener_figures_fall_in_the_window_they_happened_in() {
        let start = Instant::now();
        let mut recorder = StormRecorder::new(plan(start)).unwrap();
        // Skips during the storm window only.
        base_listener(&mut recorder, start, 5, 40, 25);
        let report = recorder.report(0);
        // No storm listener of either transport: nothing to report per transport.
        assert!(report.transports.is_empty());

        let during = recorder.phases[Transport::Ws as usize][Phase::During as usize].clone();
        let before = recorder.phases[Transport::Ws as usize][Phase::Before as usize].clone();
        assert_eq!(
            (before.discontinuities, before.skipped_packets, before.late),
            (0, 0, 0)
        );
        assert_eq!(
            (during.discontinuities, during.skipped_packets, during.late),
            (1, 3, 1)
        );
        // 10 s of 20 ms packets in each window, less the 200 ms gap's packets during.
        assert_eq!(before.units, 500);
        assert_eq!(during.units, 491);
    }

    #[test]
    fn storm_listeners_are_served_within_the_window_or_not() {
        let start = Instant::now();
        let mut recorder = StormRecorder::new(plan(start)).unwrap();
        let storm_start = recorder.plan.start;
        base_listener(&mut recorder, start, 5, 40, 15);
        // Three served at 1, 2 and 12 s after the storm's start.
        for first_audio_s in [1, 2, 12] {
            let group = recorder.group(Transport::Ws);
            let mut meter = Meter::new(storm_start);
            meter.established_at = Some(storm_start);
            meter.audio_arrived(
                storm_start + Duration::from_secs(first_audio_s),
                960,
                300,
                group,
            );
            group.add_listener(
                &meter,
                &EndReason::RunEnded,
                storm_start + Duration::from_secs(30),
                window(start),
            );
        }
        let report = recorder.report(3);
        assert_eq!(report.transports.len(), 1);
        let ws = &report.transports[0];
        assert_eq!(
            (ws.listeners, ws.got_audio, ws.served_within_window),
            (3, 3, 2)
        );
        let all = ws.all_served_within_ms.unwrap();
        assert!((11_990.0..=12_010.0).contains(&all), "{all}");
        assert_eq!(ws.first_audio_ms.unwrap().count, 3);
        // The base listener's skip came before the storm.
        assert_eq!(
            (
                ws.base_before.discontinuities,
                ws.base_during.discontinuities
            ),
            (1, 0)
        );
        assert!(report.table().contains("all served within 12.0"));

        // One more that never got audio: not all served.
        let group = recorder.group(Transport::Ws);
        let mut meter = Meter::new(storm_start);
        meter.established_at = Some(storm_start);
        group.add_listener(
            &meter,
            &EndReason::Timeout(crate::listener::TimeoutKind::FirstAudio),
            storm_start + Duration::from_secs(15),
            window(start),
        );
        let report = recorder.report(4);
        assert_eq!(report.transports[0].all_served_within_ms, None);
        assert!(report.table().contains("not all served (3 of 4)"));
    }
}
