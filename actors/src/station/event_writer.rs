//! The event writer actor: takes the station's play events from a bounded queue and
//! stores them in batches, on its own thread, off the real-time path; while the store
//! is away, it keeps them in an on-disk spool and replays them, in order, once the
//! store is back.
//!
//! Producers (the scheduler, listener sessions, the supervisor) hand events over with
//! [`EventQueue::emit`], which never waits. The queue's receiving end, the open sink,
//! the spool and the events taken from the queue but not stored yet live in
//! [`EventWriterParts`], outside the actor: a killed writer comes back with nothing
//! lost.
//!
//! # Where an event goes
//! Events leave the writer in the order they were emitted:
//! 1. While the spool is empty and the store works, batches go straight to the store.
//! 2. When a write fails (the store is busy, locked or away, or it cannot be opened),
//!    the batch and every event after it are appended to the spool, which syncs them
//!    to disk. While the spool holds events, new ones are appended behind them.
//! 3. Every tick after a back-off (doubling from one tick up to
//!    [`MAX_BACKOFF`]), the writer replays the spool oldest first into the store and
//!    commits what it took; once the spool is empty, writes go straight to the store
//!    again. A crash between a store and its commit replays a batch twice, which the
//!    stores ignore (they are idempotent).
//! 4. When the spool reaches its bound, events wait in memory (up to
//!    [`MAX_PENDING`]), `sonicforge_event_spool_full` goes to 1 and one error line is
//!    logged for the episode; when memory is full too, the queue fills and
//!    [`EventQueue::emit`] drops new events, each counted and logged.
//!
//! At start the writer opens the spool and replays what a previous run left; bad
//! bytes found in it are moved aside, logged and counted in
//! `sonicforge_event_spool_corrupt_records_total`. At shutdown, [`Flush`] stores or
//! spools everything queued and syncs the spool.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message};
use prometheus::{Gauge, IntCounter, IntGauge};
use sonicforge_engine::events::{
    EventSink, EventSinkError, PlayEvent, Spool, SpoolCorruption, SpoolError, SpoolOptions,
    SqliteSink,
};

use super::Station;
use crate::config::EventsConfig;
use crate::events::SinkOpener;

/// Events the queue holds between two writes.
const QUEUE_EVENTS: usize = 16_384;
/// How often the writer stores what arrived.
const TICK: Duration = Duration::from_millis(250);
/// How long one tick may keep storing and replaying before the actor reads its
/// mailbox again.
const TICK_BUDGET: Duration = Duration::from_millis(500);
/// Events stored per transaction, and replayed from the spool per batch, at most.
const MAX_BATCH: usize = 1024;
/// Events held in memory while neither the store nor the spool takes them; past it
/// the queue fills and new events are counted as dropped and logged.
pub(crate) const MAX_PENDING: usize = 16_384;
/// Longest wait between two tries of a failing store.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// A spool that could not be opened is tried again after this long.
const SPOOL_REOPEN_AFTER: Duration = Duration::from_secs(5);

/// The station's side of the queue: hands events over without waiting.
#[derive(Debug)]
pub struct EventQueue {
    sender: SyncSender<PlayEvent>,
    emitted: IntCounter,
    dropped: IntCounter,
}

impl EventQueue {
    /// Creates the queue, counting the events it takes in `emitted` and those it
    /// drops in `dropped`; the receiving end goes into the writer's parts.
    pub fn new(emitted: IntCounter, dropped: IntCounter) -> (Self, Receiver<PlayEvent>) {
        let (sender, receiver) = sync_channel(QUEUE_EVENTS);
        (
            Self {
                sender,
                emitted,
                dropped,
            },
            receiver,
        )
    }

    /// Hands `event` to the writer; never blocks, allocates nothing and takes no
    /// lock unless the queue is full. A full queue (the store and the spool have
    /// failed for long) drops the event, counts it and logs it.
    pub fn emit(&self, event: PlayEvent) {
        match self.sender.try_send(event) {
            Ok(()) => self.emitted.inc(),
            Err(TrySendError::Full(event)) => {
                self.dropped.inc();
                tracing::error!(
                    station = %event.station, kind = ?event.event_type(), id = %event.id,
                    "play event dropped: the event queue is full"
                );
            }
            Err(TrySendError::Disconnected(event)) => {
                self.dropped.inc();
                tracing::error!(
                    station = %event.station, kind = ?event.event_type(), id = %event.id,
                    "play event dropped: the station stopped and its event writer has stored its last events"
                );
            }
        }
    }
}

/// Where a station's play events go.
#[derive(Clone)]
pub struct EventStorage {
    pub open_sink: SinkOpener,
    /// Directory of the spools; a station spools to `<spool_dir>/<station id>`.
    pub spool_dir: PathBuf,
    /// Bound of each station's spool, in bytes.
    pub spool_max_bytes: u64,
    /// When set, the writer appends a line `<event id> <kind> <station>` to this file
    /// for every event it takes from the queue, before storing it: with the count of
    /// dropped events, the record of every event emitted (for fault tests).
    pub emitted_log: Option<PathBuf>,
}

impl EventStorage {
    /// Events go through `open_sink`, with the spool and the emitted-event log of
    /// `config` (relative paths under `data_dir`).
    pub fn new(open_sink: SinkOpener, config: &EventsConfig, data_dir: &Path) -> Self {
        Self {
            open_sink,
            spool_dir: config.spool_directory(data_dir),
            spool_max_bytes: config.spool_max_bytes(),
            emitted_log: config.emitted_log_file(data_dir),
        }
    }

    /// Events stored in the SQLite file at `path`.
    pub fn sqlite(path: PathBuf, spool_dir: PathBuf, spool_max_bytes: u64) -> Self {
        Self {
            open_sink: Arc::new(move || {
                SqliteSink::open(&path).map(|sink| Box::new(sink) as Box<dyn EventSink>)
            }),
            spool_dir,
            spool_max_bytes,
            emitted_log: None,
        }
    }
}

impl std::fmt::Debug for EventStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStorage")
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("emitted_log", &self.emitted_log)
            .finish_non_exhaustive()
    }
}

/// The metrics the writer keeps, for one station.
#[derive(Debug, Clone)]
pub(crate) struct EventWriterMetrics {
    pub(crate) written: IntCounter,
    pub(crate) pending: IntGauge,
    pub(crate) write_errors: IntCounter,
    pub(crate) dropped: IntCounter,
    pub(crate) spool_bytes: IntGauge,
    pub(crate) spool_events: IntGauge,
    pub(crate) spool_oldest_age: Gauge,
    pub(crate) spool_full: IntGauge,
    pub(crate) spool_corrupt_records: IntCounter,
    pub(crate) spool_errors: IntCounter,
    pub(crate) spooled: IntCounter,
    pub(crate) replayed: IntCounter,
}

impl EventWriterMetrics {
    pub(crate) fn new(metrics: &crate::metrics::Metrics, station: &str) -> Self {
        let label = [station];
        Self {
            written: metrics.events_written.with_label_values(&label),
            pending: metrics.events_pending.with_label_values(&label),
            write_errors: metrics.event_write_errors.with_label_values(&label),
            dropped: metrics.events_dropped.with_label_values(&label),
            spool_bytes: metrics.event_spool_bytes.with_label_values(&label),
            spool_events: metrics.event_spool_events.with_label_values(&label),
            spool_oldest_age: metrics
                .event_spool_oldest_age_seconds
                .with_label_values(&label),
            spool_full: metrics.event_spool_full.with_label_values(&label),
            spool_corrupt_records: metrics
                .event_spool_corrupt_records
                .with_label_values(&label),
            spool_errors: metrics.event_spool_errors.with_label_values(&label),
            spooled: metrics.event_spool_appended.with_label_values(&label),
            replayed: metrics.event_spool_replayed.with_label_values(&label),
        }
    }
}

/// The spool, or when it could not be opened, when to try again.
#[derive(Debug)]
enum SpoolSlot {
    Closed { retry_at: Option<Instant> },
    Open(Box<Spool>),
}

/// The file of [`EventStorage::emitted_log`].
#[derive(Debug)]
struct EmittedLog {
    path: PathBuf,
    file: File,
    lines: String,
    failing: bool,
}

impl EmittedLog {
    fn open(path: PathBuf) -> Option<Self> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(file) => Some(Self {
                path,
                file,
                lines: String::new(),
                failing: false,
            }),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot open the emitted-event log");
                None
            }
        }
    }

    /// Appends one line per event, in one write.
    fn record<'a>(&mut self, events: impl Iterator<Item = &'a PlayEvent>) {
        use std::fmt::Write as _;
        self.lines.clear();
        for event in events {
            let _ = writeln!(
                self.lines,
                "{} {} {}",
                event.id,
                event.event_type(),
                event.station
            );
        }
        match self.file.write_all(self.lines.as_bytes()) {
            Ok(()) => self.failing = false,
            Err(error) => {
                if !self.failing {
                    tracing::error!(path = %self.path.display(), %error, "cannot write the emitted-event log");
                }
                self.failing = true;
            }
        }
    }
}

/// Writer state that outlives the actor.
pub(crate) struct EventWriterParts {
    station: String,
    receiver: Receiver<PlayEvent>,
    storage: EventStorage,
    sink: Option<Box<dyn EventSink>>,
    /// The store failed: it is not tried again before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The store has failed since it last took a batch (one error line per episode).
    store_failing: bool,
    spool: SpoolSlot,
    /// Events taken from the queue and neither stored nor spooled yet, oldest first;
    /// all of them came after every event in the spool.
    memory: VecDeque<PlayEvent>,
    /// The spool refused an append because of its bound (the alert is up).
    spool_full: bool,
    /// The spool failed to append or replay since it last worked.
    spool_failing: bool,
    emitted_log: Option<EmittedLog>,
    metrics: EventWriterMetrics,
}

impl std::fmt::Debug for EventWriterParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriterParts")
            .field("station", &self.station)
            .field("storage", &self.storage)
            .field("open", &self.sink.is_some())
            .field("spool", &self.spool)
            .field("memory", &self.memory.len())
            .finish_non_exhaustive()
    }
}

impl EventWriterParts {
    pub(crate) fn new(
        station: &str,
        receiver: Receiver<PlayEvent>,
        storage: EventStorage,
        metrics: EventWriterMetrics,
    ) -> Self {
        let emitted_log = storage.emitted_log.clone().and_then(EmittedLog::open);
        Self {
            station: station.to_string(),
            receiver,
            storage,
            sink: None,
            retry_at: None,
            backoff: TICK,
            store_failing: false,
            spool: SpoolSlot::Closed { retry_at: None },
            memory: VecDeque::new(),
            spool_full: false,
            spool_failing: false,
            emitted_log,
            metrics,
        }
    }

    /// Stores, spools and replays what arrived, for at most `budget`.
    fn work(&mut self, budget: Duration) {
        self.ensure_spool();
        let deadline = Instant::now() + budget;
        loop {
            self.receive();
            if !self.step() || Instant::now() >= deadline {
                break;
            }
        }
        self.update_gauges();
    }

    /// Stores or spools everything queued so far and syncs the spool (at shutdown).
    fn flush(&mut self) {
        self.ensure_spool();
        let mut retried = false;
        loop {
            let received = self.receive();
            let progressed = self.step();
            if received == 0 && !progressed {
                if self.memory.is_empty() || retried {
                    break;
                }
                // Neither the store (in its back-off) nor the spool took these: one
                // more try of the store before giving up on them.
                retried = true;
                self.retry_at = None;
            }
        }
        if !self.memory.is_empty() {
            let lost = self.memory.len();
            self.metrics.dropped.inc_by(lost as u64);
            tracing::error!(
                station = %self.station, events = lost,
                "play events lost at shutdown: neither the store nor the spool took them"
            );
            self.memory.clear();
        }
        if let SpoolSlot::Open(spool) = &mut self.spool
            && let Err(error) = spool.sync()
        {
            self.metrics.spool_errors.inc();
            tracing::error!(station = %self.station, %error, "cannot sync the event spool at shutdown");
        }
        self.update_gauges();
    }

    /// Takes events from the queue into memory, up to its bound; how many.
    fn receive(&mut self) -> usize {
        let before = self.memory.len();
        while self.memory.len() < MAX_PENDING {
            match self.receiver.try_recv() {
                Ok(event) => self.memory.push_back(event),
                Err(_) => break,
            }
        }
        let received = self.memory.len() - before;
        if received > 0
            && let Some(log) = &mut self.emitted_log
        {
            log.record(self.memory.range(before..));
        }
        received
    }

    /// One move of events towards the store; whether anything moved.
    fn step(&mut self) -> bool {
        if self.spooled_events() > 0 {
            if self.store_ready() && self.replay_batch() {
                return true;
            }
            // Memory waits behind the spool, in order.
            return self.spool_memory();
        }
        if self.memory.is_empty() {
            return false;
        }
        if self.store_ready() {
            let Some(sink) = self.sink.as_mut() else {
                return false;
            };
            let count = self.memory.len().min(MAX_BATCH);
            let batch = &self.memory.make_contiguous()[..count];
            match sink.write_batch(batch) {
                Ok(()) => {
                    self.memory.drain(..count);
                    self.metrics.written.inc_by(count as u64);
                    self.store_recovered();
                    return true;
                }
                Err(error) => self.store_failed(&error),
            }
        }
        self.spool_memory()
    }

    /// Replays the oldest batch of the spool into the store; whether it was stored.
    fn replay_batch(&mut self) -> bool {
        let SpoolSlot::Open(spool) = &mut self.spool else {
            return false;
        };
        let peeked = spool.peek(MAX_BATCH);
        let found = spool.take_corruption();
        self.report_corruption(&found);
        let (SpoolSlot::Open(spool), Some(sink)) = (&mut self.spool, self.sink.as_mut()) else {
            return false;
        };
        let batch = match peeked {
            Ok(batch) => batch,
            Err(error) => {
                self.metrics.spool_errors.inc();
                if !self.spool_failing {
                    tracing::error!(station = %self.station, %error, "cannot read the event spool; replay waits");
                }
                self.spool_failing = true;
                return false;
            }
        };
        if batch.is_empty() {
            return false;
        }
        match sink.write_batch(&batch) {
            Ok(()) => {
                match spool.commit(batch.len()) {
                    Ok(()) => {}
                    Err(error @ SpoolError::CommitNotRecorded { .. }) => {
                        self.metrics.spool_errors.inc();
                        tracing::warn!(station = %self.station, %error, "replayed play events may be replayed once more after a restart");
                    }
                    Err(error) => {
                        // Only a commit of more than was peeked fails this way.
                        self.metrics.spool_errors.inc();
                        tracing::error!(station = %self.station, %error, "cannot commit replayed play events");
                        return false;
                    }
                }
                self.metrics.written.inc_by(batch.len() as u64);
                self.metrics.replayed.inc_by(batch.len() as u64);
                let left = spool.len_events();
                self.store_recovered();
                if self.spool_full {
                    // Replay made room; a refused append raises the alert again.
                    self.spool_full = false;
                    self.metrics.spool_full.set(0);
                    tracing::info!(station = %self.station, "the event spool has room again");
                }
                if left == 0 {
                    tracing::info!(station = %self.station, "event spool replayed; storing directly again");
                }
                true
            }
            Err(error) => {
                self.store_failed(&error);
                false
            }
        }
    }

    /// Appends memory to the spool, oldest first, as far as the spool takes it;
    /// whether anything was appended.
    fn spool_memory(&mut self) -> bool {
        let SpoolSlot::Open(spool) = &mut self.spool else {
            return false;
        };
        let mut moved = 0;
        let mut chunk = MAX_BATCH;
        while !self.memory.is_empty() && chunk > 0 {
            let count = self.memory.len().min(chunk);
            match spool.append(&self.memory.make_contiguous()[..count]) {
                Ok(()) => {
                    self.memory.drain(..count);
                    moved += count;
                }
                Err(error) if error.is_full() => {
                    // A smaller chunk may still fit.
                    chunk /= 2;
                    if chunk == 0 && !self.spool_full {
                        self.spool_full = true;
                        self.metrics.spool_full.set(1);
                        tracing::error!(
                            station = %self.station, %error, held_in_memory = self.memory.len(),
                            "event spool full: play events wait in memory, then are dropped (counted) until the store is back"
                        );
                    }
                }
                Err(error) => {
                    self.metrics.spool_errors.inc();
                    if !self.spool_failing {
                        tracing::error!(
                            station = %self.station, %error, held_in_memory = self.memory.len(),
                            "cannot append to the event spool: play events wait in memory"
                        );
                    }
                    self.spool_failing = true;
                    break;
                }
            }
        }
        if moved > 0 {
            self.metrics.spooled.inc_by(moved as u64);
            if self.spool_failing {
                tracing::info!(station = %self.station, "the event spool takes events again");
                self.spool_failing = false;
            }
            if self.spool_full && chunk == MAX_BATCH {
                self.spool_full = false;
                self.metrics.spool_full.set(0);
                tracing::info!(station = %self.station, "the event spool has room again");
            }
        }
        moved > 0
    }

    /// Events waiting in the spool (none while it is closed).
    fn spooled_events(&self) -> u64 {
        match &self.spool {
            SpoolSlot::Open(spool) => spool.len_events(),
            SpoolSlot::Closed { .. } => 0,
        }
    }

    /// Whether the store may be tried now: out of its back-off, and open (opening it
    /// if needed).
    fn store_ready(&mut self) -> bool {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        if self.sink.is_none() {
            match (self.storage.open_sink)() {
                Ok(sink) => self.sink = Some(sink),
                Err(error) => {
                    self.store_failed(&error);
                    return false;
                }
            }
        }
        true
    }

    /// The store failed: back off, and reopen it later unless the error is retryable.
    fn store_failed(&mut self, error: &EventSinkError) {
        self.metrics.write_errors.inc();
        let spooled = self.spooled_events();
        if self.store_failing {
            tracing::warn!(
                station = %self.station, %error, spooled, retry_in_ms = self.backoff.as_millis() as u64,
                "the event store still fails"
            );
        } else {
            tracing::error!(
                station = %self.station, %error, spooled,
                "the event store failed: play events go to the spool until it is back"
            );
        }
        self.store_failing = true;
        if !error.is_retryable() {
            self.sink = None;
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The store took a batch.
    fn store_recovered(&mut self) {
        if self.store_failing {
            tracing::info!(station = %self.station, spooled = self.spooled_events(), "the event store is back");
        }
        self.store_failing = false;
        self.retry_at = None;
        self.backoff = TICK;
    }

    /// Opens the station's spool if it is closed and not in its back-off, replaying
    /// what a previous run left.
    fn ensure_spool(&mut self) {
        let SpoolSlot::Closed { retry_at } = self.spool else {
            return;
        };
        if retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let dir = self.storage.spool_dir.join(&self.station);
        match Spool::open(
            &dir,
            SpoolOptions::with_max_bytes(self.storage.spool_max_bytes),
        ) {
            Ok(opened) => {
                self.report_corruption(&opened.corruption);
                let waiting = opened.spool.len_events();
                if waiting > 0 {
                    tracing::info!(
                        station = %self.station, events = waiting, bytes = opened.spool.size_bytes(),
                        "play events left in the spool by a previous run; replaying them"
                    );
                }
                self.spool = SpoolSlot::Open(Box::new(opened.spool));
            }
            Err(error) => {
                self.metrics.spool_errors.inc();
                tracing::error!(
                    station = %self.station, dir = %dir.display(), %error,
                    "cannot open the event spool; play events wait in memory while the store fails"
                );
                self.spool = SpoolSlot::Closed {
                    retry_at: Some(Instant::now() + SPOOL_REOPEN_AFTER),
                };
            }
        }
    }

    fn report_corruption(&self, found: &[SpoolCorruption]) {
        for corruption in found {
            tracing::error!(
                station = %self.station, %corruption,
                "bad bytes in the event spool moved aside; the good records are kept"
            );
        }
        self.metrics
            .spool_corrupt_records
            .inc_by(found.len() as u64);
    }

    fn update_gauges(&self) {
        self.metrics.pending.set(self.memory.len() as i64);
        let (bytes, events, oldest) = match &self.spool {
            SpoolSlot::Open(spool) => (
                spool.size_bytes(),
                spool.len_events(),
                spool.oldest_unix_ms(),
            ),
            SpoolSlot::Closed { .. } => (0, 0, None),
        };
        self.metrics
            .spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .spool_events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
        let age_ms = oldest.map_or(0, |oldest| super::unix_ms_now().saturating_sub(oldest));
        self.metrics.spool_oldest_age.set(age_ms as f64 / 1000.0);
    }
}

/// Stores the station's play events.
#[derive(Debug)]
pub struct EventWriterActor {
    station: Arc<Station>,
    parts: Option<EventWriterParts>,
}

impl EventWriterActor {
    pub fn new(station: Arc<Station>) -> Self {
        Self {
            station,
            parts: None,
        }
    }

    /// The station this actor belongs to.
    pub(crate) fn station(&self) -> &Station {
        &self.station
    }

    fn work(&mut self) {
        let station = Arc::clone(&self.station);
        let Some(parts) = &mut self.parts else {
            return;
        };
        super::run_guarded(&station, "event_writer", || parts.work(TICK_BUDGET));
    }
}

impl Actor for EventWriterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.station.actor_running("event_writer");
        if self.parts.is_none() {
            self.parts = self.station.event_writer_parts.take();
        }
        // Opens the spool and replays what a previous run left without waiting a tick.
        ctx.run_later(Duration::ZERO, |writer, _ctx| writer.work());
        ctx.run_interval(TICK, |writer, _ctx| writer.work());
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("event_writer");
        if let Some(parts) = self.parts.take() {
            self.station.event_writer_parts.put(parts);
        }
    }
}

/// Stores or spools every event queued so far and syncs the spool (at shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Flush> for EventWriterActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {
        let station = Arc::clone(&self.station);
        if let Some(parts) = &mut self.parts {
            super::run_guarded(&station, "event_writer", || parts.flush());
        }
        if station.is_stopping() {
            // The station's last events are stored: close the spool now, so that the
            // station started again (through the API) can open it at once.
            self.parts = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sonicforge_engine::events::{EventKind, SqliteOptions};

    use super::*;
    use crate::metrics::Metrics;

    /// A writer whose store is the SQLite file `db`, waiting at most 20 ms for a lock.
    fn writer(
        dir: &Path,
        spool_max_bytes: u64,
        metrics: &Metrics,
    ) -> (EventQueue, EventWriterParts) {
        let db = dir.join("events.db");
        let (queue, receiver) = EventQueue::new(
            metrics.events_emitted.with_label_values(&["main"]),
            metrics.events_dropped.with_label_values(&["main"]),
        );
        let storage = EventStorage {
            open_sink: Arc::new(move || {
                let options = SqliteOptions {
                    busy_timeout: Duration::from_millis(20),
                };
                SqliteSink::open_with(&db, options).map(|sink| Box::new(sink) as Box<dyn EventSink>)
            }),
            spool_dir: dir.join("spool"),
            spool_max_bytes,
            emitted_log: Some(dir.join("emitted.log")),
        };
        let parts = EventWriterParts::new(
            "main",
            receiver,
            storage,
            EventWriterMetrics::new(metrics, "main"),
        );
        (queue, parts)
    }

    fn emit(queue: &EventQueue, count: usize) -> Vec<PlayEvent> {
        (0..count)
            .map(|i| {
                let event = PlayEvent::new(
                    "main",
                    EventKind::Skip {
                        track_id: format!("track-{i}"),
                    },
                );
                queue.emit(event.clone());
                event
            })
            .collect()
    }

    /// Event ids in the store, in the order they were stored.
    fn stored_ids(dir: &Path) -> Vec<String> {
        let connection = rusqlite::Connection::open(dir.join("events.db")).unwrap();
        let mut statement = connection
            .prepare("SELECT id FROM events ORDER BY rowid")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn ids(events: &[PlayEvent]) -> Vec<String> {
        events.iter().map(|event| event.id.to_string()).collect()
    }

    /// Holds the store's write lock, as another process could, until dropped.
    fn lock_store(dir: &Path) -> rusqlite::Connection {
        // Creates the file and its schema first.
        drop(SqliteSink::open(dir.join("events.db")).unwrap());
        let connection = rusqlite::Connection::open(dir.join("events.db")).unwrap();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        connection
    }

    /// Ends the back-off, as time would.
    fn skip_backoff(parts: &mut EventWriterParts) {
        parts.retry_at = None;
    }

    fn gauge(metrics: &Metrics, name: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find(|line| line.starts_with(&format!("{name}{{station=\"main\"}}")))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn events_go_straight_to_a_working_store() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let (queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        let emitted = emit(&queue, 30);
        parts.work(TICK_BUDGET);
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 0.0);
        assert_eq!(
            gauge(&metrics, "sonicforge_event_spool_appended_total"),
            0.0
        );
        assert_eq!(gauge(&metrics, "sonicforge_events_written_total"), 30.0);
    }

    #[test]
    fn a_locked_store_sends_events_to_the_spool_and_they_are_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let (queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        let mut emitted = emit(&queue, 5);
        parts.work(TICK_BUDGET);
        let lock = lock_store(dir.path());
        for _ in 0..4 {
            emitted.extend(emit(&queue, 40));
            skip_backoff(&mut parts);
            parts.work(TICK_BUDGET);
        }
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 160.0);
        assert!(gauge(&metrics, "sonicforge_event_spool_bytes") > 0.0);
        assert_eq!(gauge(&metrics, "sonicforge_events_pending"), 0.0);
        assert!(gauge(&metrics, "sonicforge_event_write_errors_total") >= 4.0);

        drop(lock);
        // The store is back, but the writer waits out its back-off.
        emitted.extend(emit(&queue, 10));
        parts.retry_at = Some(Instant::now() + Duration::from_secs(60));
        parts.work(TICK_BUDGET);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 170.0);
        skip_backoff(&mut parts);
        emitted.extend(emit(&queue, 10));
        parts.work(TICK_BUDGET);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 0.0);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_bytes"), 0.0);
        // Events that came while the spool drained followed it straight to the store.
        assert_eq!(
            gauge(&metrics, "sonicforge_event_spool_replayed_total"),
            170.0
        );
        // Straight to the store again.
        emitted.extend(emit(&queue, 3));
        parts.work(TICK_BUDGET);
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
        assert_eq!(
            gauge(&metrics, "sonicforge_event_spool_appended_total"),
            170.0
        );
        assert_eq!(gauge(&metrics, "sonicforge_events_written_total"), 188.0);

        let log = std::fs::read_to_string(dir.path().join("emitted.log")).unwrap();
        let logged: Vec<String> = log
            .lines()
            .map(|line| line.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(logged, ids(&emitted));
        assert!(
            log.lines().all(|line| line.ends_with(" skip main")),
            "{log}"
        );
    }

    #[test]
    fn a_new_writer_replays_what_a_crashed_one_left_in_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let lock = lock_store(dir.path());
        let (queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        let emitted = emit(&queue, 50);
        parts.work(TICK_BUDGET);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 50.0);
        // Gone without a flush.
        drop(parts);
        drop(queue);
        drop(lock);

        let metrics = Metrics::new();
        let (_queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        parts.work(TICK_BUDGET);
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
        assert_eq!(
            gauge(&metrics, "sonicforge_event_spool_replayed_total"),
            50.0
        );
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 0.0);
    }

    #[test]
    fn a_full_spool_raises_the_alert_and_events_wait_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let lock = lock_store(dir.path());
        let (queue, mut parts) = writer(dir.path(), 16 * 1024, &metrics);
        let mut emitted = Vec::new();
        for _ in 0..5 {
            emitted.extend(emit(&queue, 40));
            skip_backoff(&mut parts);
            parts.work(TICK_BUDGET);
        }
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_full"), 1.0);
        let spooled = gauge(&metrics, "sonicforge_event_spool_events");
        let pending = gauge(&metrics, "sonicforge_events_pending");
        assert!(spooled > 0.0 && pending > 0.0, "{spooled} {pending}");
        assert_eq!(spooled + pending, 200.0);
        assert!(gauge(&metrics, "sonicforge_event_spool_bytes") <= 16.0 * 1024.0);
        assert!(gauge(&metrics, "sonicforge_event_spool_oldest_age_seconds") >= 0.0);

        drop(lock);
        skip_backoff(&mut parts);
        parts.work(TICK_BUDGET);
        parts.work(TICK_BUDGET);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_full"), 0.0);
        assert_eq!(gauge(&metrics, "sonicforge_events_pending"), 0.0);
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
        assert_eq!(gauge(&metrics, "sonicforge_events_dropped_total"), 0.0);
    }

    #[test]
    fn a_flush_spools_what_the_store_does_not_take() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let lock = lock_store(dir.path());
        let (queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        let emitted = emit(&queue, 25);
        parts.flush();
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 25.0);
        drop(parts);
        drop(lock);
        let metrics = Metrics::new();
        let (_queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        parts.flush();
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
    }

    #[test]
    fn a_store_that_cannot_be_opened_is_spooled_around() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the database file should be: it cannot be opened.
        std::fs::create_dir_all(dir.path().join("events.db")).unwrap();
        let metrics = Metrics::new();
        let (queue, mut parts) = writer(dir.path(), 1 << 20, &metrics);
        let emitted = emit(&queue, 12);
        parts.work(TICK_BUDGET);
        assert_eq!(gauge(&metrics, "sonicforge_event_spool_events"), 12.0);
        std::fs::remove_dir(dir.path().join("events.db")).unwrap();
        skip_backoff(&mut parts);
        parts.work(TICK_BUDGET);
        assert_eq!(stored_ids(dir.path()), ids(&emitted));
    }
}
