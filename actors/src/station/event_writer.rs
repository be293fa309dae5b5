//! The event writer actor: takes the station's play events from a bounded queue and
//! stores them in batches, on its own thread, off the real-time path.
//!
//! Producers (the scheduler, listener sessions, the supervisor) hand events over with
//! [`EventQueue::emit`], which never waits. The queue's receiving end, the open sink and
//! the batch not yet stored live in [`EventWriterParts`], outside the actor: a killed
//! writer comes back with nothing lost. While the sink fails, events stay pending (up
//! to a bound) and the write is retried every tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message};
use prometheus::{IntCounter, IntGauge};
use sonicforge_engine::events::{EventSink, PlayEvent, SqliteSink};

use super::Station;

/// Events the queue holds between two writes.
const QUEUE_EVENTS: usize = 16_384;
/// How often the writer stores what arrived.
const TICK: Duration = Duration::from_millis(250);
/// Events stored per transaction at most.
const MAX_BATCH: usize = 1024;
/// Events held while the sink fails; past it the queue fills and new events are
/// counted as dropped and logged.
const MAX_PENDING: usize = 16_384;
/// A sink that failed to open is tried again after this long.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// The station's side of the queue: hands events over without waiting.
#[derive(Debug)]
pub struct EventQueue {
    sender: SyncSender<PlayEvent>,
    dropped: IntCounter,
}

impl EventQueue {
    /// Creates the queue; the receiving end goes into the writer's parts.
    pub(crate) fn new(dropped: IntCounter) -> (Self, Receiver<PlayEvent>) {
        let (sender, receiver) = sync_channel(QUEUE_EVENTS);
        (Self { sender, dropped }, receiver)
    }

    /// Hands `event` to the writer; never blocks. A full queue (the sink has failed
    /// for long) drops the event, counts it and logs it.
    pub fn emit(&self, event: PlayEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) => {
                self.dropped.inc();
                tracing::error!(
                    station = %event.station, kind = ?event.event_type(), id = %event.id,
                    "play event dropped: the event queue is full"
                );
            }
        }
    }
}

/// Writer state that outlives the actor.
pub(crate) struct EventWriterParts {
    receiver: Receiver<PlayEvent>,
    path: PathBuf,
    sink: Option<Box<dyn EventSink>>,
    failed_open_at: Option<Instant>,
    pending: Vec<PlayEvent>,
    written: IntCounter,
    pending_gauge: IntGauge,
    write_errors: IntCounter,
}

impl std::fmt::Debug for EventWriterParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriterParts")
            .field("path", &self.path)
            .field("open", &self.sink.is_some())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The metrics the writer keeps.
#[derive(Debug, Clone)]
pub(crate) struct EventWriterMetrics {
    pub(crate) written: IntCounter,
    pub(crate) pending: IntGauge,
    pub(crate) write_errors: IntCounter,
}

impl EventWriterParts {
    pub(crate) fn new(
        receiver: Receiver<PlayEvent>,
        path: PathBuf,
        metrics: EventWriterMetrics,
    ) -> Self {
        Self {
            receiver,
            path,
            sink: None,
            failed_open_at: None,
            pending: Vec::new(),
            written: metrics.written,
            pending_gauge: metrics.pending,
            write_errors: metrics.write_errors,
        }
    }

    /// Stores what arrived: everything when `all`, else one batch.
    fn write(&mut self, station: &str, all: bool) {
        loop {
            while self.pending.len() < MAX_PENDING {
                match self.receiver.try_recv() {
                    Ok(event) => self.pending.push(event),
                    Err(_) => break,
                }
            }
            self.pending_gauge.set(self.pending.len() as i64);
            if self.pending.is_empty() {
                return;
            }
            if !self.ensure_sink() {
                return;
            }
            let Some(sink) = self.sink.as_mut() else {
                return;
            };
            let batch = self.pending.len().min(MAX_BATCH);
            match sink.write_batch(&self.pending[..batch]) {
                Ok(()) => {
                    self.pending.drain(..batch);
                    self.written.inc_by(batch as u64);
                    self.pending_gauge.set(self.pending.len() as i64);
                }
                Err(error) => {
                    self.write_errors.inc();
                    tracing::error!(station, %error, pending = self.pending.len(), "play events not stored yet; retrying");
                    if !error.is_retryable() {
                        self.sink = None;
                        self.failed_open_at = Some(Instant::now());
                    }
                    return;
                }
            }
            if !all {
                return;
            }
        }
    }

    /// Opens the sink if it is closed and not in its back-off; whether it is open.
    fn ensure_sink(&mut self) -> bool {
        if self.sink.is_none() {
            if self
                .failed_open_at
                .is_some_and(|at| at.elapsed() < REOPEN_AFTER)
            {
                return false;
            }
            match SqliteSink::open(&self.path) {
                Ok(sink) => {
                    self.failed_open_at = None;
                    self.sink = Some(Box::new(sink));
                }
                Err(error) => {
                    self.failed_open_at = Some(Instant::now());
                    tracing::error!(path = %self.path.display(), %error, "cannot open the event store; events are held");
                }
            }
        }
        self.sink.is_some()
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

    fn write(&mut self, all: bool) {
        let station = Arc::clone(&self.station);
        let Some(parts) = &mut self.parts else {
            return;
        };
        super::run_guarded(&station, "event_writer", || parts.write(station.id(), all));
    }
}

impl Actor for EventWriterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.station.actor_running("event_writer");
        if self.parts.is_none() {
            self.parts = self.station.event_writer_parts.take();
        }
        ctx.run_interval(TICK, |writer, _ctx| writer.write(false));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("event_writer");
        if let Some(parts) = self.parts.take() {
            self.station.event_writer_parts.put(parts);
        }
    }
}

/// Stores every event queued so far (at shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Flush> for EventWriterActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {
        self.write(true);
    }
}
