//! One Ogg/Opus page stream per rendition and page duration, muxed once and shared by
//! every HTTP listener of it.
//!
//! A mux task follows the rendition's packet ring and appends each completed page to a
//! short window of recent pages (`Bytes`, shared without copying). A listener gets the
//! stream's header pages, then pages from the window: its cost per page is a wake-up,
//! a reference-count increment and the socket write, whatever the number of listeners.
//! All listeners share one logical stream (serial number, page sequence and granule
//! positions); a listener joins it at a page boundary, as players joining any live Ogg
//! stream do.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use sonicforge_engine::codec::ogg::OggOpusMuxer;
use sonicforge_engine::frame::FRAME_MS;
use sonicforge_engine::ring::{PacketBuf, ReadOutcome};
use tokio::sync::Notify;

use crate::station::Station;

/// Recent pages kept for listeners that join or fall behind, in milliseconds of audio.
const WINDOW_MS: u64 = 5_000;
/// How often an idle mux task checks whether it still has listeners.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A page of the shared stream: packets `first_seq..next_seq` of the ring.
#[derive(Debug, Clone)]
pub(crate) struct SharedPage {
    pub(crate) first_seq: u64,
    pub(crate) next_seq: u64,
    pub(crate) bytes: Bytes,
}

/// What a listener asking for the page at a position gets.
#[derive(Debug, Clone)]
pub(crate) enum PageStep {
    /// The page holding the asked packet (or the first after it).
    Page(SharedPage),
    /// The asked packet left the window: the oldest page kept, and how many packets
    /// were passed over.
    Skipped { page: SharedPage, packets: u64 },
    /// Nothing at or after the position yet.
    Idle,
}

#[derive(Debug)]
struct Window {
    pages: VecDeque<SharedPage>,
    max_pages: usize,
}

/// The shared stream of one rendition at one page duration.
#[derive(Debug)]
pub(crate) struct SharedPages {
    /// OpusHead and OpusTags pages, sent first to every listener.
    headers: Bytes,
    window: Mutex<Window>,
    /// Woken after every page the mux task appends.
    pub(crate) notify: Notify,
}

impl SharedPages {
    /// Copies the window into `view` under one short lock: a writer pass then serves
    /// every listener from it (a reference-count increment per page, no allocation
    /// once the view has grown to the window's size).
    pub(crate) fn refresh(&self, view: &mut PageView) {
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        view.pages.clear();
        view.pages.extend(window.pages.iter().cloned());
    }

    pub(crate) fn headers(&self) -> Bytes {
        self.headers.clone()
    }

    fn push(&self, page: SharedPage) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.pages.len() == window.max_pages {
            window.pages.pop_front();
        }
        window.pages.push_back(page);
    }
}

/// The recent pages of a stream as one writer pass sees them.
#[derive(Debug, Default)]
pub(crate) struct PageView {
    pages: Vec<SharedPage>,
}

impl PageView {
    /// The page at packet `seq`, or the first after it.
    pub(crate) fn page_at(&self, seq: u64) -> PageStep {
        let Some(oldest) = self.pages.first() else {
            return PageStep::Idle;
        };
        if seq < oldest.first_seq {
            return PageStep::Skipped {
                page: oldest.clone(),
                packets: oldest.first_seq - seq,
            };
        }
        self.pages_from(seq)
            .first()
            .map_or(PageStep::Idle, |page| PageStep::Page(page.clone()))
    }

    /// The page holding packet `seq` (or the first after it) and every newer page.
    pub(crate) fn pages_from(&self, seq: u64) -> &[SharedPage] {
        let first = self.pages.partition_point(|page| page.next_seq <= seq);
        &self.pages[first..]
    }

    /// The packet position a listener joining now starts from: `pre_roll_packets`
    /// before the newest page's end.
    pub(crate) fn join_position(&self, pre_roll_packets: u64) -> Option<u64> {
        self.pages
            .last()
            .map(|newest| newest.next_seq.saturating_sub(pre_roll_packets))
    }

    /// The packet position after the newest page.
    pub(crate) fn newest_end(&self) -> Option<u64> {
        self.pages.last().map(|newest| newest.next_seq)
    }
}

/// Muxes the ring's packets into pages for as long as listeners hold the stream.
struct MuxTask {
    station: Arc<Station>,
    rendition: usize,
    pages: Arc<SharedPages>,
    muxer: OggOpusMuxer,
    packet: PacketBuf,
    scratch: Vec<u8>,
    next_seq: u64,
    page_first_seq: u64,
}

impl MuxTask {
    /// Appends the pages completed by every packet published since the last call. A
    /// task that fell out of the ring (it never should: it runs on every packet)
    /// starts again from the newest packet.
    fn catch_up(&mut self) {
        let feed = &self.station.feeds[self.rendition];
        loop {
            match feed.ring.read(self.next_seq, &mut self.packet) {
                ReadOutcome::Ready(meta) => {
                    self.next_seq += 1;
                    if self
                        .muxer
                        .push_packet(self.packet.as_slice(meta.len), &mut self.scratch)
                    {
                        self.pages.push(SharedPage {
                            first_seq: self.page_first_seq,
                            next_seq: self.next_seq,
                            bytes: Bytes::copy_from_slice(&self.scratch),
                        });
                        self.scratch.clear();
                        self.page_first_seq = self.next_seq;
                        self.pages.notify.notify_waiters();
                    }
                }
                ReadOutcome::NotYet => return,
                ReadOutcome::Overwritten { .. } => {
                    let newest = feed.ring.head().saturating_sub(1);
                    tracing::warn!(
                        station = %self.station.id(),
                        behind = newest.saturating_sub(self.next_seq),
                        "HTTP page muxing fell out of the packet ring; resuming at the newest packet"
                    );
                    self.muxer.flush(&mut self.scratch);
                    self.scratch.clear();
                    self.next_seq = newest;
                    self.page_first_seq = newest;
                }
            }
        }
    }

    async fn run(mut self) {
        let station = Arc::clone(&self.station);
        let feed = &station.feeds[self.rendition];
        loop {
            // The registry holds a weak reference only: this task and the listeners
            // hold the strong ones.
            if station.is_stopping() || Arc::strong_count(&self.pages) == 1 {
                // Listeners waiting for a page see at once that the station stopped.
                self.pages.notify.notify_waiters();
                return;
            }
            let notified = feed.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.catch_up();
            let _ = tokio::time::timeout(IDLE_CHECK, notified).await;
        }
    }
}

/// (station address, rendition, page duration).
type RegistryKey = (usize, usize, u32);
/// The station a stream belongs to, to tell a station from a later one at the same address.
type RegistryEntry = (Weak<Station>, Weak<SharedPages>);
type Registry = Mutex<BTreeMap<RegistryKey, RegistryEntry>>;

/// Shared streams by (station, rendition, page duration); weak, so a stream ends with
/// its last listener.
fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The shared stream of the station's rendition at `page_ms`, started (with its mux
/// task on the current runtime) when it has no listener yet. `serial` names the
/// logical stream when a new one is started.
pub(crate) fn shared_pages(
    station: &Arc<Station>,
    rendition: usize,
    page_ms: u32,
    serial: u32,
    vendor: &str,
) -> Arc<SharedPages> {
    let key = (Arc::as_ptr(station) as usize, rendition, page_ms);
    let mut registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, pages)) = registry.get(&key)
        && let (Some(owner), Some(pages)) = (owner.upgrade(), pages.upgrade())
        && Arc::ptr_eq(&owner, station)
    {
        return pages;
    }
    registry.retain(|_, (owner, pages)| owner.strong_count() > 0 && pages.strong_count() > 0);
    let feed = &station.feeds[rendition];
    let mut muxer = OggOpusMuxer::new(serial, feed.pre_skip, page_ms);
    let mut headers = Vec::with_capacity(256);
    muxer.write_headers(vendor, &mut headers);
    let packets_per_page = u64::from(page_ms.max(FRAME_MS) / FRAME_MS);
    let max_pages = (WINDOW_MS / u64::from(FRAME_MS) / packets_per_page).max(4) as usize;
    let pages = Arc::new(SharedPages {
        headers: Bytes::from(headers),
        window: Mutex::new(Window {
            pages: VecDeque::with_capacity(max_pages),
            max_pages,
        }),
        notify: Notify::new(),
    });
    // Start far enough back that a listener joining now gets its pre-roll.
    let start = feed
        .ring
        .head()
        .saturating_sub(frames_in_window())
        .max(feed.ring.oldest_readable());
    let mut task = MuxTask {
        station: Arc::clone(station),
        rendition,
        pages: Arc::clone(&pages),
        muxer,
        packet: PacketBuf::default(),
        scratch: Vec::with_capacity(8 * 1024),
        next_seq: start,
        page_first_seq: start,
    };
    task.catch_up();
    actix_web::rt::spawn(task.run());
    registry.insert(key, (Arc::downgrade(station), Arc::downgrade(&pages)));
    pages
}

/// Packets muxed ahead of the newest when a stream starts: a second, more than any
/// pre-roll.
fn frames_in_window() -> u64 {
    1000 / u64::from(FRAME_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_pages: usize, pages: &[(u64, u64)]) -> SharedPages {
        let shared = SharedPages {
            headers: Bytes::from_static(b"headers"),
            window: Mutex::new(Window {
                pages: VecDeque::new(),
                max_pages,
            }),
            notify: Notify::new(),
        };
        for &(first_seq, next_seq) in pages {
            shared.push(SharedPage {
                first_seq,
                next_seq,
                bytes: Bytes::from(vec![first_seq as u8]),
            });
        }
        shared
    }

    fn stream(max_pages: usize, pages: &[(u64, u64)]) -> PageView {
        let mut view = PageView::default();
        shared(max_pages, pages).refresh(&mut view);
        view
    }

    fn first_of(step: PageStep) -> Option<u64> {
        match step {
            PageStep::Page(page) => Some(page.first_seq),
            PageStep::Skipped { .. } | PageStep::Idle => None,
        }
    }

    #[test]
    fn listener_gets_the_page_holding_its_position() {
        let pages = stream(10, &[(0, 5), (5, 10), (10, 15)]);
        assert_eq!(first_of(pages.page_at(0)), Some(0));
        assert_eq!(first_of(pages.page_at(7)), Some(5));
        assert_eq!(first_of(pages.page_at(10)), Some(10));
        assert!(matches!(pages.page_at(15), PageStep::Idle));
    }

    #[test]
    fn new_listener_joins_its_pre_roll_back_at_a_page_boundary() {
        let pages = stream(10, &[(0, 5), (5, 10), (10, 15), (15, 20)]);
        let start = pages.join_position(15).unwrap();
        assert_eq!(start, 5);
        assert_eq!(first_of(pages.page_at(start)), Some(5));
        assert!(stream(10, &[]).join_position(15).is_none());
    }

    #[test]
    fn pages_from_a_position_start_with_the_page_holding_it() {
        let pages = stream(10, &[(0, 5), (5, 10), (10, 15)]);
        let firsts = |seq| {
            pages
                .pages_from(seq)
                .iter()
                .map(|page| page.first_seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(firsts(0), [0, 5, 10]);
        assert_eq!(firsts(7), [5, 10]);
        assert_eq!(firsts(10), [10]);
        assert!(firsts(15).is_empty());
    }

    #[test]
    fn window_keeps_only_the_newest_pages_and_reports_what_was_passed_over() {
        let pages = stream(2, &[(0, 5), (5, 10), (10, 15)]);
        assert_eq!(pages.newest_end(), Some(15));
        match pages.page_at(2) {
            PageStep::Skipped { page, packets } => {
                assert_eq!(page.first_seq, 5);
                assert_eq!(packets, 3);
            }
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn every_listener_shares_the_same_page_bytes() {
        let pages = stream(4, &[(0, 5)]);
        let (PageStep::Page(a), PageStep::Page(b)) = (pages.page_at(0), pages.page_at(3)) else {
            panic!("expected pages");
        };
        assert_eq!(a.bytes.as_ptr(), b.bytes.as_ptr());
        assert_eq!(shared(4, &[]).headers(), Bytes::from_static(b"headers"));
    }
}
