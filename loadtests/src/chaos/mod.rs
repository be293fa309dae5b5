//! The seeded chaos driver: listeners decode the stream while actors of the station
//! are killed on a schedule drawn from a seed, then every gap, flag and silence is put
//! down to a kill and checked against what that kind of kill may cost.
//!
//! Phases: baseline (listeners connect and settle; the server's peak RSS while they
//! settle, and a metrics snapshot), faults (the kills), heal and quiet (no kills; the
//! peak RSS over quiet), checks. Peaks over windows at least one track long compare
//! like with like: whole track buffers come and go as tracks are rendered and retired.

mod attribution;
pub(crate) mod engine_api;
mod listener;
mod metrics;
mod report;
pub mod rng;
mod schedule;
mod track;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::time::Instant as TokioInstant;

use self::attribution::{Attribution, Ending, KillTime, ListenerKill, Tally, sort_disconnects};
use self::engine_api::{ApiError, Engine, KillOutcome};
use self::listener::{ListenContext, Session};
use self::metrics::Metrics;
pub use self::report::ChaosReport;
use self::report::{KillRow, KindRow, ListenerSummary, RunInfo, ServerSummary};
use self::schedule::{ActorKind, PlannedKill, ScheduleError};
use crate::listener::EndReason;
use crate::proc_stats::{self, ProcError};
use crate::swarm::{MAX_DURATION_SECS, MAX_LISTENERS};
use crate::target::{TargetError, TargetUrl};

/// How often the server's RSS is sampled in the baseline and quiet windows.
const RSS_EVERY: Duration = Duration::from_millis(500);

/// The peak RSS of process `pid` (when given) sampled from now until `until`.
async fn peak_rss(pid: Option<u32>, until: Instant) -> Result<Option<u64>, ProcError> {
    let Some(pid) = pid else {
        tokio::time::sleep_until(until.into()).await;
        return Ok(None);
    };
    let mut peak = proc_stats::sample(pid)?.rss_bytes;
    while Instant::now() + RSS_EVERY <= until {
        tokio::time::sleep(RSS_EVERY).await;
        peak = peak.max(proc_stats::sample(pid)?.rss_bytes);
    }
    tokio::time::sleep_until(until.into()).await;
    Ok(Some(peak.max(proc_stats::sample(pid)?.rss_bytes)))
}

/// How long to wait for `/readyz` before the run.
const READY_WAIT: Duration = Duration::from_secs(30);
/// Listeners stay connected this long after the end of quiet, so that the final RSS
/// and metrics are read with them connected, as at baseline.
const LISTEN_PAST_QUIET: Duration = Duration::from_secs(1);
/// How long listener tasks get to finish after the end before they are aborted.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// Longest baseline and heal phases.
const MAX_PHASE_SECS: u64 = 600;
/// Descriptors the driver needs besides one per listener.
const SPARE_FILES: u64 = 64;
/// Unexpected endings described in the report.
const ENDING_EXAMPLES: usize = 10;

const RESTARTS: &str = "sonicforge_actor_restarts_total";
const RESTART_SECONDS: &str = "sonicforge_actor_restart_seconds";
const ESCALATIONS: &str = "sonicforge_supervisor_escalations_total";
const FALLBACK_SWITCHES: &str = "sonicforge_fallback_switches_total";
const LISTENER_DISCONNECTS: &str = "sonicforge_listener_disconnects_total";

/// `sonicforge-loadtests chaos`: kill actors on a seeded schedule while listeners decode.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Base URL of the engine; loopback only (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub url: String,
    /// Station id.
    #[arg(long, default_value = "main")]
    pub station: String,
    /// Bearer token with role admin for the chaos hook (`sonicforge token --role admin`).
    #[arg(long, env = "SONICFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seed of the kill schedule; drawn from the clock when absent. The same seed
    /// gives the same schedule.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Kills to make during the faults phase (at least 0.5 s apart).
    #[arg(long)]
    pub kills: usize,
    /// Length of the faults phase in seconds (at most 3600).
    #[arg(long)]
    pub duration_secs: u64,
    /// WebSocket listeners, each decoding every packet (at most 20,000).
    #[arg(long)]
    pub listeners: u32,
    /// Seconds for the listeners to connect and settle before the first kill (1 to 600).
    #[arg(long, default_value_t = 10)]
    pub baseline_secs: u64,
    /// Seconds without kills after the faults phase (at most 600).
    #[arg(long, default_value_t = 10)]
    pub heal_secs: u64,
    /// Seconds without kills after the heal phase; the server's RSS is read at its end
    /// (at most 3600).
    #[arg(long, default_value_t = 20)]
    pub quiet_secs: u64,
    /// Process id of the engine, to read its RSS at baseline and at the end.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<String>,
    /// Fail the run when an actor kind's restart latency p99 exceeds 50 ms.
    #[arg(long)]
    pub assert_restart_latency: bool,
    /// Rendition in kb/s; default the station's highest.
    #[arg(long)]
    pub bitrate: Option<u32>,
}

/// Why a chaos run could not be carried out (as opposed to failing its checks).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("--listeners {found} is outside 1..={MAX_LISTENERS}")]
    Listeners { found: u32 },
    #[error("--duration-secs {found} is outside 1..={MAX_DURATION_SECS}")]
    Duration { found: u64 },
    #[error("{name} {found} is outside {min}..={max}")]
    Phase {
        name: &'static str,
        found: u64,
        min: u64,
        max: u64,
    },
    #[error("station id {found:?} must be letters, digits, '-', '_' or '.'")]
    StationId { found: String },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("the engine's /readyz did not answer 200 within {seconds} s")]
    NotReady { seconds: u64 },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot read the server process: {0}")]
    Proc(#[from] ProcError),
}

impl ChaosArgs {
    /// Checks every bound and draws the schedule before anything connects.
    pub fn plan(&self, seed: u64) -> Result<(TargetUrl, Vec<PlannedKill>), ChaosError> {
        if !(1..=MAX_LISTENERS).contains(&self.listeners) {
            return Err(ChaosError::Listeners {
                found: self.listeners,
            });
        }
        if !(1..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return Err(ChaosError::Duration {
                found: self.duration_secs,
            });
        }
        for (name, found, min, max) in [
            ("--baseline-secs", self.baseline_secs, 1, MAX_PHASE_SECS),
            ("--heal-secs", self.heal_secs, 0, MAX_PHASE_SECS),
            ("--quiet-secs", self.quiet_secs, 0, MAX_DURATION_SECS),
        ] {
            if !(min..=max).contains(&found) {
                return Err(ChaosError::Phase {
                    name,
                    found,
                    min,
                    max,
                });
            }
        }
        let id_ok = !self.station.is_empty()
            && self.station.len() <= 128
            && self
                .station
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(ChaosError::StationId {
                found: self.station.clone(),
            });
        }
        let target = TargetUrl::parse(&self.url)?;
        let kills = schedule::plan(seed, self.kills, Duration::from_secs(self.duration_secs))?;
        Ok((target, kills))
    }
}

/// A kill as it was made.
#[derive(Debug)]
struct MadeKill {
    planned: PlannedKill,
    sent: Instant,
    answered: Instant,
    result: Result<KillOutcome, ApiError>,
}

impl MadeKill {
    fn accepted(&self) -> bool {
        matches!(&self.result, Ok(outcome) if outcome.status == 202)
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the whole chaos run on the current thread's `LocalSet` and returns the judged report.
pub async fn run(args: &ChaosArgs, seed: u64) -> Result<ChaosReport, ChaosError> {
    let (target, plan) = args.plan(seed)?;
    let mut warnings = Vec::new();
    let limit = proc_stats::raise_open_files_limit();
    let needed = u64::from(args.listeners) + SPARE_FILES;
    if !limit.allows(needed) {
        warnings.push(format!(
            "open-file limit {:?} is below the {needed} descriptors {} listeners need",
            limit.soft, args.listeners
        ));
    }
    let engine = Engine {
        addr: target.resolve().await?,
        authority: target.authority(),
        token: args.token.clone(),
    };
    let ready_by = Instant::now() + READY_WAIT;
    while !engine.is_ready().await {
        if Instant::now() >= ready_by {
            return Err(ChaosError::NotReady {
                seconds: READY_WAIT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bitrate = match args.bitrate {
        Some(bitrate) => bitrate,
        None => engine.highest_rendition(&args.station).await?,
    };

    let started_unix_ms = unix_ms_now();
    let start = Instant::now();
    let baseline = Duration::from_secs(args.baseline_secs);
    let faults_start = start + baseline;
    let faults_end = faults_start + Duration::from_secs(args.duration_secs);
    let heal_end = faults_end + Duration::from_secs(args.heal_secs);
    let quiet_end = heal_end + Duration::from_secs(args.quiet_secs);
    let ctx = Rc::new(ListenContext {
        addr: engine.addr,
        authority: engine.authority.clone(),
        station: args.station.clone(),
        bitrate,
        ws_path: format!("/stations/{}/ws?bitrate={bitrate}", args.station),
        end_at: (quiet_end + LISTEN_PAST_QUIET).into(),
    });

    // Baseline: listeners connect over its first half and settle in the second.
    println!(
        "baseline: {} listeners connecting over {:.1} s",
        args.listeners,
        (baseline / 2).as_secs_f64()
    );
    let mut tasks = Vec::with_capacity(args.listeners as usize);
    for slot in 0..args.listeners {
        let due = start + (baseline / 2).mul_f64(f64::from(slot) / f64::from(args.listeners));
        tokio::time::sleep_until(due.into()).await;
        tasks.push(tokio::task::spawn_local(listener::run_slot(
            Rc::clone(&ctx),
            slot,
        )));
    }
    // Settled: the second half of the baseline. RSS is the peak over the window, so
    // that whole track buffers coming and going compare like with like.
    let rss_baseline = peak_rss(args.server_pid, faults_start).await?;
    let metrics_before = engine.metrics().await?;

    // Faults.
    println!(
        "faults: {} kills over {} s (seed {seed})",
        plan.len(),
        args.duration_secs
    );
    let mut made = Vec::with_capacity(plan.len());
    for planned in &plan {
        tokio::time::sleep_until((faults_start + planned.at).into()).await;
        let sent = Instant::now();
        let result = engine
            .kill(&args.station, planned.actor, planned.mode)
            .await;
        match &result {
            Ok(outcome) if outcome.status == 202 => {}
            Ok(outcome) => eprintln!(
                "kill #{} ({} {}): HTTP {} {}",
                planned.index,
                planned.actor.name(),
                planned.mode.name(),
                outcome.status,
                outcome.detail.as_deref().unwrap_or("")
            ),
            Err(error) => eprintln!(
                "kill #{} ({} {}): {error}",
                planned.index,
                planned.actor.name(),
                planned.mode.name()
            ),
        }
        made.push(MadeKill {
            planned: *planned,
            sent,
            answered: Instant::now(),
            result,
        });
    }

    // Heal and quiet.
    println!(
        "heal: {} s, then quiet: {} s",
        args.heal_secs, args.quiet_secs
    );
    tokio::time::sleep_until(heal_end.into()).await;
    let ready_after_heal = engine.is_ready().await;
    let rss_end = peak_rss(args.server_pid, quiet_end).await;
    let metrics_after = engine.metrics().await;

    let finish_by = TokioInstant::from_std(quiet_end + LISTEN_PAST_QUIET + FINISH_GRACE);
    let mut sessions: Vec<Session> = Vec::new();
    let mut aborted = 0;
    for task in &mut tasks {
        match tokio::time::timeout_at(finish_by, &mut *task).await {
            Ok(Ok(slot_sessions)) => sessions.extend(slot_sessions),
            Ok(Err(_)) => aborted += 1,
            Err(_) => {
                task.abort();
                aborted += 1;
            }
        }
    }

    let mut report = ChaosReport {
        seed,
        run: RunInfo {
            url: args.url.clone(),
            station: args.station.clone(),
            bitrate_kbps: bitrate,
            listeners: args.listeners,
            kills_planned: plan.len(),
            duration_secs: args.duration_secs,
            baseline_secs: args.baseline_secs,
            heal_secs: args.heal_secs,
            quiet_secs: args.quiet_secs,
            started_unix_ms,
            wall_secs: start.elapsed().as_secs_f64(),
        },
        kinds: Vec::new(),
        unattributed: Tally::default(),
        kills: kill_rows(&made, faults_start),
        listeners: ListenerSummary::default(),
        server: ServerSummary {
            pid: args.server_pid,
            rss_baseline_mib: rss_baseline.map(mib),
            ready_after_heal,
            ..ServerSummary::default()
        },
        assert_restart_latency: args.assert_restart_latency,
        checks: Vec::new(),
        passed: false,
        warnings,
    };
    match rss_end {
        Ok(peak) => report.server.rss_end_mib = peak.map(mib),
        Err(error) => report.server.rss_error = Some(error.to_string()),
    }
    let (attribution, listeners) = hearing(&made, &sessions, args.listeners, aborted);
    report.listeners = listeners;
    report.unattributed = attribution.unattributed.clone();
    if report.listeners.listener_kills_without_ending > 0 {
        report.warnings.push(format!(
            "{} listener kills named a session that none of this driver's listeners saw end",
            report.listeners.listener_kills_without_ending
        ));
    }
    let metrics_after = match metrics_after {
        Ok(metrics) => Some(metrics),
        Err(error) => {
            report.server.metrics_error = Some(error.to_string());
            None
        }
    };
    report.kinds = kind_rows(
        &args.station,
        &plan,
        &made,
        &attribution,
        &metrics_before,
        metrics_after.as_ref(),
    );
    if let Some(after) = &metrics_after {
        server_counters(&mut report.server, &args.station, &metrics_before, after);
    }
    report.judge();
    Ok(report)
}

fn kill_rows(made: &[MadeKill], faults_start: Instant) -> Vec<KillRow> {
    made.iter()
        .map(|kill| {
            let (status, session, error) = match &kill.result {
                Ok(outcome) => (
                    Some(outcome.status),
                    outcome.answer.as_ref().and_then(|answer| answer.session),
                    outcome.detail.clone(),
                ),
                Err(error) => (None, None, Some(error.to_string())),
            };
            KillRow {
                index: kill.planned.index,
                actor: kill.planned.actor,
                mode: kill.planned.mode,
                planned_ms: millis(kill.planned.at),
                sent_ms: millis(kill.sent.saturating_duration_since(faults_start)),
                answer_ms: kill.result.is_ok().then(|| {
                    kill.answered
                        .saturating_duration_since(kill.sent)
                        .as_secs_f64()
                        * 1000.0
                }),
                status,
                session,
                error,
            }
        })
        .collect()
}

/// Attributes every glitch and sorts out every ending of the listeners' sessions.
fn hearing(
    made: &[MadeKill],
    sessions: &[Session],
    slots: u32,
    aborted: u64,
) -> (Attribution, ListenerSummary) {
    let mut kill_times: Vec<KillTime> = made
        .iter()
        .filter(|kill| kill.accepted())
        .map(|kill| KillTime {
            index: kill.planned.index,
            actor: kill.planned.actor,
            at: kill.sent,
        })
        .collect();
    kill_times.sort_by_key(|kill| kill.at);
    let listener_kills: Vec<ListenerKill> = made
        .iter()
        .filter(|kill| kill.accepted() && kill.planned.actor == ActorKind::Listener)
        .map(|kill| ListenerKill {
            at: kill.sent,
            session: kill
                .result
                .as_ref()
                .ok()
                .and_then(|outcome| outcome.answer.as_ref())
                .and_then(|answer| answer.session),
        })
        .collect();

    let mut attribution = Attribution::default();
    let mut summary = ListenerSummary {
        slots,
        sessions: sessions.len() as u64,
        aborted,
        ..ListenerSummary::default()
    };
    let mut endings = Vec::new();
    for session in sessions {
        let tracker = &session.tracker;
        for glitch in tracker.glitches() {
            attribution.record(&kill_times, glitch);
        }
        summary.packets += tracker.packets;
        summary.decoded_seconds += tracker.decoded_samples as f64 / 48_000.0;
        summary.decode_errors += tracker.decode_errors;
        summary.dropped_glitches += tracker.dropped_glitches;
        if summary.first_decode_error.is_none() {
            summary.first_decode_error = tracker.first_decode_error.clone();
        }
        if !tracker.samples_match_span() {
            summary.span_mismatches += 1;
        }
        if session.end != EndReason::RunEnded {
            endings.push(Ending {
                slot: session.slot,
                session: session.id,
                at: session.ended,
                reason: session.end.label(),
                detail: match &session.end {
                    EndReason::Protocol(detail) => Some(detail.clone()),
                    _ => None,
                },
            });
        }
    }
    let sorted = sort_disconnects(&endings, &listener_kills);
    summary.killed_sessions = sorted.killed;
    summary.listener_kills_without_ending = sorted.kills_without_ending;
    for ending in &sorted.unexpected {
        *summary
            .unexpected_endings
            .entry(ending.reason.clone())
            .or_insert(0) += 1;
    }
    summary.unexpected_examples = sorted
        .unexpected
        .iter()
        .take(ENDING_EXAMPLES)
        .map(|ending| {
            let detail = ending
                .detail
                .as_ref()
                .map_or_else(String::new, |detail| format!(": {detail}"));
            format!(
                "slot {} session {} {}{detail}",
                ending.slot,
                ending
                    .session
                    .map_or_else(|| "?".to_owned(), |id| id.to_string()),
                ending.reason
            )
        })
        .collect();
    (attribution, summary)
}

fn kind_rows(
    station: &str,
    plan: &[PlannedKill],
    made: &[MadeKill],
    attribution: &Attribution,
    before: &Metrics,
    after: Option<&Metrics>,
) -> Vec<KindRow> {
    ActorKind::ALL
        .iter()
        .map(|&actor| {
            let selector = [("station", station), ("actor", actor.name())];
            let mut kills_by_mode = BTreeMap::new();
            for kill in made.iter().filter(|kill| kill.planned.actor == actor) {
                if kill.accepted() {
                    *kills_by_mode.entry(kill.planned.mode).or_insert(0) += 1;
                }
            }
            let latency = after.map(|after| {
                after
                    .histogram(RESTART_SECONDS, &selector)
                    .since(&before.histogram(RESTART_SECONDS, &selector))
            });
            let to_ms = |seconds: f64| seconds * 1000.0;
            KindRow {
                actor,
                kills_planned: plan.iter().filter(|kill| kill.actor == actor).count() as u64,
                kills_made: kills_by_mode.values().sum(),
                kills_by_mode,
                restarts_counted: after.map(|after| {
                    (after.sum(RESTARTS, &selector) - before.sum(RESTARTS, &selector)).max(0.0)
                }),
                heard: attribution
                    .per_kind
                    .get(&actor)
                    .cloned()
                    .unwrap_or_default(),
                restart_samples: latency.as_ref().map(|histogram| histogram.total()),
                restart_p50_ms: latency
                    .as_ref()
                    .and_then(|histogram| histogram.quantile(0.5))
                    .map(to_ms),
                restart_p99_ms: latency
                    .as_ref()
                    .and_then(|histogram| histogram.quantile(0.99))
                    .map(to_ms),
            }
        })
        .collect()
}

fn server_counters(server: &mut ServerSummary, station: &str, before: &Metrics, after: &Metrics) {
    let selector = [("station", station)];
    let delta = |name: &str| after.sum(name, &selector) - before.sum(name, &selector);
    server.escalations = Some(delta(ESCALATIONS));
    server.fallback_switches = Some(delta(FALLBACK_SWITCHES));
    let by = |name: &str, label: &str| -> BTreeMap<String, f64> {
        let earlier = before.sum_by(name, &selector, label);
        after
            .sum_by(name, &selector, label)
            .into_iter()
            .map(|(key, value)| {
                let change = value - earlier.get(&key).copied().unwrap_or(0.0);
                (key, change)
            })
            .filter(|(_, change)| *change != 0.0)
            .collect()
    };
    server.restarts_by_reason = by(RESTARTS, "reason");
    server.listener_disconnects_by_reason = by(LISTENER_DISCONNECTS, "reason");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        chaos: ChaosArgs,
    }

    /// The documented command line, with `changes` replacing or adding options.
    fn args(changes: &[&str]) -> ChaosArgs {
        let mut options = vec![
            ("--url", "http://127.0.0.1:8080"),
            ("--kills", "100"),
            ("--duration-secs", "300"),
            ("--listeners", "200"),
        ];
        for pair in changes.chunks(2) {
            options.retain(|(name, _)| *name != pair[0]);
            options.push((pair[0], pair[1]));
        }
        let mut argv = vec!["chaos"];
        for (name, value) in options {
            argv.extend([name, value]);
        }
        Cli::try_parse_from(argv).unwrap().chaos
    }

    #[test]
    fn the_documented_command_line_is_a_valid_plan() {
        let (target, plan) = args(&["--seed", "42"]).plan(42).unwrap();
        assert_eq!(target.port, 8080);
        assert_eq!(plan.len(), 100);
        let defaults = args(&[]);
        assert_eq!(
            (
                defaults.baseline_secs,
                defaults.heal_secs,
                defaults.quiet_secs
            ),
            (10, 10, 20)
        );
        assert!(!defaults.assert_restart_latency);
    }

    #[test]
    fn bounds_are_checked_before_anything_connects() {
        assert!(matches!(
            args(&["--listeners", "0"]).plan(1),
            Err(ChaosError::Listeners { found: 0 })
        ));
        assert!(matches!(
            args(&["--duration-secs", "0"]).plan(1),
            Err(ChaosError::Duration { found: 0 })
        ));
        assert!(matches!(
            args(&["--baseline-secs", "0"]).plan(1),
            Err(ChaosError::Phase {
                name: "--baseline-secs",
                ..
            })
        ));
        assert!(matches!(
            args(&["--kills", "1000"]).plan(1),
            Err(ChaosError::Schedule(ScheduleError::TooDense { .. }))
        ));
        assert!(matches!(
            args(&["--station", "../admin"]).plan(1),
            Err(ChaosError::StationId { .. })
        ));
        assert!(matches!(
            args(&["--url", "http://10.1.2.3:8080"]).plan(1),
            Err(ChaosError::Target(TargetError::NotLoopback { .. }))
        ));
    }
}
