//! The fan-out: every listener reads its rendition's lock-free packet ring with a
//! cursor of its own. WebSocket listeners are [`ListenerSession`] actors; plain HTTP
//! listeners ([`HttpListener`]) share one muxed Ogg/Opus page stream per rendition,
//! written to their sockets by one page writer per worker thread once actix-http has
//! handed the connection over ([`ListenerIo`]).
//!
//! A listener that falls further behind than `max_lag_ms` skips forward to the
//! newest packet (the next packet carries the discontinuity flag). One that stays
//! behind, or whose socket accepts nothing, for `behind_deadline_ms` is disconnected
//! and counted by reason. Memory per listener is a fixed-size cursor state plus the
//! bounded queues of the socket.

mod caps;
mod handover;
mod http;
mod pages;
mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sonicforge_engine::events::{ClientHash, EventKind, Transport};
use sonicforge_engine::frame::{FRAME_MS, frames_for_ms};
use sonicforge_engine::ring::{PacketMeta, PacketRing, ReadOutcome};

use crate::config::ListenerConfig;
use crate::station::Station;

pub use caps::{CapReached, ListenerCaps, ListenerSlot};
pub use handover::{Handover, ListenerIo};
pub use http::HttpListener;
pub use ws::ListenerSession;

/// Why a listener's session ended; the label of `sonicforge_listener_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection or went away.
    ClientClosed,
    /// A send waited longer than the deadline: the client stopped reading.
    Stalled,
    /// The listener kept falling behind for longer than the deadline.
    TooSlow,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// The station stopped.
    StationStopped,
    /// A chaos test killed the session; its client reconnects.
    Killed,
}

impl DisconnectReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::Stalled => "stalled",
            Self::TooSlow => "too_slow",
            Self::ProtocolError => "protocol_error",
            Self::StationStopped => "station_stopped",
            Self::Killed => "killed",
        }
    }
}

/// Who a listener is, for play events: a salted hash of the address, never the
/// address itself, and the coarse family of its user agent.
#[derive(Debug, Clone)]
pub struct ListenerOrigin {
    pub client_hash: ClientHash,
    pub user_agent_family: &'static str,
}

impl ListenerOrigin {
    pub fn of(req: &actix_web::HttpRequest, salt: &[u8]) -> Self {
        let address = req
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        Self {
            client_hash: ClientHash::from_address(address, salt),
            user_agent_family: user_agent_family(user_agent),
        }
    }
}

/// A browser or player family from a User-Agent header; never more than that.
pub fn user_agent_family(user_agent: &str) -> &'static str {
    const FAMILIES: [(&str, &str); 12] = [
        ("Edg/", "edge"),
        ("OPR/", "opera"),
        ("Firefox/", "firefox"),
        ("Chromium/", "chrome"),
        ("Chrome/", "chrome"),
        ("Safari/", "safari"),
        ("VLC/", "vlc"),
        ("mpv", "mpv"),
        ("Lavf/", "ffmpeg"),
        ("curl/", "curl"),
        ("sonicforge-loadtests", "sonicforge-loadtests"),
        ("python", "python"),
    ];
    FAMILIES
        .iter()
        .find(|(marker, _)| user_agent.contains(marker))
        .map_or(
            if user_agent.is_empty() {
                "none"
            } else {
                "other"
            },
            |(_, family)| family,
        )
}

/// A listener's play events: `listener_joined` when made, `listener_left` when it ends.
#[derive(Debug)]
pub(crate) struct ListenerEvents {
    station: Arc<Station>,
    session_id: String,
    transport: Transport,
    rendition_kbps: u32,
    joined_at: std::time::Instant,
    /// The `listener_joined` event's id and client hash, which the leave repeats.
    joined_id: sonicforge_engine::events::EventId,
    client_hash: sonicforge_engine::events::ClientHash,
}

impl ListenerEvents {
    pub(crate) fn joined(
        station: Arc<Station>,
        session: u64,
        transport: Transport,
        rendition_kbps: u32,
        origin: ListenerOrigin,
    ) -> Self {
        let session_id = session.to_string();
        let client_hash = origin.client_hash;
        let joined = sonicforge_engine::events::PlayEvent::new(
            station.id(),
            EventKind::ListenerJoined {
                session_id: session_id.clone(),
                transport,
                rendition_kbps,
                client_hash: client_hash.clone(),
                user_agent_family: origin.user_agent_family.to_string(),
            },
        );
        let joined_id = joined.id;
        station.events.emit(joined);
        station.listener_clock.joined();
        Self {
            station,
            session_id,
            transport,
            rendition_kbps,
            joined_at: std::time::Instant::now(),
            joined_id,
            client_hash,
        }
    }

    pub(crate) fn left(&self, reason: DisconnectReason) {
        self.station.emit(EventKind::ListenerLeft {
            session_id: self.session_id.clone(),
            transport: self.transport,
            rendition_kbps: self.rendition_kbps,
            listened_ms: self.joined_at.elapsed().as_millis() as u64,
            disconnect_reason: reason.label().to_string(),
            joined_id: Some(self.joined_id),
            client_hash: Some(self.client_hash.clone()),
        });
        self.station.listener_clock.left();
    }
}

/// A counter shared by every listener, added to once a second of audio per listener
/// rather than per packet: thousands of sessions adding to one atomic every 20 ms
/// would keep its cache line moving between cores. What is left is added when it is
/// dropped, so a session that ends loses no count.
pub(crate) struct BatchedCount {
    unreported: u64,
    counter: prometheus::IntCounter,
}

/// Packets counted per listener before they are added to the shared counter.
const COUNT_EVERY_PACKETS: u64 = 50;

impl BatchedCount {
    pub(crate) fn new(counter: prometheus::IntCounter) -> Self {
        Self {
            unreported: 0,
            counter,
        }
    }

    pub(crate) fn add(&mut self, packets: u64) {
        self.unreported += packets;
        if self.unreported >= COUNT_EVERY_PACKETS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.unreported > 0 {
            self.counter.inc_by(std::mem::take(&mut self.unreported));
        }
    }
}

impl Drop for BatchedCount {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A new listener session id, unique in the process.
pub(crate) fn next_session_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What a listener's cursor found in the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CursorStep {
    /// A packet to send; `discontinuity` is set on the first packet after a skip.
    Packet {
        meta: PacketMeta,
        discontinuity: bool,
    },
    /// Nothing new yet.
    Idle,
}

/// One listener's position in a rendition's ring, with the rules for falling behind.
#[derive(Debug)]
pub(crate) struct Cursor {
    next_seq: u64,
    max_lag_packets: u64,
    deadline: Duration,
    skip_pending: bool,
    behind_since: Option<Instant>,
    last_skip: Option<Instant>,
    pub(crate) skipped_packets: u64,
}

/// Time without a skip after which a listener counts as caught up again. A listener
/// that cannot keep up skips again well within it, so it stays behind until dropped.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(3);

impl Cursor {
    /// A cursor starting `pre_roll_ms` before the newest packet of `ring`.
    pub(crate) fn new(ring: &PacketRing, config: &ListenerConfig) -> Self {
        let pre_roll = frames_for_ms(u64::from(config.pre_roll_ms)) as u64;
        let start = ring
            .head()
            .saturating_sub(pre_roll)
            .max(ring.oldest_readable());
        Self {
            next_seq: start,
            max_lag_packets: (u64::from(config.max_lag_ms) / u64::from(FRAME_MS)).max(1),
            deadline: Duration::from_millis(u64::from(config.behind_deadline_ms)),
            skip_pending: false,
            behind_since: None,
            last_skip: None,
            skipped_packets: 0,
        }
    }

    /// Whether the listener has stayed behind past the deadline.
    pub(crate) fn is_past_deadline(&self, now: Instant) -> bool {
        self.behind_since
            .is_some_and(|since| now.saturating_duration_since(since) > self.deadline)
    }

    /// Packets published but not yet taken by this listener.
    pub(crate) fn backlog(&self, ring: &PacketRing) -> u64 {
        ring.head().saturating_sub(self.next_seq)
    }

    /// Reads the next packet into `buf`, skipping forward first if the listener lags.
    pub(crate) fn next(
        &mut self,
        ring: &PacketRing,
        buf: &mut sonicforge_engine::ring::PacketBuf,
        now: Instant,
    ) -> CursorStep {
        loop {
            let head = ring.head();
            if head.saturating_sub(self.next_seq) > self.max_lag_packets {
                self.skip_to(head.saturating_sub(1), now);
            }
            match ring.read(self.next_seq, buf) {
                ReadOutcome::Ready(meta) => {
                    self.next_seq += 1;
                    let discontinuity = std::mem::take(&mut self.skip_pending);
                    if self
                        .last_skip
                        .is_some_and(|skip| now.saturating_duration_since(skip) >= CAUGHT_UP_AFTER)
                    {
                        self.behind_since = None;
                    }
                    return CursorStep::Packet {
                        meta,
                        discontinuity,
                    };
                }
                ReadOutcome::NotYet => return CursorStep::Idle,
                ReadOutcome::Overwritten { oldest } => {
                    self.skip_to(ring.head().saturating_sub(1).max(oldest), now);
                }
            }
        }
    }

    fn skip_to(&mut self, seq: u64, now: Instant) {
        if seq > self.next_seq {
            self.skipped_packets += seq - self.next_seq;
        }
        self.next_seq = seq;
        self.skip_pending = true;
        self.last_skip = Some(now);
        self.behind_since.get_or_insert(now);
    }
}

/// Limits a stalled client's hold on server and kernel memory: a small send buffer,
/// and the kernel gives up on a peer that takes nothing for the deadline
/// (`TCP_USER_TIMEOUT`, which also covers a receive window that stays shut). Its clock
/// starts only once the client's own buffers are full, after the client stopped
/// reading. A WebSocket session's deadline (counted from its first unanswered ping)
/// and a plain HTTP listener's page writer (counted from the socket's last accepted
/// byte) usually come first and name the reason; a write the kernel fails with this
/// timeout counts as a stall too.
pub fn tune_listener_socket(stream: &tokio::net::TcpStream, config: &ListenerConfig) {
    let socket = socket2::SockRef::from(stream);
    if let Err(error) = socket.set_send_buffer_size(config.socket_send_buffer_bytes as usize) {
        tracing::debug!(%error, "cannot set the socket send buffer");
    }
    let deadline = Duration::from_millis(u64::from(config.behind_deadline_ms));
    if let Err(error) = socket.set_tcp_user_timeout(Some(deadline)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
    if let Err(error) = socket.set_tcp_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonicforge_engine::ring::PacketBuf;

    fn config(pre_roll_ms: u32, max_lag_ms: u32) -> ListenerConfig {
        ListenerConfig {
            pre_roll_ms,
            max_lag_ms,
            behind_deadline_ms: 1000,
            ..ListenerConfig::default()
        }
    }

    #[test]
    fn new_cursor_starts_with_the_pre_roll() {
        let (mut writer, ring) = PacketRing::with_capacity(100);
        for seq in 0..40u64 {
            writer.publish(seq * 960, 0, 1, &[1, 2, 3]).unwrap();
        }
        let mut cursor = Cursor::new(&ring, &config(300, 1000));
        assert_eq!(cursor.backlog(&ring), 15);
        let mut buf = PacketBuf::default();
        let CursorStep::Packet {
            meta,
            discontinuity,
        } = cursor.next(&ring, &mut buf, Instant::now())
        else {
            panic!("expected a packet");
        };
        assert_eq!(meta.pts, 25 * 960);
        assert!(!discontinuity);
    }

    #[test]
    fn lagging_listener_skips_to_the_newest_packet_with_a_discontinuity() {
        let (mut writer, ring) = PacketRing::with_capacity(100);
        let mut cursor = Cursor::new(&ring, &config(300, 200));
        for seq in 0..30u64 {
            writer.publish(seq * 960, 0, 1, &[7]).unwrap();
        }
        let mut buf = PacketBuf::default();
        let now = Instant::now();
        let CursorStep::Packet {
            meta,
            discontinuity,
        } = cursor.next(&ring, &mut buf, now)
        else {
            panic!("expected a packet");
        };
        assert_eq!(meta.seq, 29);
        assert!(discontinuity);
        assert_eq!(cursor.skipped_packets, 29);
        assert!(matches!(
            cursor.next(&ring, &mut buf, now),
            CursorStep::Idle
        ));
        assert!(!cursor.is_past_deadline(now));
        assert!(cursor.is_past_deadline(now + Duration::from_secs(2)));
    }

    #[test]
    fn listener_that_keeps_up_again_is_no_longer_behind() {
        let (mut writer, ring) = PacketRing::with_capacity(200);
        let mut cursor = Cursor::new(&ring, &config(300, 200));
        let mut buf = PacketBuf::default();
        for seq in 0..30u64 {
            writer.publish(seq * 960, 0, 1, &[7]).unwrap();
        }
        let now = Instant::now();
        cursor.next(&ring, &mut buf, now);
        let later = now + CAUGHT_UP_AFTER;
        for seq in 30..40 {
            writer.publish(seq * 960, 0, 1, &[7]).unwrap();
            assert!(matches!(
                cursor.next(&ring, &mut buf, later),
                CursorStep::Packet {
                    discontinuity: false,
                    ..
                }
            ));
        }
        assert!(!cursor.is_past_deadline(now + Duration::from_secs(60)));
    }

    #[test]
    fn listener_that_keeps_skipping_stays_behind_until_the_deadline() {
        let (mut writer, ring) = PacketRing::with_capacity(400);
        let mut cursor = Cursor::new(&ring, &config(300, 200));
        let mut buf = PacketBuf::default();
        let start = Instant::now();
        // Reads one packet in two: skips about every 20 packets, forever.
        for seq in 0..300u64 {
            writer.publish(seq * 960, 0, 1, &[7]).unwrap();
            if seq % 2 == 0 {
                cursor.next(&ring, &mut buf, start + Duration::from_millis(seq * 20));
            }
        }
        assert!(cursor.skipped_packets > 100);
        assert!(cursor.is_past_deadline(start + Duration::from_millis(300 * 20)));
    }
}
