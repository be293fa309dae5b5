//! The plain HTTP listener: a continuous Ogg/Opus stream for ordinary players.
//!
//! Every listener of a rendition reads the same pages, muxed once ([`super::pages`]):
//! the stream's header pages first, then pages from `pre_roll_ms` back. Once actix-http
//! has written the response head, the socket leaves it ([`super::handover`]) for the
//! page writer of its worker thread: one task per shared page stream and worker that,
//! on every new page, writes to each of its listeners' sockets without blocking. A
//! listener costs one `write` per pass, whatever the number of pages it is behind (a
//! vectored write of the shared pages); one whose socket is full keeps the unsent rest
//! of its page and is tried again at the next page. A listener more than
//! `max_lag_ms` behind skips forward to the newest page (at a page boundary, so the
//! Ogg stream stays whole); one that keeps skipping past `behind_deadline_ms` is closed
//! as `too_slow`, and one whose socket takes nothing for `behind_deadline_ms` as
//! `stalled`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use sonicforge_engine::events::Transport;
use sonicforge_engine::frame::FRAME_MS;

use super::pages::{PageStep, PageView, SharedPage, SharedPages, shared_pages};
use super::{BatchedCount, DisconnectReason, ListenerEvents, ListenerOrigin, ListenerSlot};
use crate::metrics::ListenerMetrics;
use crate::station::Station;

const VENDOR: &str = concat!("SonicForge ", env!("CARGO_PKG_VERSION"));
/// Time without a skip after which a listener counts as caught up again.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(3);
/// How often a page writer looks at its listeners when no page comes (a station gone
/// silent or stopping): deadlines are checked at least this often.
const WRITER_TICK: Duration = Duration::from_millis(250);
/// Whole pages sent in one vectored write beside the unsent rest of a page (1.26 s of
/// 20 ms pages); a listener further behind gets them over several writes.
const MAX_PAGES_PER_WRITE: usize = 63;

/// Counts the listener in and, when dropped, out with its reason.
struct HttpListenerGuard {
    metrics: ListenerMetrics,
    /// Set when the server ends the stream; a listener dropped without one left.
    ended_by: Option<DisconnectReason>,
    events: ListenerEvents,
    /// The listener's place under the caps, freed when the listener goes.
    _slot: ListenerSlot,
}

impl Drop for HttpListenerGuard {
    fn drop(&mut self) {
        let reason = self.ended_by.unwrap_or(DisconnectReason::ClientClosed);
        self.metrics.listeners.dec();
        self.metrics.disconnected(reason.label());
        self.events.left(reason);
    }
}

/// A plain HTTP listener: where it is in its rendition's shared page stream, and (once
/// handed over) its socket.
pub struct HttpListener {
    station: Arc<Station>,
    pages: Arc<SharedPages>,
    /// Packet position of the next page to send; `None` until the headers are queued.
    next_seq: Option<u64>,
    /// The rest of the page being written: a slice of the shared page.
    unsent: Bytes,
    pre_roll_packets: u64,
    max_lag_packets: u64,
    deadline: Duration,
    /// Last time the socket took bytes.
    last_progress: Instant,
    behind_since: Option<Instant>,
    last_skip: Option<Instant>,
    sent: BatchedCount,
    guard: HttpListenerGuard,
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("station", &self.station.id())
            .field("next_seq", &self.next_seq)
            .field("unsent", &self.unsent.len())
            .finish_non_exhaustive()
    }
}

impl HttpListener {
    /// A listener of the rendition at index `rendition`, counted in from now. `serial`
    /// names the Ogg stream when this listener is the first of its rendition.
    pub fn new(
        station: Arc<Station>,
        rendition: usize,
        serial: u32,
        metrics: ListenerMetrics,
        origin: ListenerOrigin,
        slot: ListenerSlot,
    ) -> Self {
        let config = station.listener_config.for_station(&station.config);
        let feed = &station.feeds[rendition];
        let pages = shared_pages(&station, rendition, config.http_page_ms, serial, VENDOR);
        metrics.listeners.inc();
        metrics.connects.inc();
        let events = ListenerEvents::joined(
            Arc::clone(&station),
            super::next_session_id(),
            Transport::Http,
            feed.bitrate_kbps,
            origin,
        );
        Self {
            sent: BatchedCount::new(metrics.packets_sent.clone()),
            guard: HttpListenerGuard {
                metrics,
                ended_by: None,
                events,
                _slot: slot,
            },
            station,
            pages,
            next_seq: None,
            unsent: Bytes::new(),
            pre_roll_packets: u64::from(config.pre_roll_ms / FRAME_MS),
            max_lag_packets: u64::from(config.max_lag_ms / FRAME_MS).max(1),
            deadline: Duration::from_millis(u64::from(config.behind_deadline_ms)),
            last_progress: Instant::now(),
            behind_since: None,
            last_skip: None,
        }
    }

    /// Writes what the socket takes now; `Some` when the listener must go. The unsent
    /// rest of a page and the pages after it go out in one vectored write, so a
    /// listener that is several pages behind (a slow pass, a burst of pages) costs one
    /// system call, not one per page.
    fn pump(
        &mut self,
        socket: &std::net::TcpStream,
        view: &PageView,
        now: Instant,
    ) -> Option<DisconnectReason> {
        if self.station.is_stopping() {
            return Some(DisconnectReason::StationStopped);
        }
        loop {
            if self.unsent.is_empty() && !self.queue_next_page(view, now) {
                // Caught up: everything there is has been taken.
                self.last_progress = now;
                break;
            }
            let following = self.following_pages(view);
            let mut slices = [std::io::IoSlice::new(&[]); MAX_PAGES_PER_WRITE + 1];
            slices[0] = std::io::IoSlice::new(&self.unsent);
            for (slice, page) in slices[1..].iter_mut().zip(following) {
                *slice = std::io::IoSlice::new(&page.bytes);
            }
            match (&*socket).write_vectored(&slices[..=following.len()]) {
                Ok(0) => return Some(DisconnectReason::ClientClosed),
                Ok(written) => {
                    self.last_progress = now;
                    self.consume(written, following);
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    // A socket that keeps the listener more than `max_lag_ms` behind
                    // counts as behind even before it reaches a page boundary to skip at.
                    if let (Some(seq), Some(newest_end)) = (self.next_seq, view.newest_end())
                        && newest_end.saturating_sub(seq) > self.max_lag_packets
                    {
                        self.behind_since.get_or_insert(now);
                    }
                    break;
                }
                // The kernel gives up on a peer that takes nothing for the deadline
                // (`TCP_USER_TIMEOUT`, see [`super::tune_listener_socket`]), often
                // before the writer's own clock does.
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Some(DisconnectReason::Stalled);
                }
                Err(_) => return Some(DisconnectReason::ClientClosed),
            }
        }
        self.held_back_reason(now)
    }

    /// The pages after the one being written that may go out with it: none when the
    /// listener is more than `max_lag_ms` behind (it skips forward once this page is
    /// out).
    fn following_pages<'v>(&self, view: &'v PageView) -> &'v [SharedPage] {
        let Some(seq) = self.next_seq else {
            return &[];
        };
        let newest_end = view.newest_end().unwrap_or(seq);
        if newest_end.saturating_sub(seq) > self.max_lag_packets {
            return &[];
        }
        let following = view.pages_from(seq);
        &following[..following.len().min(MAX_PAGES_PER_WRITE)]
    }

    /// Accounts for `written` bytes of the unsent rest and then of `following`.
    fn consume(&mut self, mut written: usize, following: &[SharedPage]) {
        let from_unsent = written.min(self.unsent.len());
        self.unsent.advance(from_unsent);
        written -= from_unsent;
        for page in following {
            if written == 0 {
                break;
            }
            self.next_seq = Some(page.next_seq);
            self.sent.add(page.next_seq - page.first_seq);
            if written < page.bytes.len() {
                self.unsent = page.bytes.slice(written..);
                break;
            }
            written -= page.bytes.len();
        }
    }

    /// Queues the next page (the header pages first); false when there is none yet.
    fn queue_next_page(&mut self, view: &PageView, now: Instant) -> bool {
        let Some(seq) = self.next_seq else {
            // Join at a page boundary `pre_roll_ms` back, once there are pages.
            let Some(start) = view.join_position(self.pre_roll_packets) else {
                return false;
            };
            self.next_seq = Some(start);
            self.unsent = self.pages.headers();
            return true;
        };
        let newest_end = view.newest_end().unwrap_or(seq);
        let seq = if newest_end.saturating_sub(seq) > self.max_lag_packets {
            let newest = newest_end.saturating_sub(1);
            self.skipped(newest - seq, now);
            newest
        } else {
            seq
        };
        let page = match view.page_at(seq) {
            PageStep::Page(page) => page,
            PageStep::Skipped { page, packets } => {
                self.skipped(packets, now);
                page
            }
            PageStep::Idle => {
                self.next_seq = Some(seq);
                return false;
            }
        };
        self.next_seq = Some(page.next_seq);
        self.sent.add(page.next_seq - page.first_seq);
        self.unsent = page.bytes;
        true
    }

    /// `stalled` when the socket took nothing for the deadline, `too_slow` when the
    /// listener kept skipping for the deadline; `None` while it keeps up.
    fn held_back_reason(&mut self, now: Instant) -> Option<DisconnectReason> {
        if now.saturating_duration_since(self.last_progress) > self.deadline {
            return Some(DisconnectReason::Stalled);
        }
        if self
            .last_skip
            .is_some_and(|skip| now.saturating_duration_since(skip) >= CAUGHT_UP_AFTER)
        {
            self.behind_since = None;
        }
        self.behind_since
            .filter(|since| now.saturating_duration_since(*since) > self.deadline)
            .map(|_| DisconnectReason::TooSlow)
    }

    fn skipped(&mut self, packets: u64, now: Instant) {
        if packets > 0 {
            self.guard.metrics.packets_skipped.inc_by(packets);
        }
        self.last_skip = Some(now);
        self.behind_since.get_or_insert(now);
    }
}

/// A handed-over listener with its socket.
struct Connected {
    socket: std::net::TcpStream,
    listener: HttpListener,
}

impl Connected {
    /// Ends the listener: a listener the server gives up on is reset, so that neither
    /// the unsent bytes nor the socket outlive it in the kernel.
    fn close(mut self, reason: DisconnectReason) {
        if matches!(
            reason,
            DisconnectReason::Stalled | DisconnectReason::TooSlow
        ) && let Err(error) =
            socket2::SockRef::from(&self.socket).set_linger(Some(Duration::ZERO))
        {
            tracing::debug!(%error, "cannot reset a listener's connection");
        }
        self.listener.guard.ended_by = Some(reason);
    }
}

/// The listeners of one shared page stream that one worker thread writes to.
#[derive(Default)]
struct WriterListeners {
    listeners: RefCell<Vec<Connected>>,
}

impl WriterListeners {
    /// Writes to every listener, closing those that must go; true when none is left.
    fn write_pass(&self, view: &PageView, now: Instant) -> bool {
        let mut listeners = self.listeners.borrow_mut();
        let mut index = 0;
        while index < listeners.len() {
            let connected = &mut listeners[index];
            match connected.listener.pump(&connected.socket, view, now) {
                None => index += 1,
                Some(reason) => listeners.swap_remove(index).close(reason),
            }
        }
        listeners.is_empty()
    }
}

thread_local! {
    /// This worker thread's page writers, by shared page stream.
    static WRITERS: RefCell<HashMap<usize, Rc<WriterListeners>>> = RefCell::new(HashMap::new());
}

/// Takes a listener whose response head has been written: sends what it can at once
/// (header pages and pre-roll), then leaves it to this thread's writer of its stream.
pub(crate) fn adopt(stream: actix_web::rt::net::TcpStream, listener: HttpListener) {
    let socket = match stream.into_std() {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!(%error, "a listener's socket could not be taken over");
            return;
        }
    };
    let mut connected = Connected { socket, listener };
    let mut view = PageView::default();
    connected.listener.pages.refresh(&mut view);
    if let Some(reason) = connected
        .listener
        .pump(&connected.socket, &view, Instant::now())
    {
        connected.close(reason);
        return;
    }
    let pages = Arc::clone(&connected.listener.pages);
    let key = Arc::as_ptr(&pages) as usize;
    WRITERS.with_borrow_mut(|writers| {
        let writer = writers.entry(key).or_insert_with(|| {
            let writer = Rc::new(WriterListeners::default());
            actix_web::rt::spawn(write_pages(key, pages, Rc::clone(&writer)));
            writer
        });
        writer.listeners.borrow_mut().push(connected);
    });
}

/// Writes each new page of `pages` to this thread's listeners of it, until none is left.
async fn write_pages(key: usize, pages: Arc<SharedPages>, writer: Rc<WriterListeners>) {
    let mut view = PageView::default();
    loop {
        let notified = pages.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        pages.refresh(&mut view);
        if writer.write_pass(&view, Instant::now()) {
            // Nothing awaits between this check and the removal: `adopt` on this thread
            // either found this writer before or starts a new one after.
            WRITERS.with_borrow_mut(|writers| writers.remove(&key));
            return;
        }
        let _ = tokio::time::timeout(WRITER_TICK, notified).await;
    }
}
