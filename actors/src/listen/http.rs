//! The plain HTTP listener: a continuous Ogg/Opus body for ordinary players.
//!
//! Each listener has its own Ogg logical stream (serial number, page sequence and
//! granule positions starting at its first packet), muxed from the shared packet
//! ring. The body is pulled by the HTTP layer, so a client that reads slowly simply
//! polls less often; when it polls again after falling behind, it skips forward.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use sonicforge_engine::codec::ogg::OggOpusMuxer;
use sonicforge_engine::ring::PacketBuf;

use super::{Cursor, CursorStep, DisconnectReason, ListenerEvents, ListenerOrigin, ListenerSlot};
use crate::metrics::ListenerMetrics;
use crate::station::Station;
use sonicforge_engine::events::Transport;

const VENDOR: &str = concat!("SonicForge ", env!("CARGO_PKG_VERSION"));

/// Counts the listener in and, when the body is dropped, out with its reason.
struct HttpListenerGuard {
    metrics: ListenerMetrics,
    last_progress: Instant,
    deadline: Duration,
    /// Set when the server ends the stream itself.
    ended_by: Option<DisconnectReason>,
    events: ListenerEvents,
    /// The listener's place under the caps, freed when the body is dropped.
    _slot: ListenerSlot,
}

impl HttpListenerGuard {
    fn new(
        metrics: ListenerMetrics,
        deadline: Duration,
        events: ListenerEvents,
        slot: ListenerSlot,
    ) -> Self {
        metrics.listeners.inc();
        metrics.connects.inc();
        Self {
            metrics,
            last_progress: Instant::now(),
            deadline,
            ended_by: None,
            events,
            _slot: slot,
        }
    }
}

impl Drop for HttpListenerGuard {
    fn drop(&mut self) {
        let reason = if let Some(reason) = self.ended_by {
            reason
        } else if self.last_progress.elapsed() > self.deadline {
            DisconnectReason::Stalled
        } else {
            DisconnectReason::ClientClosed
        };
        self.metrics.listeners.dec();
        self.metrics.disconnected(reason.label());
        self.events.left(reason);
    }
}

struct OggListener {
    station: Arc<Station>,
    rendition: usize,
    cursor: Option<Cursor>,
    muxer: OggOpusMuxer,
    packet: PacketBuf,
    pages: Vec<u8>,
    out: BytesMut,
    guard: HttpListenerGuard,
    skipped_reported: u64,
}

/// The body of `GET /stations/{id}/stream.opus` for the rendition at index `rendition`.
pub fn ogg_stream(
    station: Arc<Station>,
    rendition: usize,
    serial: u32,
    metrics: ListenerMetrics,
    origin: ListenerOrigin,
    slot: ListenerSlot,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + 'static {
    let config = station.listener_config;
    let feed = &station.feeds[rendition];
    let mut muxer = OggOpusMuxer::new(serial, feed.pre_skip, config.http_page_ms);
    let mut pages = Vec::with_capacity(8 * 1024);
    muxer.write_headers(VENDOR, &mut pages);
    let listener = OggListener {
        guard: HttpListenerGuard::new(
            metrics,
            Duration::from_millis(u64::from(config.behind_deadline_ms)),
            ListenerEvents::joined(
                Arc::clone(&station),
                super::next_session_id(),
                Transport::Http,
                feed.bitrate_kbps,
                origin,
            ),
            slot,
        ),
        station,
        rendition,
        cursor: None,
        muxer,
        packet: PacketBuf::default(),
        pages,
        out: BytesMut::with_capacity(16 * 1024),
        skipped_reported: 0,
    };
    futures_util::stream::unfold(listener, |mut listener| async move {
        let chunk = listener.next_chunk().await?;
        Some((Ok(chunk), listener))
    })
}

impl OggListener {
    /// The next run of complete pages; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let station = Arc::clone(&self.station);
        let feed = &station.feeds[self.rendition];
        let deadline = self.guard.deadline;
        loop {
            if station.is_stopping() {
                self.guard.ended_by = Some(DisconnectReason::StationStopped);
                return None;
            }
            let notified = feed.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let cursor = self
                .cursor
                .get_or_insert_with(|| Cursor::new(&feed.ring, &station.listener_config));
            let now = Instant::now();
            let mut packets = 0u64;
            while let CursorStep::Packet { meta, .. } =
                cursor.next(&feed.ring, &mut self.packet, now)
            {
                self.muxer
                    .push_packet(self.packet.as_slice(meta.len), &mut self.pages);
                packets += 1;
            }
            if cursor.is_past_deadline(now) {
                self.guard.ended_by = Some(DisconnectReason::TooSlow);
                return None;
            }
            if cursor.skipped_packets > self.skipped_reported {
                self.guard
                    .metrics
                    .packets_skipped
                    .inc_by(cursor.skipped_packets - self.skipped_reported);
                self.skipped_reported = cursor.skipped_packets;
            }
            if packets > 0 {
                self.guard.metrics.packets_sent.inc_by(packets);
            }
            if !self.pages.is_empty() {
                self.guard.last_progress = now;
                if self.out.capacity() < self.pages.len() {
                    self.out.reserve(self.pages.len().max(16 * 1024));
                }
                self.out.extend_from_slice(&self.pages);
                self.pages.clear();
                return Some(self.out.split().freeze());
            }
            let _ = tokio::time::timeout(deadline, notified).await;
        }
    }
}
