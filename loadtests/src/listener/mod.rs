//! One simulated listener: its kind, how its session ended, and the small fixed-size
//! meter it fills while audio arrives. The WebSocket and HTTP clients live in
//! [`ws`] and [`http`]; both report through [`crate::report::Recorder`].

pub mod http;
pub mod ws;

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::GroupStats;
use crate::swarm::SwarmContext;
use crate::wire::{PACKET_SAMPLES, SAMPLES_PER_MS};

/// A unit of audio arriving this much later than its own duration after the previous
/// one is late: a 20 ms packet 60 ms after the previous one, a 100 ms page after 140 ms.
pub const LATE_SLACK: Duration = Duration::from_millis(40);
/// How often a stalled listener checks whether the server dropped its connection.
const STALL_POLL: Duration = Duration::from_millis(250);
/// Keepalive timing for stalled listeners, so a connection the server has given up on
/// is noticed without reading.
const STALL_KEEPALIVE: Duration = Duration::from_secs(1);
/// How long a listener waits for its close to be written at the end of the run.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Http,
}

impl Transport {
    pub const ALL: [Self; 2] = [Self::Ws, Self::Http];

    pub fn label(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Http => "http",
        }
    }
}

/// How a listener consumes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Reads everything as it arrives.
    Normal,
    /// Reads at a fraction of the nominal rate.
    Slow,
    /// Stops reading after its first audio.
    Stalled,
}

impl ListenerKind {
    pub const ALL: [Self; 3] = [Self::Normal, Self::Slow, Self::Stalled];

    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Slow => "slow",
            Self::Stalled => "stalled",
        }
    }
}

/// Whether a listener came with the ramp or with the storm after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    /// Started by the ramp.
    Base,
    /// Started with every other storm listener at once; its time to first audio
    /// counts from the storm's start.
    Storm,
}

/// Which listener this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    pub index: u32,
    pub transport: Transport,
    pub kind: ListenerKind,
    pub wave: Wave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// TCP connect, request and handshake.
    Connect,
    /// Connected, but no audio arrived in time.
    FirstAudio,
    /// Audio stopped arriving.
    Idle,
}

/// How a listener's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Still connected when the run ended.
    RunEnded,
    /// The server sent a WebSocket close frame.
    ServerClosed {
        code: u16,
        reason: String,
    },
    /// The server ended the stream without a close frame (EOF, end of body).
    ServerEof,
    /// A stalled listener's connection was reset or timed out by the server.
    DroppedWhileStalled,
    /// TCP connect failed.
    ConnectError(std::io::ErrorKind),
    /// The server answered the request or upgrade with a non-success status.
    Rejected {
        status: u16,
    },
    /// The server sent something that breaks the protocol.
    Protocol(String),
    Timeout(TimeoutKind),
    /// The connection failed mid-stream.
    Io(std::io::ErrorKind),
}

impl EndReason {
    /// The key under which the report counts this ending.
    pub fn label(&self) -> String {
        match self {
            Self::RunEnded => "run_ended".into(),
            Self::ServerClosed { code, reason } if reason.is_empty() => {
                format!("server_closed ({code})")
            }
            Self::ServerClosed { code, reason } => format!("server_closed: {reason} ({code})"),
            Self::ServerEof => "server_eof".into(),
            Self::DroppedWhileStalled => "dropped_while_stalled".into(),
            Self::ConnectError(kind) => format!("connect_error: {kind}"),
            Self::Rejected { status } => format!("rejected: http {status}"),
            Self::Protocol(_) => "protocol_error".into(),
            Self::Timeout(TimeoutKind::Connect) => "timeout: connect".into(),
            Self::Timeout(TimeoutKind::FirstAudio) => "timeout: first_audio".into(),
            Self::Timeout(TimeoutKind::Idle) => "timeout: idle".into(),
            Self::Io(kind) => format!("io_error: {kind}"),
        }
    }
}

/// One listener's running figures: a fixed-size struct, updated per audio unit.
#[derive(Debug, Clone)]
pub struct Meter {
    pub connect_started: Instant,
    pub established_at: Option<Instant>,
    pub first_audio: Option<Instant>,
    pub last_audio: Option<Instant>,
    pub max_gap: Duration,
    /// Audio messages (WebSocket) or audio pages (HTTP).
    pub units: u64,
    /// Audio payload bytes (WebSocket messages; HTTP body bytes).
    pub bytes: u64,
    pub audio_samples: u64,
    pub pre_roll_units: u64,
    pub late: u64,
    pub discontinuities: u64,
    pub skipped_packets: u64,
    /// Timestamps that did not follow on without a discontinuity flag (WebSocket), or
    /// granule positions that disagree with the packets on the page (HTTP).
    pub unflagged_jumps: u64,
    pub now_playing_messages: u64,
    pub last_pts: Option<u64>,
    pub stalled_at: Option<Instant>,
    pub dropped_at: Option<Instant>,
}

impl Meter {
    pub fn new(connect_started: Instant) -> Self {
        Self {
            connect_started,
            established_at: None,
            first_audio: None,
            last_audio: None,
            max_gap: Duration::ZERO,
            units: 0,
            bytes: 0,
            audio_samples: 0,
            pre_roll_units: 0,
            late: 0,
            discontinuities: 0,
            skipped_packets: 0,
            unflagged_jumps: 0,
            now_playing_messages: 0,
            last_pts: None,
            stalled_at: None,
            dropped_at: None,
        }
    }

    /// Records one unit of audio (`samples` at 48 kHz, `bytes` on the wire) arriving at `now`.
    pub fn audio_arrived(
        &mut self,
        now: Instant,
        samples: u64,
        bytes: u64,
        group: &mut GroupStats,
    ) {
        if self.first_audio.is_none() {
            self.first_audio = Some(now);
            group.record_time_to_first_audio(now.saturating_duration_since(self.connect_started));
        }
        if let Some(previous) = self.last_audio {
            let gap = now.saturating_duration_since(previous);
            group.record_gap(gap);
            self.max_gap = self.max_gap.max(gap);
            if gap > samples_to_duration(samples) + LATE_SLACK {
                self.late += 1;
            }
        }
        self.last_audio = Some(now);
        self.units += 1;
        self.bytes += bytes;
        self.audio_samples += samples;
    }

    /// Checks a WebSocket packet's timestamp against the previous one.
    pub fn packet_timestamp(&mut self, pts: u64, discontinuity: bool) {
        if discontinuity {
            self.discontinuities += 1;
        }
        if let Some(previous) = self.last_pts {
            let expected = previous + PACKET_SAMPLES;
            if pts != expected {
                if pts > expected {
                    self.skipped_packets += (pts - expected).div_ceil(PACKET_SAMPLES);
                }
                if !discontinuity {
                    self.unflagged_jumps += 1;
                }
            }
        }
        self.last_pts = Some(pts);
    }

    /// Audio received per second of listening since the first audio (1.0 = real time),
    /// once at least a second has passed.
    pub fn receive_ratio(&self, until: Instant) -> Option<f64> {
        let since = self.first_audio?;
        let elapsed = until.saturating_duration_since(since);
        (elapsed >= Duration::from_secs(1))
            .then(|| self.audio_samples as f64 / (elapsed.as_secs_f64() * 48_000.0))
    }

    /// Payload bits per second since the first audio.
    pub fn receive_bits_per_second(&self, until: Instant) -> Option<f64> {
        let since = self.first_audio?;
        let elapsed = until.saturating_duration_since(since);
        (elapsed >= Duration::from_secs(1)).then(|| self.bytes as f64 * 8.0 / elapsed.as_secs_f64())
    }
}

fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1000 / SAMPLES_PER_MS)
}

/// Runs one listener to its end and hands its figures to the recorder.
pub async fn run(ctx: Rc<SwarmContext>, spec: ListenerSpec) {
    let connect_started = match (spec.wave, ctx.storm_start) {
        (Wave::Storm, Some(storm_start)) => storm_start,
        _ => Instant::now(),
    };
    let mut meter = Meter::new(connect_started);
    let end = match spec.transport {
        Transport::Ws => ws::listen(&ctx, spec, &mut meter).await,
        Transport::Http => http::listen(&ctx, spec, &mut meter).await,
    };
    if meter.established_at.is_some() {
        ctx.connected.set(ctx.connected.get().saturating_sub(1));
    }
    ctx.recorder
        .borrow_mut()
        .finish(spec, &meter, &end, Instant::now());
}

/// Marks the listener connected (counted in the swarm's connected gauge).
fn established(ctx: &SwarmContext, meter: &mut Meter) {
    meter.established_at = Some(Instant::now());
    ctx.connected.set(ctx.connected.get() + 1);
}

/// Socket options every listener gets; stalled ones also probe a connection they no
/// longer read, so a server that gave up on them is noticed.
fn tune_socket(stream: &tokio::net::TcpStream, kind: ListenerKind) {
    let socket = socket2::SockRef::from(stream);
    // Best effort: a listener works without these.
    let _ = socket.set_tcp_nodelay(true);
    if kind == ListenerKind::Stalled {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(STALL_KEEPALIVE)
            .with_interval(STALL_KEEPALIVE);
        let _ = socket.set_tcp_keepalive(&keepalive);
    }
}

/// Whether a stalled listener that has had its first audio stops reading at `now`:
/// at once, or from the swarm's stall moment on.
fn stalls_now(ctx: &SwarmContext, spec: ListenerSpec, meter: &Meter, now: Instant) -> bool {
    spec.kind == ListenerKind::Stalled
        && meter.first_audio.is_some()
        && ctx.stall_at.is_none_or(|at| now >= at)
}

/// Waits, without reading, until the run ends or the server drops the connection.
async fn stay_stalled(
    stream: &tokio::net::TcpStream,
    end_at: tokio::time::Instant,
    meter: &mut Meter,
) -> EndReason {
    meter.stalled_at = Some(Instant::now());
    loop {
        if tokio::time::timeout_at(end_at, tokio::time::sleep(STALL_POLL))
            .await
            .is_err()
        {
            return EndReason::RunEnded;
        }
        match socket2::SockRef::from(stream).take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                meter.dropped_at = Some(Instant::now());
                return EndReason::DroppedWhileStalled;
            }
        }
    }
}

/// When a slow listener may take its next bytes: it consumes `consumed` units of a
/// `rate_per_sec` stream at `fraction` of that rate, starting at `since`.
fn slow_reader_due(since: Instant, consumed: f64, rate_per_sec: f64, fraction: f64) -> Instant {
    since + Duration::from_secs_f64((consumed / (rate_per_sec * fraction)).clamp(0.0, 86_400.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::test_pages::page;
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    fn packet(flags: u8, pts: u64) -> Message {
        let mut bytes = vec![1, flags, 0, 0];
        bytes.extend_from_slice(&pts.to_be_bytes());
        bytes.extend_from_slice(&[0xfc, 0xff, 0xfe]);
        Message::binary(bytes)
    }

    fn unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// Runs one listener of `spec` against whatever `server` does with the connection.
    async fn listen_to<F, Fut>(
        spec: ListenerSpec,
        run_for: Duration,
        server: F,
    ) -> crate::report::GroupReport
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ctx = Rc::new(SwarmContext::for_test(listener.local_addr().unwrap(), run_for).unwrap());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let server = tokio::task::spawn_local(async move {
                    let (socket, _) = listener.accept().await.unwrap();
                    server(socket).await;
                });
                run(Rc::clone(&ctx), spec).await;
                server.abort();
            })
            .await;
        let (groups, _) = ctx.recorder.borrow().summaries().unwrap();
        assert_eq!(ctx.connected.get(), 0);
        groups.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn websocket_listener_measures_the_stream_and_the_close_reason() {
        let spec = ListenerSpec {
            index: 0,
            transport: Transport::Ws,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let report = listen_to(spec, Duration::from_secs(10), |socket| async move {
            let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            // Sample 9600 goes on air now: the packets before it are pre-roll.
            let hello = format!(
                r#"{{"type":"hello","codec":"opus","sample_rate":48000,"channels":2,"bitrate":128,"station":"main","frame_samples":960,"pre_roll_ms":300,"clock":{{"pts":9600,"unix_ms":{}}},"now_playing":null}}"#,
                unix_ms()
            );
            ws.send(Message::text(hello)).await.unwrap();
            for pts in (0..9600).step_by(960) {
                ws.send(packet(0, pts)).await.unwrap();
            }
            let mut pts = 9600 - 960;
            for step in 0..20u64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (flags, advance) = match step {
                    5 => (0, 3 * 960),
                    12 => (1, 5 * 960),
                    _ => (0, 960),
                };
                pts += advance;
                ws.send(packet(flags, pts)).await.unwrap();
            }
            ws.send(Message::text(r#"{"type":"now_playing","now_playing":null}"#)).await.unwrap();
            ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "too slow".into(),
            }))
            .await
            .unwrap();
        })
        .await;
        assert_eq!(report.ends.get("server_closed: too slow (1008)"), Some(&1));
        assert_eq!(
            (report.established, report.got_audio, report.kept_up),
            (1, 1, 0)
        );
        assert_eq!(report.audio_messages, 30);
        // Ten packets before sample 9600, and the one starting at 9600: on air when the hello arrived.
        assert_eq!(report.pre_roll_messages, 11);
        assert_eq!(
            (
                report.skipped_packets,
                report.discontinuities,
                report.unflagged_jumps
            ),
            (6, 1, 1)
        );
        assert_eq!(report.now_playing_messages, 1);
        let latency = report.latency_ms.unwrap();
        assert_eq!(latency.count, 19);
        // Packet k is sent about 20 ms after its air time; after the first jump the
        // timestamps run 40 ms ahead of the clock, so those arrive before their air time.
        assert!(
            (1..20).contains(&report.latency_negative),
            "{}",
            report.latency_negative
        );
        assert!((10.0..200.0).contains(&latency.max), "{latency:?}");
        assert!(report.time_to_first_audio_ms.unwrap().max < 1000.0);
    }

    #[tokio::test]
    async fn websocket_listener_reports_a_rejected_upgrade() {
        let spec = ListenerSpec {
            index: 0,
            transport: Transport::Ws,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let report = listen_to(spec, Duration::from_secs(10), |mut socket| async move {
            let mut request = [0u8; 2048];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        assert_eq!(report.ends.get("rejected: http 400"), Some(&1));
        assert_eq!(report.established, 0);
    }

    #[tokio::test]
    async fn http_listener_reads_chunked_ogg_pages_until_the_body_ends() {
        let spec = ListenerSpec {
            index: 1,
            transport: Transport::Http,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let report = listen_to(spec, Duration::from_secs(10), |mut socket| async move {
            let mut request = [0u8; 2048];
            let n = socket.read(&mut request).await.unwrap();
            assert!(request[..n].starts_with(b"GET /stations/main/stream.opus?bitrate=128 HTTP/1.1\r\n"));
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: audio/ogg\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let audio = [7u8; 200];
            let mut pages = page(0x02, 0, 9, 0, &[b"OpusHead\x01\x02\x38\x01"]);
            pages.extend(page(0, 0, 9, 1, &[b"OpusTags"]));
            for sequence in 2..8u32 {
                // Five 20 ms packets a page; page 5 claims six packets' worth: a granule jump.
                let extra = if sequence >= 5 { 960 } else { 0 };
                let granule = 312 + 4800 * u64::from(sequence - 1) + extra;
                pages.extend(page(0, granule, 9, sequence, &[&audio[..]; 5]));
            }
            // Send in uneven chunks that split pages.
            for piece in pages.chunks(700) {
                let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
                socket.write_all(&chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            socket.write_all(b"0\r\n\r\n").await.unwrap();
        })
        .await;
        assert_eq!(report.ends.get("server_eof"), Some(&1));
        assert_eq!((report.established, report.got_audio), (1, 1));
        assert_eq!(report.audio_messages, 6);
        assert_eq!(report.unflagged_jumps, 1);
        // First page counts its packets, the rest their granule deltas (one 960 longer).
        assert_eq!(report.audio_seconds, (6.0 * 4800.0 + 960.0) / 48_000.0);
        assert_eq!(report.gap_ms.unwrap().count, 5);
    }

    #[tokio::test]
    async fn http_listener_refuses_a_body_that_is_not_ogg() {
        let spec = ListenerSpec {
            index: 1,
            transport: Transport::Http,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let report = listen_to(spec, Duration::from_secs(10), |mut socket| async move {
            let mut request = [0u8; 2048];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\n\r\n<html>not a stream at all</html>")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
        assert_eq!(report.ends.get("protocol_error"), Some(&1));
        assert!(
            report.protocol_error_examples[0].contains("capture pattern"),
            "{:?}",
            report.protocol_error_examples
        );
    }

    #[tokio::test]
    async fn listener_still_connected_at_the_end_closes_and_counts_run_ended() {
        let spec = ListenerSpec {
            index: 0,
            transport: Transport::Ws,
            kind: ListenerKind::Normal,
            wave: Wave::Base,
        };
        let report = listen_to(spec, Duration::from_millis(600), |socket| async move {
            let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            let hello = format!(
                r#"{{"type":"hello","codec":"opus","sample_rate":48000,"channels":2,"bitrate":128,"station":"main","frame_samples":960,"pre_roll_ms":300,"clock":{{"pts":0,"unix_ms":{}}},"now_playing":null}}"#,
                unix_ms()
            );
            ws.send(Message::text(hello)).await.unwrap();
            let mut pts = 0;
            loop {
                if ws.send(packet(0, pts)).await.is_err() {
                    return;
                }
                pts += 960;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(report.ends.get("run_ended"), Some(&1));
        assert_eq!(report.late, 0);
        assert_eq!(report.latency_negative, 0);
    }

    #[test]
    fn gaps_longer_than_the_unit_plus_slack_are_late() {
        let mut group = GroupStats::new().unwrap();
        let start = Instant::now();
        let mut meter = Meter::new(start);
        for (ms, samples) in [
            (5, 960),
            (25, 960),
            (85, 960),
            (146, 960),
            (146, 4800),
            (286, 4800),
        ] {
            meter.audio_arrived(start + Duration::from_millis(ms), samples, 100, &mut group);
        }
        // 60 ms after a 20 ms packet is on time; 61 ms is late; 140 ms after a 100 ms page is on time.
        assert_eq!(meter.late, 1);
        assert_eq!(meter.max_gap, Duration::from_millis(140));
        assert_eq!(meter.units, 6);
        assert_eq!(meter.audio_samples, 4 * 960 + 2 * 4800);
        assert_eq!(meter.first_audio, Some(start + Duration::from_millis(5)));
    }

    #[test]
    fn timestamp_jumps_count_skipped_packets_and_unflagged_ones() {
        let mut meter = Meter::new(Instant::now());
        meter.packet_timestamp(9_600, false);
        meter.packet_timestamp(10_560, false);
        // Three packets missing, flagged: a discontinuity, not an unflagged jump.
        meter.packet_timestamp(10_560 + 4 * 960, true);
        // Two missing without the flag.
        meter.packet_timestamp(10_560 + 7 * 960, false);
        // Going backwards is a jump but skips nothing.
        meter.packet_timestamp(960, false);
        assert_eq!(meter.discontinuities, 1);
        assert_eq!(meter.skipped_packets, 5);
        assert_eq!(meter.unflagged_jumps, 2);
    }

    #[test]
    fn receive_ratio_compares_audio_with_wall_time() {
        let start = Instant::now();
        let mut meter = Meter::new(start);
        assert_eq!(meter.receive_ratio(start + Duration::from_secs(5)), None);
        let mut group = GroupStats::new().unwrap();
        meter.audio_arrived(start, 48_000, 16_000, &mut group);
        meter.audio_arrived(start, 48_000, 16_000, &mut group);
        assert_eq!(
            meter.receive_ratio(start + Duration::from_millis(500)),
            None
        );
        assert_eq!(
            meter.receive_ratio(start + Duration::from_secs(4)),
            Some(0.5)
        );
        assert_eq!(
            meter.receive_bits_per_second(start + Duration::from_secs(2)),
            Some(128_000.0)
        );
    }

    #[test]
    fn slow_reader_is_due_after_the_time_its_fraction_allows() {
        let start = Instant::now();
        // 50 packets/s at half rate: the 10th packet may be read 400 ms in.
        assert_eq!(
            slow_reader_due(start, 10.0, 50.0, 0.5),
            start + Duration::from_millis(400)
        );
    }

    #[test]
    fn end_reasons_have_stable_labels() {
        assert_eq!(EndReason::RunEnded.label(), "run_ended");
        assert_eq!(
            EndReason::ServerClosed {
                code: 1008,
                reason: "too slow".into()
            }
            .label(),
            "server_closed: too slow (1008)"
        );
        assert_eq!(
            EndReason::Rejected { status: 400 }.label(),
            "rejected: http 400"
        );
        assert_eq!(
            EndReason::ConnectError(std::io::ErrorKind::ConnectionRefused).label(),
            "connect_error: connection refused"
        );
    }
}
