//! The swarm: checks the plan and the target, ramps listeners up at a fixed rate, one
//! task each on a single thread, samples the server's CPU and memory before, after the
//! ramp and at the end, stops every listener at the end and builds the report.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::time::Instant as TokioInstant;

use crate::http1;
use crate::listener::{self, ListenerKind, ListenerSpec, Transport, Wave};
use crate::proc_stats::{self, ProcError, ProcSample};
use crate::report::{
    ClientReport, MachineReport, OpenFilesReport, ProcPoint, Recorder, Report, ReportError,
    RunInfo, ServerReport, SteadyWindow,
};
use crate::stalls::{SAMPLE_EVERY, ServerSample, closes_by_transport, stall_report};
use crate::storm::{StormPlan, StormRecorder};
use crate::target::{TargetError, TargetUrl};

/// Most listeners one swarm may open.
pub const MAX_LISTENERS: u32 = 20_000;
/// Longest steady phase, and longest ramp.
pub const MAX_DURATION_SECS: u64 = 3600;
/// Descriptors the swarm needs besides one per listener.
const SPARE_FILES: u64 = 64;
/// Pause after the last listener starts before the steady window opens.
const SETTLE: Duration = Duration::from_secs(1);
/// The steady window closes this long before listeners are told to stop.
const END_MARGIN: Duration = Duration::from_millis(100);
/// How long listener tasks get to finish after the end before they are aborted.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// Timeout of the API and metrics requests.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Fractional part of the golden ratio: spreads slow and stalled listeners evenly.
const GOLDEN_FRACTION: f64 = 0.618_033_988_749_894_8;

/// Which transports the listeners use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportMix {
    Ws,
    Http,
    /// Alternately WebSocket and HTTP.
    Mixed,
}

impl TransportMix {
    fn label(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Http => "http",
            Self::Mixed => "mixed",
        }
    }

    fn for_listener(self, index: u32) -> Transport {
        match self {
            Self::Ws => Transport::Ws,
            Self::Http => Transport::Http,
            Self::Mixed if index.is_multiple_of(2) => Transport::Ws,
            Self::Mixed => Transport::Http,
        }
    }
}

/// `sonicforge-loadtests swarm`: a swarm of listeners against a loopback engine.
#[derive(Debug, Clone, clap::Args)]
pub struct SwarmArgs {
    /// Base URL of the engine; loopback only (127.0.0.0/8, ::1, localhost).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Station id.
    #[arg(long, default_value = "main")]
    pub station: String,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: TransportMix,
    /// Listeners to open (at most 20,000).
    #[arg(long, default_value_t = 100)]
    pub listeners: u32,
    /// Listeners started per second during the ramp.
    #[arg(long, default_value_t = 200.0)]
    pub ramp_per_sec: f64,
    /// Seconds to keep listening after the ramp (at most 3600).
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Rendition in kb/s; default the station's highest.
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// Share of listeners that read slower than real time.
    #[arg(long, default_value_t = 0.0)]
    pub slow_fraction: f64,
    /// Share of real time at which slow listeners read.
    #[arg(long, default_value_t = 0.5)]
    pub slow_rate: f64,
    /// Share of listeners that stop reading after their first audio.
    #[arg(long, default_value_t = 0.0)]
    pub stall_fraction: f64,
    /// Stalled listeners read normally until this many seconds after the ramp, then
    /// all stop at once; default: each stops after its first audio.
    #[arg(long)]
    pub stall_at_secs: Option<u64>,
    /// Listeners that connect all at once, after the ramp and --storm-after-secs (the
    /// base listeners and the storm together at most 20,000).
    #[arg(long, default_value_t = 0)]
    pub storm: u32,
    /// Seconds after the ramp when the storm comes.
    #[arg(long, default_value_t = 10)]
    pub storm_after_secs: u64,
    /// Length of the storm window (and of the window before it that it is compared with).
    #[arg(long, default_value_t = 10)]
    pub storm_window_secs: u64,
    /// Process id of the engine, to sample its CPU time and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With --server-pid: seconds to watch the idle server before the first listener,
    /// so its own cost (generation, encoding) can be told from the listeners'.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<String>,
    /// Path of the HTTP stream; `{station}` is replaced by the station id.
    #[arg(long, default_value = "/stations/{station}/stream.opus")]
    pub http_path: String,
    /// Nominal rate of the HTTP stream in kb/s; default the bitrate.
    #[arg(long)]
    pub nominal_kbps: Option<u32>,
    /// The target is a peer server (Icecast), not a SonicForge engine: read neither the
    /// station API nor /metrics; needs --bitrate and --transport http.
    #[arg(long)]
    pub peer: bool,
    /// Seconds allowed for connect and handshake.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout_secs: u64,
    /// Seconds from connect start to the first audio.
    #[arg(long, default_value_t = 15)]
    pub first_audio_timeout_secs: u64,
    /// Seconds without any message before a listener gives up.
    #[arg(long, default_value_t = 5)]
    pub idle_timeout_secs: u64,
}

/// Why a swarm cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("--listeners {found} is outside 1..={MAX_LISTENERS}")]
    Listeners { found: u32 },
    #[error("--listeners {listeners} and --storm {storm} add up to more than {MAX_LISTENERS}")]
    StormListeners { listeners: u32, storm: u32 },
    #[error(
        "the storm (--storm-after-secs {after} + --storm-window-secs {window}) must fit in --duration-secs {duration}, with a window of at least 1 s"
    )]
    StormWindow {
        after: u64,
        window: u64,
        duration: u64,
    },
    #[error("--stall-at-secs {found} must come before the end (--duration-secs {duration})")]
    StallAt { found: u64, duration: u64 },
    #[error("--duration-secs {found} is outside 1..={MAX_DURATION_SECS}")]
    Duration { found: u64 },
    #[error("--ramp-per-sec {found} must be positive and the ramp at most {MAX_DURATION_SECS} s")]
    Ramp { found: f64 },
    #[error("{name} {found} must be between 0 and 1")]
    Fraction { name: &'static str, found: f64 },
    #[error("--slow-fraction and --stall-fraction add up to {sum}, more than 1")]
    FractionSum { sum: f64 },
    #[error("{name} {found} s is out of range (timeouts 1..=3600 s, baseline at most 600 s)")]
    Timeout { name: &'static str, found: u64 },
    #[error("station id {found:?} must be letters, digits, '-', '_' or '.'")]
    StationId { found: String },
    #[error("--peer needs --bitrate (a peer has no station API) and --transport http")]
    Peer,
    #[error("--http-path {found:?} must start with '/' and hold no spaces or control characters")]
    HttpPath { found: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot reach the engine's station API: {0}")]
    Api(#[from] http1::GetError),
    #[error("station {station:?} is unknown to the engine (HTTP {status}): {body}")]
    Station {
        station: String,
        status: u16,
        body: String,
    },
    #[error("the station API answered with JSON this client does not understand: {0}")]
    StationJson(serde_json::Error),
    #[error("station {station:?} has no {bitrate} kb/s rendition; it has {renditions:?}")]
    Bitrate {
        station: String,
        bitrate: u32,
        renditions: Vec<u32>,
    },
    #[error("cannot sample the server process: {0}")]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What the station API says about the station (other fields are ignored).
#[derive(Debug, Deserialize)]
struct StationInfo {
    renditions: Vec<u32>,
}

/// Shared by every listener task of the swarm (all on one thread).
#[derive(Debug)]
pub struct SwarmContext {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: String,
    pub station: String,
    pub bitrate: u32,
    /// `/stations/{id}/ws?bitrate=N`
    pub ws_path: String,
    /// The HTTP stream path with its query.
    pub http_path: String,
    pub nominal_kbps: u32,
    pub slow_rate: f64,
    /// When every listener stops.
    pub end_at: TokioInstant,
    pub connect_timeout: Duration,
    pub first_audio_timeout: Duration,
    pub idle_timeout: Duration,
    pub recorder: RefCell<Recorder>,
    /// Listeners connected now.
    pub connected: Cell<u64>,
    /// When the storm's listeners start connecting, if there is a storm.
    pub storm_start: Option<Instant>,
    /// When stalled listeners stop reading; none: at their first audio.
    pub stall_at: Option<Instant>,
}

impl SwarmContext {
    /// A context for listener tests: station `main` at 128 kb/s on `addr`, ending `run_for` from now.
    #[cfg(test)]
    pub fn for_test(addr: SocketAddr, run_for: Duration) -> Result<Self, ReportError> {
        let now = Instant::now();
        Ok(Self {
            addr,
            authority: addr.to_string(),
            station: "main".into(),
            bitrate: 128,
            ws_path: "/stations/main/ws?bitrate=128".into(),
            http_path: "/stations/main/stream.opus?bitrate=128".into(),
            nominal_kbps: 128,
            slow_rate: 0.5,
            end_at: (now + run_for).into(),
            connect_timeout: Duration::from_secs(5),
            first_audio_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(2),
            recorder: RefCell::new(Recorder::new(SteadyWindow {
                start: now,
                end: now + run_for,
            })?),
            connected: Cell::new(0),
            storm_start: None,
            stall_at: None,
        })
    }
}

impl SwarmArgs {
    /// Checks every bound before anything connects.
    pub fn validate(&self) -> Result<TargetUrl, SwarmError> {
        if !(1..=MAX_LISTENERS).contains(&self.listeners) {
            return Err(SwarmError::Listeners {
                found: self.listeners,
            });
        }
        if !(1..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return Err(SwarmError::Duration {
                found: self.duration_secs,
            });
        }
        if !(self.ramp_per_sec.is_finite() && self.ramp_per_sec > 0.0)
            || f64::from(self.listeners) / self.ramp_per_sec > MAX_DURATION_SECS as f64
        {
            return Err(SwarmError::Ramp {
                found: self.ramp_per_sec,
            });
        }
        if self.listeners.saturating_add(self.storm) > MAX_LISTENERS {
            return Err(SwarmError::StormListeners {
                listeners: self.listeners,
                storm: self.storm,
            });
        }
        if self.storm > 0
            && (self.storm_window_secs == 0
                || self.storm_after_secs.saturating_add(self.storm_window_secs)
                    > self.duration_secs)
        {
            return Err(SwarmError::StormWindow {
                after: self.storm_after_secs,
                window: self.storm_window_secs,
                duration: self.duration_secs,
            });
        }
        if let Some(stall_at) = self.stall_at_secs
            && stall_at >= self.duration_secs
        {
            return Err(SwarmError::StallAt {
                found: stall_at,
                duration: self.duration_secs,
            });
        }
        for (name, found) in [
            ("--slow-fraction", self.slow_fraction),
            ("--stall-fraction", self.stall_fraction),
            ("--slow-rate", self.slow_rate),
        ] {
            if !(0.0..=1.0).contains(&found) {
                return Err(SwarmError::Fraction { name, found });
            }
        }
        if self.slow_rate <= 0.0 {
            return Err(SwarmError::Fraction {
                name: "--slow-rate",
                found: self.slow_rate,
            });
        }
        let sum = self.slow_fraction + self.stall_fraction;
        if sum > 1.0 {
            return Err(SwarmError::FractionSum { sum });
        }
        if self.baseline_secs > 600 {
            return Err(SwarmError::Timeout {
                name: "--baseline-secs",
                found: self.baseline_secs,
            });
        }
        for (name, found) in [
            ("--connect-timeout-secs", self.connect_timeout_secs),
            ("--first-audio-timeout-secs", self.first_audio_timeout_secs),
            ("--idle-timeout-secs", self.idle_timeout_secs),
        ] {
            if !(1..=3600).contains(&found) {
                return Err(SwarmError::Timeout { name, found });
            }
        }
        let id_ok = !self.station.is_empty()
            && self.station.len() <= 128
            && self
                .station
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(SwarmError::StationId {
                found: self.station.clone(),
            });
        }
        let path_ok = self.http_path.starts_with('/')
            && self.http_path.len() <= 1024
            && !self
                .http_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !path_ok {
            return Err(SwarmError::HttpPath {
                found: self.http_path.clone(),
            });
        }
        if self.peer && (self.bitrate.is_none() || self.transport != TransportMix::Http) {
            return Err(SwarmError::Peer);
        }
        Ok(TargetUrl::parse(&self.url)?)
    }

    fn http_stream_path(&self, bitrate: u32) -> String {
        let path = self.http_path.replace("{station}", &self.station);
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}bitrate={bitrate}")
    }
}

/// Which kind listener `index` is: a low-discrepancy sequence spreads each kind evenly
/// over the ramp and over both transports.
pub fn listener_kind(index: u32, slow_fraction: f64, stall_fraction: f64) -> ListenerKind {
    let position = (f64::from(index) * GOLDEN_FRACTION).fract();
    if position < stall_fraction {
        ListenerKind::Stalled
    } else if position < stall_fraction + slow_fraction {
        ListenerKind::Slow
    } else {
        ListenerKind::Normal
    }
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Asks the engine for the station and picks the rendition.
async fn station_bitrate(
    args: &SwarmArgs,
    addr: SocketAddr,
    authority: &str,
) -> Result<u32, SwarmError> {
    let path = format!("/api/stations/{}", args.station);
    let response = http1::get(addr, authority, &path, API_TIMEOUT).await?;
    if response.status != 200 {
        return Err(SwarmError::Station {
            station: args.station.clone(),
            status: response.status,
            body: String::from_utf8_lossy(&response.body)
                .chars()
                .take(300)
                .collect(),
        });
    }
    let info: StationInfo =
        serde_json::from_slice(&response.body).map_err(SwarmError::StationJson)?;
    match args.bitrate {
        Some(bitrate) if info.renditions.contains(&bitrate) => Ok(bitrate),
        Some(bitrate) => Err(SwarmError::Bitrate {
            station: args.station.clone(),
            bitrate,
            renditions: info.renditions,
        }),
        None => info
            .renditions
            .iter()
            .copied()
            .max()
            .ok_or(SwarmError::Bitrate {
                station: args.station.clone(),
                bitrate: 0,
                renditions: Vec::new(),
            }),
    }
}

/// The engine's own `sonicforge_*` series from `/metrics` (histogram buckets left out).
async fn scrape_metrics(addr: SocketAddr, authority: &str) -> Option<BTreeMap<String, f64>> {
    let response = http1::get(addr, authority, "/metrics", API_TIMEOUT)
        .await
        .ok()?;
    (response.status == 200).then(|| parse_metrics(&String::from_utf8_lossy(&response.body)))
}

/// Parses Prometheus text lines `name{labels} value`, keeping `sonicforge_*` series.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| line.starts_with("sonicforge_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            if name.ends_with("_bucket") {
                return None;
            }
            Some((series.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn proc_point(sample: ProcSample, start: Instant, ticks_per_second: u64) -> ProcPoint {
    ProcPoint {
        at_secs: sample.at.saturating_duration_since(start).as_secs_f64(),
        cpu_secs: sample.cpu_ticks as f64 / ticks_per_second as f64,
        rss_mib: sample.rss_bytes as f64 / (1024.0 * 1024.0),
    }
}

/// Runs the whole swarm on the current thread's `LocalSet` and returns the report.
pub async fn run(args: &SwarmArgs) -> Result<Report, SwarmError> {
    let target = args.validate()?;
    let mut warnings = Vec::new();
    let limit = proc_stats::raise_open_files_limit();
    let all_listeners = args.listeners + args.storm;
    let needed = u64::from(all_listeners) + SPARE_FILES;
    if !limit.allows(needed) {
        warnings.push(format!(
            "open-file limit {:?} is below the {needed} descriptors {all_listeners} listeners need; some connects will fail",
            limit.soft
        ));
    }
    let addr = target.resolve().await?;
    let authority = target.authority();
    let (bitrate, metrics_before) = match args.bitrate {
        Some(bitrate) if args.peer => (bitrate, None),
        _ => (
            station_bitrate(args, addr, &authority).await?,
            scrape_metrics(addr, &authority).await,
        ),
    };
    let nominal_kbps = args.nominal_kbps.unwrap_or(bitrate);
    let ticks_per_second = proc_stats::clock_ticks_per_second();
    let own_pid = std::process::id();
    let client_before = proc_stats::sample(own_pid)?;
    let baseline_start = args.server_pid.map(proc_stats::sample).transpose()?;
    if baseline_start.is_some() && args.baseline_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
    }
    let server_before = args.server_pid.map(proc_stats::sample).transpose()?;

    let start = Instant::now();
    let started_unix_ms = unix_ms_now();
    let ramp = Duration::from_secs_f64(f64::from(args.listeners) / args.ramp_per_sec);
    let duration = Duration::from_secs(args.duration_secs);
    let end_at = start + ramp + duration;
    let settle = SETTLE.min(duration / 4);
    let window = SteadyWindow {
        start: start + ramp + settle,
        end: (end_at - END_MARGIN).max(start + ramp + settle),
    };
    let ramp_end = start + ramp;
    let storm_plan = (args.storm > 0).then(|| {
        let storm_start = ramp_end + Duration::from_secs(args.storm_after_secs);
        let window = Duration::from_secs(args.storm_window_secs);
        StormPlan {
            start: storm_start,
            window,
            before_from: storm_start
                .checked_sub(window)
                .map_or(ramp_end, |from| from.max(ramp_end)),
        }
    });
    let mut recorder = Recorder::new(window)?;
    if let Some(plan) = storm_plan {
        recorder = recorder.with_storm(StormRecorder::new(plan)?);
    }
    let ctx = Rc::new(SwarmContext {
        addr,
        authority: authority.clone(),
        station: args.station.clone(),
        bitrate,
        ws_path: format!("/stations/{}/ws?bitrate={bitrate}", args.station),
        http_path: args.http_stream_path(bitrate),
        nominal_kbps,
        slow_rate: args.slow_rate,
        end_at: end_at.into(),
        connect_timeout: Duration::from_secs(args.connect_timeout_secs),
        first_audio_timeout: Duration::from_secs(args.first_audio_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        recorder: RefCell::new(recorder),
        connected: Cell::new(0),
        storm_start: storm_plan.map(|plan| plan.start),
        stall_at: args
            .stall_at_secs
            .map(|secs| ramp_end + Duration::from_secs(secs)),
    });
    // The server once a second, when the run has stalls or a storm to watch.
    let samples = Rc::new(RefCell::new(Vec::new()));
    let sampler = args
        .server_pid
        .filter(|_| args.stall_fraction > 0.0 || args.storm > 0)
        .map(|pid| {
            let read_closes = !args.peer;
            tokio::task::spawn_local(sample_server(
                pid,
                read_closes.then_some((addr, authority.clone(), args.station.clone())),
                end_at,
                Rc::clone(&samples),
            ))
        });

    let mut tasks = Vec::with_capacity(args.listeners as usize);
    for index in 0..args.listeners {
        let due = start + Duration::from_secs_f64(f64::from(index) / args.ramp_per_sec);
        tokio::time::sleep_until(due.into()).await;
        let spec = ListenerSpec {
            index,
            transport: args.transport.for_listener(index),
            kind: listener_kind(index, args.slow_fraction, args.stall_fraction),
            wave: Wave::Base,
        };
        tasks.push(tokio::task::spawn_local(listener::run(
            Rc::clone(&ctx),
            spec,
        )));
    }

    tokio::time::sleep_until(
        window
            .start
            .min(ctx.storm_start.unwrap_or(window.start))
            .into(),
    )
    .await;
    let listeners_after_ramp = ctx.connected.get();
    let server_after_ramp = args.server_pid.map(proc_stats::sample).transpose()?;
    let machine_after_ramp = proc_stats::machine_cpu()?;
    let client_after_ramp = proc_stats::sample(own_pid)?;
    let load_after_ramp = load_average();
    if let Some(storm_start) = ctx.storm_start {
        tokio::time::sleep_until(storm_start.into()).await;
        // All at once: no ramp, every connect starts in this one pass.
        for index in args.listeners..all_listeners {
            let spec = ListenerSpec {
                index,
                transport: args.transport.for_listener(index),
                kind: ListenerKind::Normal,
                wave: Wave::Storm,
            };
            tasks.push(tokio::task::spawn_local(listener::run(
                Rc::clone(&ctx),
                spec,
            )));
        }
    }
    tokio::time::sleep_until(window.end.into()).await;
    let server_end = args.server_pid.map(proc_stats::sample).transpose()?;
    let machine_end = proc_stats::machine_cpu()?;
    let client_steady_end = proc_stats::sample(own_pid)?;

    let finish_by = TokioInstant::from_std(end_at + FINISH_GRACE);
    let mut aborted = 0u64;
    for task in &mut tasks {
        if tokio::time::timeout_at(finish_by, &mut *task)
            .await
            .is_err()
        {
            task.abort();
            aborted += 1;
        }
    }
    if aborted > 0 {
        warnings.push(format!(
            "{aborted} listener tasks were still running {} s after the end and were aborted; they are missing from the figures",
            FINISH_GRACE.as_secs()
        ));
    }
    let wall = start.elapsed();
    let metrics_after = if args.peer {
        None
    } else {
        scrape_metrics(addr, &authority).await
    };
    let client_end = proc_stats::sample(own_pid)?;
    if let Some(sampler) = sampler {
        sampler.abort();
    }

    let recorder = ctx.recorder.borrow();
    let storm = recorder.storm_report(args.storm);
    let stalls = if args.stall_fraction > 0.0 {
        let (stall_times, stall_drops) = recorder.stalls();
        Some(stall_report(
            start,
            stall_times,
            stall_drops,
            &samples.borrow(),
        )?)
    } else {
        None
    };
    let (groups, totals) = recorder.summaries()?;
    let steady_secs = window
        .end
        .saturating_duration_since(window.start)
        .as_secs_f64();
    let server = match (
        args.server_pid,
        baseline_start,
        server_before,
        server_after_ramp,
        server_end,
    ) {
        (Some(pid), Some(baseline), Some(before), Some(after_ramp), Some(end)) => {
            let steady_cpu_secs =
                end.cpu_ticks.saturating_sub(after_ramp.cpu_ticks) as f64 / ticks_per_second as f64;
            let measured_secs = end
                .at
                .saturating_duration_since(after_ramp.at)
                .as_secs_f64();
            let listener_hours = recorder.steady_listener_hours();
            let baseline_secs = before
                .at
                .saturating_duration_since(baseline.at)
                .as_secs_f64();
            let idle_cpu_percent = (baseline_secs > 0.0).then(|| {
                before.cpu_ticks.saturating_sub(baseline.cpu_ticks) as f64
                    / ticks_per_second as f64
                    / baseline_secs
                    * 100.0
            });
            let listener_cpu_secs =
                idle_cpu_percent.map(|idle| steady_cpu_secs - idle / 100.0 * measured_secs);
            Some(ServerReport {
                pid,
                clock_ticks_per_second: ticks_per_second,
                before: proc_point(before, start, ticks_per_second),
                after_ramp: proc_point(after_ramp, start, ticks_per_second),
                end: proc_point(end, start, ticks_per_second),
                listeners_after_ramp,
                steady_secs: measured_secs,
                steady_cpu_secs,
                steady_cpu_percent: if measured_secs > 0.0 {
                    steady_cpu_secs / measured_secs * 100.0
                } else {
                    0.0
                },
                steady_listener_hours: listener_hours,
                cpu_secs_per_listener_hour: (listener_hours > 0.0)
                    .then(|| steady_cpu_secs / listener_hours),
                baseline_secs,
                idle_cpu_percent,
                listener_cpu_secs_per_listener_hour: listener_cpu_secs
                    .filter(|_| listener_hours > 0.0)
                    .map(|cpu| cpu / listener_hours),
                rss_per_listener_kib: (listeners_after_ramp > 0).then(|| {
                    (after_ramp.rss_bytes as f64 - before.rss_bytes as f64)
                        / 1024.0
                        / listeners_after_ramp as f64
                }),
                metrics_delta: metrics_delta(metrics_before.as_ref(), metrics_after.as_ref()),
            })
        }
        _ => None,
    };
    if !args.peer && (metrics_before.is_none() || metrics_after.is_none()) {
        warnings.push(
            "the engine's /metrics could not be read; no server-side counters in the report".into(),
        );
    }
    let ticks = |from: u64, to: u64| to.saturating_sub(from) as f64 / ticks_per_second as f64;
    let steady_wall = client_steady_end
        .at
        .saturating_duration_since(client_after_ramp.at)
        .as_secs_f64()
        .max(f64::EPSILON);
    let machine_busy = ticks(machine_after_ramp.busy_ticks, machine_end.busy_ticks);
    let client_steady = ticks(client_after_ramp.cpu_ticks, client_steady_end.cpu_ticks);
    let server_steady = server.as_ref().map_or(0.0, |server| server.steady_cpu_secs);
    let machine = MachineReport {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_after_ramp: load_after_ramp,
        steady_busy_cores: machine_busy / steady_wall,
        steady_swarm_cores: client_steady / steady_wall,
        steady_other_cores: server
            .as_ref()
            .map(|_| ((machine_busy - client_steady - server_steady) / steady_wall).max(0.0)),
    };
    if let Some(other) = machine.steady_other_cores
        && other > 0.25
    {
        warnings.push(format!(
            "other processes kept {other:.2} of {} cores busy during the steady window; the figures include that contention",
            machine.cores
        ));
    }
    let client_cpu_secs = client_end.cpu_ticks.saturating_sub(client_before.cpu_ticks) as f64
        / ticks_per_second as f64;
    Ok(Report {
        run: RunInfo {
            url: args.url.clone(),
            station: args.station.clone(),
            transport: args.transport.label().to_owned(),
            listeners: args.listeners,
            ramp_per_sec: args.ramp_per_sec,
            duration_secs: args.duration_secs,
            bitrate_kbps: bitrate,
            nominal_kbps,
            slow_fraction: args.slow_fraction,
            slow_rate: args.slow_rate,
            stall_fraction: args.stall_fraction,
            stall_at_secs: args.stall_at_secs,
            storm_listeners: args.storm,
            storm_after_secs: (args.storm > 0).then_some(args.storm_after_secs),
            started_unix_ms,
            ramp_secs: ramp.as_secs_f64(),
            steady_secs,
            wall_secs: wall.as_secs_f64(),
        },
        open_files: OpenFilesReport {
            limit,
            needed,
            sufficient: limit.allows(needed),
        },
        groups,
        totals,
        server,
        machine,
        client: ClientReport {
            cpu_secs: client_cpu_secs,
            cpu_percent: client_cpu_secs / wall.as_secs_f64().max(f64::EPSILON) * 100.0,
            rss_mib: client_end.rss_bytes as f64 / (1024.0 * 1024.0),
            aborted_listeners: aborted,
        },
        storm,
        stalls,
        warnings,
    })
}

/// Reads the server's memory (and, given the engine's address, its stall closes) every
/// [`SAMPLE_EVERY`] until `end_at` or until the process is gone.
async fn sample_server(
    pid: u32,
    engine: Option<(SocketAddr, String, String)>,
    end_at: Instant,
    samples: Rc<RefCell<Vec<ServerSample>>>,
) {
    let mut next = Instant::now();
    while next <= end_at {
        tokio::time::sleep_until(next.into()).await;
        next += SAMPLE_EVERY;
        let closed = match &engine {
            Some((addr, authority, station)) => scrape_metrics(*addr, authority)
                .await
                .map(|metrics| closes_by_transport(&metrics, station)),
            None => None,
        };
        let Ok(sample) = proc_stats::sample(pid) else {
            return;
        };
        samples.borrow_mut().push(ServerSample {
            at: sample.at,
            rss_bytes: sample.rss_bytes,
            closed,
        });
    }
}

/// Series whose value changed between the two scrapes.
fn metrics_delta(
    before: Option<&BTreeMap<String, f64>>,
    after: Option<&BTreeMap<String, f64>>,
) -> BTreeMap<String, f64> {
    let (Some(before), Some(after)) = (before, after) else {
        return BTreeMap::new();
    };
    after
        .iter()
        .filter_map(|(series, value)| {
            let delta = value - before.get(series).copied().unwrap_or(0.0);
            (delta != 0.0).then(|| (series.clone(), delta))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        swarm: SwarmArgs,
    }

    fn args(extra: &[&str]) -> SwarmArgs {
        let mut argv = vec!["swarm"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().swarm
    }

    #[test]
    fn defaults_are_a_valid_loopback_plan() {
        let target = args(&[]).validate().unwrap();
        assert_eq!(target.port, 8080);
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(matches!(
            args(&["--listeners", "20001"]).validate(),
            Err(SwarmError::Listeners { found: 20_001 })
        ));
        assert!(matches!(
            args(&["--listeners", "0"]).validate(),
            Err(SwarmError::Listeners { .. })
        ));
        assert!(matches!(
            args(&["--duration-secs", "3601"]).validate(),
            Err(SwarmError::Duration { found: 3601 })
        ));
        assert!(matches!(
            args(&["--ramp-per-sec", "0"]).validate(),
            Err(SwarmError::Ramp { .. })
        ));
        assert!(matches!(
            args(&["--listeners", "20000", "--ramp-per-sec", "1"]).validate(),
            Err(SwarmError::Ramp { .. })
        ));
        assert!(matches!(
            args(&["--slow-fraction", "0.7", "--stall-fraction", "0.5"]).validate(),
            Err(SwarmError::FractionSum { .. })
        ));
        assert!(matches!(
            args(&["--slow-rate", "0"]).validate(),
            Err(SwarmError::Fraction {
                name: "--slow-rate",
                ..
            })
        ));
        assert!(matches!(
            args(&["--url", "http://192.168.0.2:8080"]).validate(),
            Err(SwarmError::Target(TargetError::NotLoopback { .. }))
        ));
        assert!(matches!(
            args(&["--station", "../admin"]).validate(),
            Err(SwarmError::StationId { .. })
        ));
        assert!(matches!(
            args(&["--peer", "--transport", "http"]).validate(),
            Err(SwarmError::Peer)
        ));
        assert!(matches!(
            args(&["--peer", "--bitrate", "128"]).validate(),
            Err(SwarmError::Peer)
        ));
        assert!(
            args(&["--peer", "--bitrate", "128", "--transport", "http"])
                .validate()
                .is_ok()
        );
        assert!(matches!(
            args(&["--http-path", "/x\r\nHost: evil"]).validate(),
            Err(SwarmError::HttpPath { .. })
        ));
    }

    #[test]
    fn storm_and_stall_moment_are_bounded() {
        assert!(matches!(
            args(&["--listeners", "15000", "--storm", "5001"]).validate(),
            Err(SwarmError::StormListeners {
                listeners: 15_000,
                storm: 5001
            })
        ));
        assert!(
            args(&[
                "--listeners",
                "15000",
                "--storm",
                "5000",
                "--ramp-per-sec",
                "500"
            ])
            .validate()
            .is_ok()
        );
        // The storm and its window must fit in the listening time.
        assert!(matches!(
            args(&["--storm", "10", "--duration-secs", "15"]).validate(),
            Err(SwarmError::StormWindow { .. })
        ));
        assert!(matches!(
            args(&["--storm", "10", "--storm-window-secs", "0"]).validate(),
            Err(SwarmError::StormWindow { .. })
        ));
        assert!(
            args(&[
                "--storm",
                "10",
                "--storm-after-secs",
                "5",
                "--duration-secs",
                "15"
            ])
            .validate()
            .is_ok()
        );
        assert!(matches!(
            args(&["--stall-at-secs", "60"]).validate(),
            Err(SwarmError::StallAt { found: 60, .. })
        ));
        assert!(args(&["--stall-at-secs", "59"]).validate().is_ok());
    }

    #[test]
    fn http_path_gets_the_station_and_bitrate() {
        assert_eq!(
            args(&[]).http_stream_path(64),
            "/stations/main/stream.opus?bitrate=64"
        );
        assert_eq!(
            args(&["--http-path", "/listen?station={station}"]).http_stream_path(128),
            "/listen?station=main&bitrate=128"
        );
    }

    #[test]
    fn kinds_are_spread_in_the_asked_proportions() {
        let mut counts = [0u32; 3];
        for index in 0..1000 {
            counts[listener_kind(index, 0.2, 0.05) as usize] += 1;
        }
        assert!(
            (195..=205).contains(&counts[ListenerKind::Slow as usize]),
            "{counts:?}"
        );
        assert!(
            (47..=53).contains(&counts[ListenerKind::Stalled as usize]),
            "{counts:?}"
        );
        // The first hundred already hold their share.
        let early_slow = (0..100)
            .filter(|&i| listener_kind(i, 0.2, 0.05) == ListenerKind::Slow)
            .count();
        assert!((18..=22).contains(&early_slow), "{early_slow}");
        assert!((0..500).all(|i| listener_kind(i, 0.0, 0.0) == ListenerKind::Normal));
    }

    #[test]
    fn mixed_transport_alternates() {
        let kinds: Vec<Transport> = (0..4)
            .map(|i| TransportMix::Mixed.for_listener(i))
            .collect();
        assert_eq!(
            kinds,
            [
                Transport::Ws,
                Transport::Http,
                Transport::Ws,
                Transport::Http
            ]
        );
    }

    #[test]
    fn metrics_text_keeps_engine_series_and_their_changes() {
        let before = parse_metrics(
            "# HELP x\nsonicforge_listener_disconnects_total{reason=\"stalled\"} 2\nsonicforge_listeners 5\nprocess_cpu 1\nsonicforge_x_bucket{le=\"1\"} 3\n",
        );
        assert_eq!(before.len(), 2);
        let after = parse_metrics(
            "sonicforge_listener_disconnects_total{reason=\"stalled\"} 7\nsonicforge_listeners 5\n",
        );
        let delta = metrics_delta(Some(&before), Some(&after));
        assert_eq!(delta.len(), 1);
        assert_eq!(
            delta["sonicforge_listener_disconnects_total{reason=\"stalled\"}"],
            5.0
        );
    }
}
