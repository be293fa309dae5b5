//! The plain HTTP listener: a continuous Ogg/Opus body for ordinary players.
//!
//! Every listener of a rendition reads the same pages, muxed once ([`super::pages`]):
//! the stream's header pages first, then pages from `pre_roll_ms` back. The body is
//! pulled by the HTTP layer, so a client that reads slowly simply polls less often;
//! when it polls again more than `max_lag_ms` behind, it skips forward to the newest
//! page, and one that keeps skipping past `behind_deadline_ms` is disconnected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use sonicforge_engine::frame::FRAME_MS;

use super::pages::{PageStep, SharedPages, shared_pages};
use super::{BatchedCount, DisconnectReason, ListenerEvents, ListenerOrigin, ListenerSlot};
use crate::metrics::ListenerMetrics;
use crate::station::Station;
use sonicforge_engine::events::Transport;

const VENDOR: &str = concat!("SonicForge ", env!("CARGO_PKG_VERSION"));
/// Time without a skip after which a listener counts as caught up again.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(3);

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
    pages: Arc<SharedPages>,
    /// Packet position of the next page to send; `None` until the headers are sent.
    next_seq: Option<u64>,
    pre_roll_packets: u64,
    max_lag_packets: u64,
    behind_since: Option<Instant>,
    last_skip: Option<Instant>,
    /// Last time the body had nothing newer to send: the connection had taken
    /// everything. A listener whose connection does not keep up never gets there.
    caught_up_at: Instant,
    guard: HttpListenerGuard,
    sent: BatchedCount,
    /// Notices a station gone silent; one timer per listener, re-armed only when it
    /// fires (a fresh timeout per page would cost a timer-wheel insert and removal).
    silence: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Drop for OggListener {
    fn drop(&mut self) {
        if self.guard.ended_by.is_none() {
            self.guard.ended_by = self.held_back_reason(Instant::now());
        }
    }
}

/// The body of `GET /stations/{id}/stream.opus` for the rendition at index `rendition`.
/// `serial` names the Ogg stream when this listener is the first of its rendition.
pub fn ogg_stream(
    station: Arc<Station>,
    rendition: usize,
    serial: u32,
    metrics: ListenerMetrics,
    origin: ListenerOrigin,
    slot: ListenerSlot,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + 'static {
    let config = station.listener_config.for_station(&station.config);
    let feed = &station.feeds[rendition];
    let pages = shared_pages(&station, rendition, config.http_page_ms, serial, VENDOR);
    let sent = BatchedCount::new(metrics.packets_sent.clone());
    let deadline = Duration::from_millis(u64::from(config.behind_deadline_ms));
    let listener = OggListener {
        guard: HttpListenerGuard::new(
            metrics,
            deadline,
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
        pages,
        next_seq: None,
        pre_roll_packets: u64::from(config.pre_roll_ms / FRAME_MS),
        max_lag_packets: u64::from(config.max_lag_ms / FRAME_MS).max(1),
        behind_since: None,
        last_skip: None,
        caught_up_at: Instant::now(),
        sent,
        silence: Box::pin(tokio::time::sleep(deadline)),
    };
    futures_util::stream::unfold(listener, |mut listener| async move {
        let chunk = listener.next_chunk().await?;
        Some((Ok(chunk), listener))
    })
}

impl OggListener {
    /// The next page (the header pages first); `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let deadline = self.guard.deadline;
        loop {
            if self.station.is_stopping() {
                self.guard.ended_by = Some(DisconnectReason::StationStopped);
                return None;
            }
            let pages = Arc::clone(&self.pages);
            let notified = pages.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let Some(seq) = self.next_seq else {
                // Join at a page boundary `pre_roll_ms` back, once there are pages.
                if let Some(start) = self.pages.join_position(self.pre_roll_packets) {
                    self.next_seq = Some(start);
                    self.guard.last_progress = now;
                    return Some(self.pages.headers());
                }
                self.caught_up_at = now;
                self.wait(notified, deadline).await;
                continue;
            };
            let newest_end = self.pages.newest_end().unwrap_or(seq);
            let seq = if newest_end.saturating_sub(seq) > self.max_lag_packets {
                let newest = newest_end.saturating_sub(1);
                self.skipped(newest - seq, now);
                newest
            } else {
                seq
            };
            if self
                .behind_since
                .is_some_and(|since| now.saturating_duration_since(since) > deadline)
            {
                self.guard.ended_by = Some(DisconnectReason::TooSlow);
                return None;
            }
            let page = match self.pages.page_at(seq) {
                PageStep::Page(page) => page,
                PageStep::Skipped { page, packets } => {
                    self.skipped(packets, now);
                    page
                }
                PageStep::Idle => {
                    self.caught_up_at = now;
                    self.next_seq = Some(seq);
                    self.wait(notified, deadline).await;
                    continue;
                }
            };
            if self
                .last_skip
                .is_some_and(|skip| now.saturating_duration_since(skip) >= CAUGHT_UP_AFTER)
            {
                self.behind_since = None;
            }
            self.next_seq = Some(page.next_seq);
            self.sent.add(page.next_seq - page.first_seq);
            self.guard.last_progress = now;
            return Some(page.bytes);
        }
    }

    /// Why the server gave up on a listener whose body is dropped without having ended
    /// the stream itself: the kernel closes a connection whose peer takes nothing (or
    /// only window probes' worth) for the deadline (`TCP_USER_TIMEOUT`, see
    /// [`super::tune_listener_socket`]), often before the body falls far enough behind
    /// to skip. A body that had not caught up for longer than `max_lag_ms` was held
    /// back by its connection: `stalled` when the HTTP layer stopped pulling it too,
    /// `too_slow` when it still pulled, slower than real time. `None` for a listener
    /// that kept up and left.
    fn held_back_reason(&self, now: Instant) -> Option<DisconnectReason> {
        let max_lag = Duration::from_millis(self.max_lag_packets * u64::from(FRAME_MS));
        if now.saturating_duration_since(self.caught_up_at) <= max_lag {
            return None;
        }
        Some(
            if now.saturating_duration_since(self.guard.last_progress) > max_lag {
                DisconnectReason::Stalled
            } else {
                DisconnectReason::TooSlow
            },
        )
    }

    fn skipped(&mut self, packets: u64, now: Instant) {
        if packets > 0 {
            self.guard.metrics.packets_skipped.inc_by(packets);
        }
        self.last_skip = Some(now);
        self.behind_since.get_or_insert(now);
    }

    /// Waits for the next page; the silence timer notices a station gone quiet.
    async fn wait(
        &mut self,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        deadline: Duration,
    ) {
        tokio::select! {
            biased;
            () = notified => {}
            () = self.silence.as_mut() => {
                self.silence
                    .as_mut()
                    .reset(tokio::time::Instant::now() + deadline);
            }
        }
    }
}
