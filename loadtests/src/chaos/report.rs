//! The chaos run's verdict: one row per actor kind, the kills, the listeners'
//! sessions, the server's figures and the checks, as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::attribution::{MAX_SKIP_MS, Tally};
use super::schedule::{ActorKind, KillMode};

/// The peak RSS over the quiet phase may exceed the peak over the settled baseline by
/// this share.
pub const MAX_RSS_GROWTH: f64 = 0.10;
/// Restart latency p99 allowed with `--assert-restart-latency`, in milliseconds.
pub const MAX_RESTART_P99_MS: f64 = 50.0;

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub url: String,
    pub station: String,
    pub bitrate_kbps: u32,
    pub listeners: u32,
    pub kills_planned: usize,
    pub duration_secs: u64,
    pub baseline_secs: u64,
    pub heal_secs: u64,
    pub quiet_secs: u64,
    pub started_unix_ms: u64,
    pub wall_secs: f64,
}

/// What happened to the kills of one actor kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindRow {
    pub actor: ActorKind,
    pub kills_planned: u64,
    /// Kills the engine accepted (HTTP 202).
    pub kills_made: u64,
    pub kills_by_mode: BTreeMap<KillMode, u64>,
    /// Change of `sonicforge_actor_restarts_total` for this actor, all reasons.
    pub restarts_counted: Option<f64>,
    /// Glitches put down to kills of this kind.
    pub heard: Tally,
    /// Restart latency from the change of `sonicforge_actor_restart_seconds`.
    pub restart_samples: Option<f64>,
    pub restart_p50_ms: Option<f64>,
    pub restart_p99_ms: Option<f64>,
}

/// One kill as it was made.
#[derive(Debug, Clone, Serialize)]
pub struct KillRow {
    pub index: usize,
    pub actor: ActorKind,
    pub mode: KillMode,
    /// Planned and actual time of the request, from the start of the faults phase.
    pub planned_ms: u64,
    pub sent_ms: u64,
    /// How long the engine took to answer.
    pub answer_ms: Option<f64>,
    pub status: Option<u16>,
    /// The session a listener kill ended.
    pub session: Option<u64>,
    /// Why the kill was not made (request error or refusal body).
    pub error: Option<String>,
}

/// The listeners' sessions, summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenerSummary {
    pub slots: u32,
    pub sessions: u64,
    /// Sessions ended by a listener kill (each followed by a fresh connection).
    pub killed_sessions: u64,
    /// Listener kills whose session none of this driver's connections saw end.
    pub listener_kills_without_ending: u64,
    /// Sessions that ended before the run did with no kill to explain it, by reason.
    pub unexpected_endings: BTreeMap<String, u64>,
    /// A few of those, with the slot and any detail.
    pub unexpected_examples: Vec<String>,
    pub packets: u64,
    pub decoded_seconds: f64,
    pub decode_errors: u64,
    pub first_decode_error: Option<String>,
    /// Sessions whose decoded samples plus gaps do not add up to their timestamps' span.
    pub span_mismatches: u64,
    /// Glitches past the per-session cap: counted, never attributed.
    pub dropped_glitches: u64,
    /// Listener tasks that did not finish in time and were aborted.
    pub aborted: u64,
}

/// The engine process and its counters over the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerSummary {
    pub pid: Option<u32>,
    pub rss_baseline_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// Why the end RSS could not be read (the process may have died).
    pub rss_error: Option<String>,
    pub ready_after_heal: bool,
    /// Why the final metrics could not be read.
    pub metrics_error: Option<String>,
    pub escalations: Option<f64>,
    pub fallback_switches: Option<f64>,
    pub restarts_by_reason: BTreeMap<String, f64>,
    pub listener_disconnects_by_reason: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked (nothing to check against, or not asked for); never a failure.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }

    fn of(passed: bool) -> Self {
        if passed { Self::Pass } else { Self::Fail }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub run: RunInfo,
    pub kinds: Vec<KindRow>,
    /// Glitches no kill explains.
    pub unattributed: Tally,
    pub kills: Vec<KillRow>,
    pub listeners: ListenerSummary,
    pub server: ServerSummary,
    pub assert_restart_latency: bool,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub warnings: Vec<String>,
}

fn or_dash(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl ChaosReport {
    /// Fills in the checks and the verdict from the figures.
    pub fn judge(&mut self) {
        self.checks = checks(self);
        self.passed = self
            .checks
            .iter()
            .all(|check| check.outcome != Outcome::Fail);
    }

    pub fn write_json(&self, path: &str) -> Result<(), ReportWriteError> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").map_err(|source| ReportWriteError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The human-readable table and the checks.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let run = &self.run;
        let _ = writeln!(
            out,
            "chaos: seed {}, {} kills over {} s, {} listeners on {} station {} ({} kb/s); baseline {} s, heal {} s, quiet {} s; wall {:.1} s",
            self.seed,
            run.kills_planned,
            run.duration_secs,
            run.listeners,
            run.url,
            run.station,
            run.bitrate_kbps,
            run.baseline_secs,
            run.heal_secs,
            run.quiet_secs,
            run.wall_secs
        );
        let _ = writeln!(
            out,
            "{:<13} {:>9} {:>8} {:>6} {:>6} {:>7} {:>6} {:>8} {:>8} {:>17}",
            "actor",
            "kills",
            "restarts",
            "heard",
            "gaps",
            "max gap",
            "flags",
            "silences",
            "repeats",
            "restart p50/p99"
        );
        for row in &self.kinds {
            let latency = match (row.restart_p50_ms, row.restart_p99_ms) {
                (Some(p50), Some(p99)) => format!("{p50:.2}/{p99:.2}"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<13} {:>9} {:>8} {:>6} {:>6} {:>7.0} {:>6} {:>8} {:>8} {:>17}",
                row.actor.name(),
                format!("{}/{}", row.kills_made, row.kills_planned),
                or_dash(row.restarts_counted, 0),
                row.heard.kills_heard,
                row.heard.gaps,
                row.heard.largest_gap_ms,
                row.heard.flags,
                row.heard.silence_runs,
                row.heard.backwards,
                latency
            );
        }
        let none = &self.unattributed;
        let _ = writeln!(
            out,
            "{:<13} {:>9} {:>8} {:>6} {:>6} {:>7.0} {:>6} {:>8} {:>8} {:>17}",
            "no kill",
            "-",
            "-",
            "-",
            none.gaps,
            none.largest_gap_ms,
            none.flags,
            none.silence_runs,
            none.backwards,
            "-"
        );
        let _ = writeln!(
            out,
            "(kills made/planned; heard = kills some listener heard; gaps, flags, silences over 100 ms and repeated timestamps summed over listeners; times in ms)"
        );
        let listeners = &self.listeners;
        let endings: Vec<String> = listeners
            .unexpected_endings
            .iter()
            .map(|(reason, count)| format!("{reason}: {count}"))
            .collect();
        let _ = writeln!(
            out,
            "listeners: {} sessions in {} slots, {} ended by listener kills and reconnected, {} unexpected endings{}; {} packets, {:.0} s decoded, {} decode errors",
            listeners.sessions,
            listeners.slots,
            listeners.killed_sessions,
            listeners.unexpected_endings.values().sum::<u64>(),
            if endings.is_empty() {
                String::new()
            } else {
                format!(" ({})", endings.join(", "))
            },
            listeners.packets,
            listeners.decoded_seconds,
            listeners.decode_errors
        );
        let server = &self.server;
        let disconnects: Vec<String> = server
            .listener_disconnects_by_reason
            .iter()
            .map(|(reason, count)| format!("{reason}: {count:.0}"))
            .collect();
        let _ = writeln!(
            out,
            "server: RSS baseline {} MiB, end {} MiB; escalations {}; fallback switches {}; listener disconnects {}",
            or_dash(server.rss_baseline_mib, 1),
            or_dash(server.rss_end_mib, 1),
            or_dash(server.escalations, 0),
            or_dash(server.fallback_switches, 0),
            if disconnects.is_empty() {
                "none".to_owned()
            } else {
                disconnects.join(", ")
            }
        );
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{} {}: {}",
                check.outcome.label(),
                check.name,
                check.detail
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.passed {
                "chaos run passed"
            } else {
                "chaos run failed"
            }
        );
        out
    }
}

/// Why the JSON report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportWriteError {
    #[error("cannot encode the report: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Every check, in the order they are printed.
pub fn checks(report: &ChaosReport) -> Vec<Check> {
    let mut checks = Vec::new();
    let kills_failed: Vec<String> = report
        .kills
        .iter()
        .filter(|kill| kill.status != Some(202))
        .map(|kill| {
            format!(
                "#{} {} {}: {}",
                kill.index,
                kill.actor.name(),
                kill.mode.name(),
                kill.status.map_or_else(
                    || kill.error.clone().unwrap_or_default(),
                    |status| format!("HTTP {status} {}", kill.error.as_deref().unwrap_or(""))
                )
            )
        })
        .collect();
    checks.push(Check {
        name: "kills accepted",
        outcome: Outcome::of(kills_failed.is_empty()),
        detail: format!(
            "{} of {} answered 202{}",
            report.kills.len() - kills_failed.len(),
            report.kills.len(),
            first_few(&kills_failed)
        ),
    });

    let listeners = &report.listeners;
    let unexpected: u64 = listeners.unexpected_endings.values().sum();
    checks.push(Check {
        name: "disconnects",
        outcome: Outcome::of(unexpected == 0 && listeners.aborted == 0),
        detail: format!(
            "{unexpected} sessions of listeners that were not killed ended early{}; {} killed sessions reconnected; {} listener tasks aborted",
            first_few(&listeners.unexpected_examples),
            listeners.killed_sessions,
            listeners.aborted
        ),
    });

    let metrics_missing = report.server.metrics_error.as_deref();
    let restarts: Vec<(String, bool)> = report
        .kinds
        .iter()
        .map(|row| match row.restarts_counted {
            Some(counted) => (
                format!("{} {:.0}/{}", row.actor.name(), counted, row.kills_made),
                (counted - row.kills_made as f64).abs() < 0.5,
            ),
            None => (format!("{} ?/{}", row.actor.name(), row.kills_made), false),
        })
        .collect();
    checks.push(Check {
        name: "restarts counted = kills made",
        outcome: Outcome::of(restarts.iter().all(|(_, ok)| *ok)),
        detail: match metrics_missing {
            Some(error) => format!("no final metrics: {error}"),
            None => restarts
                .iter()
                .map(|(text, _)| text.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
    });

    checks.push(Check {
        name: "no escalation",
        outcome: Outcome::of(report.server.escalations == Some(0.0)),
        detail: match (report.server.escalations, metrics_missing) {
            (Some(delta), _) => format!("escalations grew by {delta:.0}"),
            (None, error) => format!("no final metrics: {}", error.unwrap_or("unknown")),
        },
    });

    let mut seamless = Vec::new();
    let mut skipping = Vec::new();
    for row in &report.kinds {
        let problems = row.heard.violations(row.actor);
        let target = if row.actor.may_skip_audio() {
            &mut skipping
        } else {
            &mut seamless
        };
        target.push((row.actor, row.heard.clone(), problems));
    }
    let describe = |rows: &[(ActorKind, Tally, Vec<String>)]| {
        rows.iter()
            .map(|(actor, tally, problems)| {
                if problems.is_empty() {
                    format!(
                        "{}: {} gaps (largest {:.0} ms), {} flags",
                        actor.name(),
                        tally.gaps,
                        tally.largest_gap_ms,
                        tally.flags
                    )
                } else {
                    format!("{}: {}", actor.name(), problems.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    checks.push(Check {
        name: "scheduler, generator, event_writer and listener kills are not heard",
        outcome: Outcome::of(seamless.iter().all(|(_, _, problems)| problems.is_empty())),
        detail: describe(&seamless),
    });
    checks.push(Check {
        name: "mixer and encoder kills cost at most a flagged 100 ms gap",
        outcome: Outcome::of(skipping.iter().all(|(_, _, problems)| problems.is_empty())),
        detail: format!("{} (limit {MAX_SKIP_MS:.0} ms)", describe(&skipping)),
    });

    let none = &report.unattributed;
    let mut unexplained = none.violations(ActorKind::Scheduler);
    if listeners.dropped_glitches > 0 {
        unexplained.push(format!(
            "{} glitches past the per-session cap were not attributed",
            listeners.dropped_glitches
        ));
    }
    checks.push(Check {
        name: "nothing heard without a kill",
        outcome: Outcome::of(none.is_empty() && listeners.dropped_glitches == 0),
        detail: if unexplained.is_empty() {
            "no gap, flag, repeated timestamp or silence run more than 2 s after a kill".to_owned()
        } else {
            unexplained.join(", ")
        },
    });

    checks.push(Check {
        name: "decoding",
        outcome: Outcome::of(listeners.decode_errors == 0 && listeners.span_mismatches == 0),
        detail: format!(
            "{} decode errors{}; {} sessions whose decoded samples and gaps do not add up to their timestamps",
            listeners.decode_errors,
            listeners
                .first_decode_error
                .as_ref()
                .map_or_else(String::new, |error| format!(" (first: {error})")),
            listeners.span_mismatches
        ),
    });

    let server = &report.server;
    checks.push(match (server.rss_baseline_mib, server.rss_end_mib, &server.rss_error) {
        (Some(baseline), Some(end), _) => Check {
            name: "memory",
            outcome: Outcome::of(end <= baseline * (1.0 + MAX_RSS_GROWTH)),
            detail: format!(
                "peak RSS {end:.1} MiB over quiet vs {baseline:.1} MiB over the settled baseline ({:+.1}%, at most +{:.0}%)",
                (end / baseline - 1.0) * 100.0,
                MAX_RSS_GROWTH * 100.0
            ),
        },
        (_, _, Some(error)) => Check {
            name: "memory",
            outcome: Outcome::Fail,
            detail: format!("cannot read the server's RSS at the end: {error}"),
        },
        _ => Check {
            name: "memory",
            outcome: Outcome::Skip,
            detail: "no --server-pid".to_owned(),
        },
    });

    let mut latency_ok = true;
    let latencies: Vec<String> = report
        .kinds
        .iter()
        .filter(|row| row.kills_made > 0)
        .map(|row| match (row.restart_p50_ms, row.restart_p99_ms) {
            (Some(p50), Some(p99)) => {
                latency_ok &= p99 <= MAX_RESTART_P99_MS;
                format!("{} p50 {p50:.2} ms, p99 {p99:.2} ms", row.actor.name())
            }
            _ => format!("{} no samples", row.actor.name()),
        })
        .collect();
    checks.push(Check {
        name: "restart latency p99 <= 50 ms",
        outcome: if report.assert_restart_latency {
            Outcome::of(latency_ok && metrics_missing.is_none())
        } else {
            Outcome::Skip
        },
        detail: format!(
            "{}{}",
            latencies.join("; "),
            if report.assert_restart_latency {
                ""
            } else {
                " (reported only; --assert-restart-latency asserts it)"
            }
        ),
    });

    checks.push(Check {
        name: "ready after heal",
        outcome: Outcome::of(server.ready_after_heal),
        detail: format!(
            "/readyz {} at the end of the heal phase",
            if server.ready_after_heal {
                "answered 200"
            } else {
                "did not answer 200"
            }
        ),
    });
    checks
}

fn first_few(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = items.len().saturating_sub(shown.len());
    format!(
        " ({}{})",
        shown.join("; "),
        if more > 0 {
            format!("; {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(actor: ActorKind, kills: u64) -> KindRow {
        KindRow {
            actor,
            kills_planned: kills,
            kills_made: kills,
            kills_by_mode: BTreeMap::from([(KillMode::Stop, kills)]),
            restarts_counted: Some(kills as f64),
            heard: Tally::default(),
            restart_samples: Some(kills as f64),
            restart_p50_ms: Some(0.2),
            restart_p99_ms: Some(4.0),
        }
    }

    fn clean_report() -> ChaosReport {
        ChaosReport {
            seed: 9,
            run: RunInfo {
                url: "http://127.0.0.1:8080".into(),
                station: "main".into(),
                bitrate_kbps: 128,
                listeners: 2,
                kills_planned: 12,
                duration_secs: 10,
                baseline_secs: 1,
                heal_secs: 1,
                quiet_secs: 1,
                started_unix_ms: 0,
                wall_secs: 13.0,
            },
            kinds: ActorKind::ALL.iter().map(|&kind| row(kind, 2)).collect(),
            unattributed: Tally::default(),
            kills: Vec::new(),
            listeners: ListenerSummary {
                slots: 2,
                sessions: 4,
                killed_sessions: 2,
                ..ListenerSummary::default()
            },
            server: ServerSummary {
                pid: Some(1),
                rss_baseline_mib: Some(100.0),
                rss_end_mib: Some(109.0),
                ready_after_heal: true,
                escalations: Some(0.0),
                ..ServerSummary::default()
            },
            assert_restart_latency: false,
            checks: Vec::new(),
            passed: false,
            warnings: Vec::new(),
        }
    }

    fn outcome(report: &ChaosReport, name: &str) -> Outcome {
        report
            .checks
            .iter()
            .find(|check| check.name.starts_with(name))
            .map(|check| check.outcome)
            .unwrap()
    }

    #[test]
    fn a_clean_run_passes_and_leaves_restart_latency_unasserted() {
        let mut report = clean_report();
        report.judge();
        assert!(report.passed, "{}", report.table());
        assert_eq!(outcome(&report, "restart latency"), Outcome::Skip);
        assert_eq!(outcome(&report, "memory"), Outcome::Pass);
        let table = report.table();
        assert!(table.contains("PASS disconnects"), "{table}");
        assert!(table.ends_with("chaos run passed\n"), "{table}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["kinds"][4]["actor"], "event_writer");
        assert_eq!(json["checks"][0]["outcome"], "pass");
    }

    #[test]
    fn restarts_that_differ_from_kills_fail_the_run() {
        let mut report = clean_report();
        report.kinds[2].restarts_counted = Some(1.0);
        report.judge();
        assert!(!report.passed);
        assert_eq!(outcome(&report, "restarts counted"), Outcome::Fail);
    }

    #[test]
    fn memory_growth_over_ten_percent_fails_and_no_pid_skips() {
        let mut report = clean_report();
        report.server.rss_end_mib = Some(111.0);
        report.judge();
        assert_eq!(outcome(&report, "memory"), Outcome::Fail);
        report.server.rss_baseline_mib = None;
        report.server.rss_end_mib = None;
        report.judge();
        assert_eq!(outcome(&report, "memory"), Outcome::Skip);
        assert!(report.passed);
    }

    #[test]
    fn restart_latency_is_asserted_only_when_asked() {
        let mut report = clean_report();
        report.kinds[3].restart_p99_ms = Some(80.0);
        report.judge();
        assert!(report.passed);
        report.assert_restart_latency = true;
        report.judge();
        assert!(!report.passed);
        assert_eq!(outcome(&report, "restart latency"), Outcome::Fail);
    }

    #[test]
    fn unexplained_disconnects_escalations_and_glitches_each_fail() {
        let mut report = clean_report();
        report
            .listeners
            .unexpected_endings
            .insert("server_eof".into(), 1);
        report.judge();
        assert_eq!(outcome(&report, "disconnects"), Outcome::Fail);

        let mut report = clean_report();
        report.server.escalations = Some(1.0);
        report.judge();
        assert_eq!(outcome(&report, "no escalation"), Outcome::Fail);

        let mut report = clean_report();
        report.unattributed.gaps = 1;
        report.judge();
        assert_eq!(outcome(&report, "nothing heard"), Outcome::Fail);

        let mut report = clean_report();
        report.kinds[0].heard.gaps = 1;
        report.judge();
        assert_eq!(outcome(&report, "scheduler, generator"), Outcome::Fail);
        assert_eq!(outcome(&report, "mixer and encoder"), Outcome::Pass);
    }
}
