//! One station: its shared state and its pipeline of actors.
//!
//! ```text
//! Scheduler --Render--> Generator --Track (Arc)--> upcoming queue (rtrb)
//! Mixer (playout clock, 20 ms frames) --PCM ring (rtrb)--> Encoder (one Opus encoder per rendition)
//! Encoder --packet ring per rendition (lock-free broadcast)--> listener sessions
//! ```
//!
//! State that outlives an actor (the queues' ends, the packet writers, the playout
//! clock, the track board) lives in [`Station`], outside the actors, so that a
//! restarted actor takes up where its predecessor stopped.

mod encoder;
mod event_writer;
mod generator;
mod mixer;
mod scheduler;
mod subtree;
mod track_board;
mod unclean_sessions;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Addr, Arbiter, ArbiterHandle, Recipient, Supervisor};
use sonicforge_engine::codec::opus::OpusEncoder;
use sonicforge_engine::events::{EventKind, PlayEvent};
use sonicforge_engine::frame::{CHANNELS, SAMPLE_RATE, frames_for_ms};
use sonicforge_engine::generate::{Generator as _, ProceduralGenerator, TrackRequest};
use sonicforge_engine::mix::{Mixer, MixerOptions, retired_queue, upcoming_queue};
use sonicforge_engine::ring::{PacketRing, PcmConsumer, PcmProducer, pcm_ring};
use tokio::sync::Notify;

use crate::config::{ListenerConfig, StationConfig, SupervisionConfig};
use crate::mastering::MasteringSettings;
use crate::media_library::MediaLibrary;
use crate::metrics::{Metrics, StationMetrics};
use crate::playlists::{Playlist, PlaylistStore};
use crate::supervise::chaos::{ChaosActor, ChaosMode, Kill, KillError, Killed};
use crate::supervise::tree::{ChildExited, ExitReason, Heartbeat, Restart, Watched};

pub use encoder::EncoderActor;
pub use event_writer::{EventQueue, EventStorage, EventWriterActor, Flush};
pub use generator::{GeneratorActor, MasteredTrack, RenderSource};
pub use mixer::MixerActor;
pub use scheduler::{
    MAX_REQUESTS, QueueFull, QueueOutcome, QueueRequest, SchedulerActor, SkipOutcome, SkipTrack,
    SwapOutcome, SwapPlaylist, SwapWhen,
};
pub use subtree::StationSubtree;
pub use track_board::{NowPlaying, TrackBoard, TrackInfo};
pub use unclean_sessions::{
    ALIVE_EVERY, AliveMarker, UNCLEAN_SHUTDOWN, UncleanSessions, UncleanSessionsError,
};

/// Packets kept in each rendition's broadcast ring: pre-roll, the lag allowance and a margin.
const PACKET_RING_SECONDS: u64 = 4;
/// Capacity of the PCM ring between mixer and encoder: how long the encoder may be
/// kept off the CPU before frames are lost. Capacity adds no latency; only a backlog would.
const PCM_RING_MS: u64 = 1000;
/// Rendered requests waiting to play after the track on air.
const REQUEST_QUEUE_TRACKS: usize = 2;
/// Prompt and length of the loop played on dead air.
const FALLBACK_PROMPT: &str = "ambient calm 60 bpm C major";
const FALLBACK_SECONDS: u64 = 24;
const FALLBACK_LOOP_FADE_SECONDS: u64 = 4;

/// Errors while bringing a station up.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("station {station}: cannot create the {kbps} kb/s Opus encoder: {source}")]
    Encoder {
        station: String,
        kbps: u32,
        source: sonicforge_engine::codec::CodecError,
    },
    #[error("station {station}: cannot render the fallback loop: {source}")]
    Fallback {
        station: String,
        source: sonicforge_engine::generate::GenerateError,
    },
}

/// One bitrate rendition's packets, as listeners see them.
#[derive(Debug)]
pub struct RenditionFeed {
    pub bitrate_kbps: u32,
    pub ring: Arc<PacketRing>,
    /// Woken after every batch of packets the encoder publishes.
    pub notify: Notify,
    /// Encoder lookahead in samples, for OpusHead.
    pub pre_skip: u16,
}

/// Maps sample timestamps to wall-clock time: sample `pts` went on air at `unix_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnchor {
    pub pts: u64,
    pub unix_ms: u64,
    pub instant: Instant,
}

impl ClockAnchor {
    /// Wall-clock milliseconds at which sample `pts` goes on air.
    pub fn unix_ms_at(&self, pts: u64) -> f64 {
        self.unix_ms as f64 + (pts as f64 - self.pts as f64) * 1000.0 / f64::from(SAMPLE_RATE)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parts an actor takes when it starts and gives back when it stops. A slot is
/// empty while its actor runs.
#[derive(Debug)]
pub(crate) struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    fn new(value: T) -> Self {
        Self(Mutex::new(Some(value)))
    }

    pub(crate) fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Takes the value without waiting: `None` when it is empty or being handled.
    pub(crate) fn try_take(&self) -> Option<T> {
        match self.0.try_lock() {
            Ok(mut value) => value.take(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn put(&self, value: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }
}

/// A station: configuration, shared state and the addresses of its actors.
#[derive(Debug)]
pub struct Station {
    pub config: StationConfig,
    pub listener_config: ListenerConfig,
    pub feeds: Vec<RenditionFeed>,
    pub board: TrackBoard,
    pub metrics: StationMetrics,
    pub global_metrics: Metrics,
    /// Every playlist of the process; the store records which one this station plays.
    pub playlists: Arc<PlaylistStore>,
    /// Operator requests waiting to be rendered.
    requests_waiting: AtomicUsize,
    /// Where file items are decoded from, once the server opened the library.
    media: OnceLock<Arc<MediaLibrary>>,
    clock: Mutex<Option<ClockAnchor>>,
    /// Sample timestamp of the next frame the mixer will play.
    pub(crate) playout_pts: AtomicU64,
    /// Process-relative milliseconds of the last packet the encoder published.
    last_packet_ms: AtomicU64,
    process_start: Instant,
    stopping: AtomicBool,
    /// Actors that stopped and have not run again yet, with when they stopped.
    stopped_actors: Mutex<Vec<(&'static str, Instant)>>,
    pub(crate) scheduler_parts: Slot<scheduler::SchedulerParts>,
    pub(crate) mixer_parts: Slot<mixer::MixerParts>,
    pub(crate) encoder_parts: Slot<encoder::EncoderParts>,
    pub(crate) event_writer_parts: Slot<event_writer::EventWriterParts>,
    /// Play events go here, to the event writer; handing one over never waits.
    pub events: EventQueue,
    /// Listener-time of the station, for the listener-milliseconds of each play.
    pub listener_clock: crate::events::ListenerClock,
    /// The PCM ring between mixer and encoder: the generation now wired, and the ends
    /// of a newer ring waiting for the mixer and the encoder to take them.
    pcm_generation: AtomicU64,
    pub(crate) pending_pcm_producer: Slot<PcmProducer>,
    pub(crate) pending_pcm_consumer: Slot<PcmConsumer>,
    pub(crate) heartbeats: StationHeartbeats,
    pub(crate) supervision: SupervisionConfig,
    /// How the generator masters every track.
    pub(crate) mastering: MasteringSettings,
    supervisor: Mutex<Option<Recipient<ChildExited>>>,
    /// Actors stopped on purpose by a subtree restart: their restart is not an exit.
    planned_restarts: Mutex<Vec<&'static str>>,
    /// Restarts did not help: the fallback loop is held on air and the station is not ready.
    degraded: AtomicBool,
    /// The event writer and its thread once the other actors stopped.
    event_writer: Mutex<Option<(Addr<EventWriterActor>, Arbiter)>>,
    /// WebSocket listener sessions by session id, for chaos kills.
    listeners: Mutex<BTreeMap<u64, Recipient<Kill>>>,
    actors: Mutex<Option<StationActors>>,
}

/// Signs of life of the actors the station supervisor watches for stalls.
#[derive(Debug)]
pub(crate) struct StationHeartbeats {
    pub(crate) mixer: Arc<Heartbeat>,
    pub(crate) encoder: Arc<Heartbeat>,
    pub(crate) generator: Arc<Heartbeat>,
}

#[derive(Debug)]
struct StationActors {
    scheduler: Addr<SchedulerActor>,
    generator: Addr<GeneratorActor>,
    mixer: Addr<MixerActor>,
    encoder: Addr<EncoderActor>,
    event_writer: Addr<EventWriterActor>,
    /// Outlives the other actors at shutdown, to store the last events.
    event_arbiter: Arbiter,
    generator_arbiter: Arbiter,
    arbiters: Vec<Arbiter>,
}

impl Station {
    /// Builds a station's state and starts its actors, each on its own thread.
    pub fn start(
        config: StationConfig,
        listener_config: ListenerConfig,
        supervision: SupervisionConfig,
        mastering: MasteringSettings,
        storage: EventStorage,
        metrics: &Metrics,
        playlists: Arc<PlaylistStore>,
    ) -> Result<Arc<Self>, StationError> {
        let station = Self::start_without_actors(
            config,
            listener_config,
            supervision,
            mastering,
            storage,
            metrics,
            playlists,
        )?;
        station.emit(EventKind::StationStarted);
        station.start_actors();
        tracing::info!(station = %station.config.id, renditions = ?station.config.renditions_kbps, "station started");
        Ok(station)
    }

    /// Builds a station's state (queues, rings, encoders, the fallback loop) without
    /// starting its actors.
    pub(crate) fn start_without_actors(
        config: StationConfig,
        listener_config: ListenerConfig,
        supervision: SupervisionConfig,
        mastering: MasteringSettings,
        storage: EventStorage,
        metrics: &Metrics,
        playlists: Arc<PlaylistStore>,
    ) -> Result<Arc<Self>, StationError> {
        let station_metrics = StationMetrics::new(
            metrics,
            &config.id,
            ProceduralGenerator::default().name(),
            mastering.backend.name(),
        );
        let fallback = fallback_loop().map_err(|source| StationError::Fallback {
            station: config.id.clone(),
            source,
        })?;

        let (upcoming_producer, upcoming_consumer) = upcoming_queue(config.upcoming_tracks);
        let (request_producer, request_consumer) = upcoming_queue(REQUEST_QUEUE_TRACKS);
        let (retired_producer, retired_consumer) =
            retired_queue(config.upcoming_tracks + REQUEST_QUEUE_TRACKS + 4);
        let mixer = Mixer::new(
            MixerOptions {
                crossfade_samples: (u64::from(config.crossfade_ms) * u64::from(SAMPLE_RATE) / 1000)
                    as u32,
                ..MixerOptions::default()
            },
            upcoming_consumer,
            retired_producer,
            fallback,
        )
        .with_request_queue(request_consumer);
        let mixer_control = mixer.control();
        let (pcm_producer, pcm_consumer) = pcm_ring(PCM_RING_MS, 1);

        let ring_packets = frames_for_ms(PACKET_RING_SECONDS * 1000);
        let mut feeds = Vec::new();
        let mut renditions = Vec::new();
        for &kbps in &config.renditions_kbps {
            let encoder =
                OpusEncoder::new(kbps * 1000).map_err(|source| StationError::Encoder {
                    station: config.id.clone(),
                    kbps,
                    source,
                })?;
            let (writer, ring) = PacketRing::with_capacity(ring_packets);
            feeds.push(RenditionFeed {
                bitrate_kbps: kbps,
                ring,
                notify: Notify::new(),
                pre_skip: encoder.pre_skip(),
            });
            renditions.push(encoder::RenditionEncoder::new(
                encoder,
                writer,
                metrics
                    .encode_seconds
                    .with_label_values(&[config.id.as_str(), &kbps.to_string()]),
            ));
        }

        let seed = config.seed.unwrap_or_else(unix_ms_now);
        let station_label = [config.id.as_str()];
        let (events, event_receiver) = EventQueue::new(
            metrics.events_emitted.with_label_values(&station_label),
            metrics.events_dropped.with_label_values(&station_label),
        );
        let event_writer_parts = event_writer::EventWriterParts::new(
            &config.id,
            event_receiver,
            storage,
            event_writer::EventWriterMetrics::new(metrics, &config.id),
        );
        let station = Arc::new(Self {
            event_writer_parts: Slot::new(event_writer_parts),
            events,
            listener_clock: crate::events::ListenerClock::default(),
            scheduler_parts: Slot::new(scheduler::SchedulerParts::new(
                upcoming_producer,
                request_producer,
                retired_consumer,
                mixer_control,
                seed,
                starting_playlist(&config, &playlists),
                config
                    .jingle_every_minutes
                    .map(|minutes| Duration::from_secs(u64::from(minutes) * 60)),
            )),
            mixer_parts: Slot::new(mixer::MixerParts::new(mixer, pcm_producer)),
            encoder_parts: Slot::new(encoder::EncoderParts::new(pcm_consumer, renditions)),
            config,
            listener_config,
            feeds,
            board: TrackBoard::default(),
            metrics: station_metrics,
            global_metrics: metrics.clone(),
            playlists,
            requests_waiting: AtomicUsize::new(0),
            media: OnceLock::new(),
            clock: Mutex::new(None),
            playout_pts: AtomicU64::new(0),
            last_packet_ms: AtomicU64::new(0),
            process_start: Instant::now(),
            stopping: AtomicBool::new(false),
            stopped_actors: Mutex::new(Vec::new()),
            pcm_generation: AtomicU64::new(1),
            pending_pcm_producer: Slot(Mutex::new(None)),
            pending_pcm_consumer: Slot(Mutex::new(None)),
            heartbeats: StationHeartbeats {
                mixer: Heartbeat::new(),
                encoder: Heartbeat::new(),
                generator: Heartbeat::new(),
            },
            supervision,
            mastering,
            supervisor: Mutex::new(None),
            planned_restarts: Mutex::new(Vec::new()),
            degraded: AtomicBool::new(false),
            listeners: Mutex::new(BTreeMap::new()),
            event_writer: Mutex::new(None),
            actors: Mutex::new(None),
        });
        Ok(station)
    }

    fn start_actors(self: &Arc<Self>) {
        let generator_arbiter = Arbiter::new();
        let mixer_arbiter = Arbiter::new();
        let encoder_arbiter = Arbiter::new();
        let control_arbiter = Arbiter::new();
        let event_arbiter = Arbiter::new();

        let generator = self.start_generator(&generator_arbiter.handle());
        let scheduler = {
            let station = Arc::clone(self);
            Supervisor::start_in_arbiter(&control_arbiter.handle(), move |_| {
                SchedulerActor::new(station)
            })
        };
        let mixer = {
            let station = Arc::clone(self);
            Supervisor::start_in_arbiter(&mixer_arbiter.handle(), move |_| MixerActor::new(station))
        };
        let encoder = {
            let station = Arc::clone(self);
            Supervisor::start_in_arbiter(&encoder_arbiter.handle(), move |_| {
                EncoderActor::new(station)
            })
        };
        let event_writer = {
            let station = Arc::clone(self);
            Supervisor::start_in_arbiter(&event_arbiter.handle(), move |_| {
                EventWriterActor::new(station)
            })
        };
        *self.actors.lock().unwrap_or_else(PoisonError::into_inner) = Some(StationActors {
            scheduler,
            generator,
            mixer,
            encoder,
            event_writer,
            event_arbiter,
            generator_arbiter,
            // The control arbiter stays last: `control_arbiter` hands it out.
            arbiters: vec![mixer_arbiter, encoder_arbiter, control_arbiter],
        });
    }

    fn start_generator(self: &Arc<Self>, arbiter: &ArbiterHandle) -> Addr<GeneratorActor> {
        let station = Arc::clone(self);
        Supervisor::start_in_arbiter(arbiter, move |_| GeneratorActor::new(station))
    }

    /// The arbiter the station's control actors (scheduler, supervisor) run on.
    pub fn control_arbiter(&self) -> Option<ArbiterHandle> {
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        actors
            .as_ref()
            .and_then(|actors| actors.arbiters.last().map(Arbiter::handle))
    }

    /// The generator now in service (it changes when a stalled one is replaced).
    pub(crate) fn generator(&self) -> Option<Addr<GeneratorActor>> {
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        actors.as_ref().map(|actors| actors.generator.clone())
    }

    pub(crate) fn scheduler(&self) -> Option<Addr<SchedulerActor>> {
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        actors.as_ref().map(|actors| actors.scheduler.clone())
    }

    /// The playlist the station plays.
    pub fn playlist_name(&self) -> Option<String> {
        self.playlists.playing(self.id())
    }

    /// The media library file items are decoded from, once there is one.
    pub(crate) fn media_library(&self) -> Option<&Arc<MediaLibrary>> {
        self.media.get()
    }

    /// Operator requests waiting to be rendered.
    pub fn requests_waiting(&self) -> usize {
        self.requests_waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn note_requests(&self, waiting: usize) {
        self.requests_waiting.store(waiting, Ordering::Relaxed);
    }

    /// Kills one of the station's actors (chaos hooks) and says which one.
    pub fn kill(&self, actor: ChaosActor, mode: ChaosMode) -> Result<Killed, KillError> {
        let killed = |session| Killed {
            station: self.id().to_string(),
            actor,
            mode,
            session,
        };
        if actor == ChaosActor::Listener {
            let listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some((&session, recipient)) = listeners.iter().next() else {
                return Err(KillError::NoListener(self.id().to_string()));
            };
            recipient.do_send(Kill(mode));
            return Ok(killed(Some(session)));
        }
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(actors) = actors.as_ref() else {
            return Err(KillError::StationStopped(self.id().to_string()));
        };
        match actor {
            ChaosActor::Scheduler => actors.scheduler.do_send(Kill(mode)),
            ChaosActor::Generator => actors.generator.do_send(Kill(mode)),
            ChaosActor::Mixer => actors.mixer.do_send(Kill(mode)),
            ChaosActor::Encoder => actors.encoder.do_send(Kill(mode)),
            ChaosActor::EventWriter => actors.event_writer.do_send(Kill(mode)),
            ChaosActor::Listener => {}
        }
        Ok(killed(None))
    }

    /// Registers a WebSocket listener session so that chaos tests can kill it.
    pub(crate) fn listener_joined(&self, session: u64, recipient: Recipient<Kill>) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session, recipient);
    }

    pub(crate) fn listener_left(&self, session: u64) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
    }

    /// Restarts every actor of the station (a subtree restart): the PCM ring between
    /// mixer and encoder is replaced by a new generation, and each actor is stopped so
    /// that its supervisor starts it again on fresh wiring.
    pub(crate) fn restart_actors(&self) {
        let generation = self.pcm_generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (producer, consumer) = pcm_ring(PCM_RING_MS, generation);
        self.pending_pcm_producer.put(producer);
        self.pending_pcm_consumer.put(consumer);
        self.global_metrics
            .escalations
            .with_label_values(&[self.id(), "subtree_restart"])
            .inc();
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(actors) = actors.as_ref() else {
            return;
        };
        self.planned_restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(["scheduler", "generator", "mixer", "encoder", "event_writer"]);
        actors.event_writer.do_send(Restart);
        actors.scheduler.do_send(Restart);
        actors.generator.do_send(Restart);
        actors.mixer.do_send(Restart);
        actors.encoder.do_send(Restart);
    }

    /// Replaces a stalled actor where its parts allow; counts the stall either way.
    pub(crate) fn replace_stalled(self: &Arc<Self>, actor: &'static str) -> bool {
        self.count_restart(actor, ExitReason::Stalled);
        if actor != "generator" {
            // The mixer's and encoder's parts are inside the stuck actor: nothing can
            // take over from them until its thread runs again.
            tracing::error!(station = %self.id(), actor, "stalled real-time actor cannot be replaced while its thread is stuck");
            return false;
        }
        let arbiter = Arbiter::new();
        let generator = self.start_generator(&arbiter.handle());
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(actors) = actors.as_mut() else {
            arbiter.stop();
            return false;
        };
        actors.generator = generator;
        // The stuck thread ends once its render returns, if it ever does.
        std::mem::replace(&mut actors.generator_arbiter, arbiter).stop();
        self.heartbeats.generator.idle();
        tracing::warn!(station = %self.id(), "stalled generator replaced by a new one on a new thread");
        true
    }

    /// The PCM ring generation the mixer and encoder should be on.
    pub(crate) fn pcm_generation(&self) -> u64 {
        self.pcm_generation.load(Ordering::Acquire)
    }

    /// Holds the fallback loop on air and reports not ready (`true`), or goes back to music.
    pub(crate) fn set_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Release);
        self.metrics.degraded.set(i64::from(degraded));
        if degraded {
            self.global_metrics
                .escalations
                .with_label_values(&[self.id(), "degraded"])
                .inc();
            tracing::error!(station = %self.id(), "station degraded: fallback loop on air until the actors are calm");
        } else {
            tracing::warn!(station = %self.id(), "station recovered from the degraded state");
        }
    }

    /// Whether the station gave up on restarts and holds its fallback loop on air.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Connects the station to its supervisor, which hears of every actor's death.
    pub(crate) fn set_supervisor(&self, supervisor: Recipient<ChildExited>) {
        *self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(supervisor);
    }

    /// The actors the supervisor watches for stalls.
    pub(crate) fn watched(&self) -> Vec<Watched> {
        let realtime = std::time::Duration::from_millis(self.supervision.realtime_stall_ms);
        vec![
            Watched {
                child: "mixer",
                heartbeat: Arc::clone(&self.heartbeats.mixer),
                stall_after: realtime,
            },
            Watched {
                child: "encoder",
                heartbeat: Arc::clone(&self.heartbeats.encoder),
                stall_after: realtime,
            },
            Watched {
                child: "generator",
                heartbeat: Arc::clone(&self.heartbeats.generator),
                stall_after: Duration::from_secs(self.supervision.generator_stall_seconds),
            },
        ]
    }

    /// Hands a play event of this station to its event writer; never waits.
    pub fn emit(&self, kind: EventKind) {
        self.events.emit(PlayEvent::new(self.id(), kind));
    }

    /// Stores every play event queued so far, then stops the event writer (the last
    /// step of a shutdown, after [`Station::stop`] and after the listeners left);
    /// waits at most `timeout`.
    pub async fn flush_events(&self, timeout: Duration) {
        let writer = {
            let mut writer = self
                .event_writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            writer.take()
        };
        let Some((writer, arbiter)) = writer else {
            return;
        };
        if tokio::time::timeout(timeout, writer.send(Flush))
            .await
            .is_err()
        {
            tracing::error!(station = %self.id(), "play events not flushed in time at shutdown");
        }
        arbiter.stop();
    }

    /// Stops the station's actors and their threads, all but the event writer, which
    /// [`Station::flush_events`] stops.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Listener sessions waiting for packets see that the station stops.
        for feed in &self.feeds {
            feed.notify.notify_waiters();
        }
        if let Some(actors) = self
            .actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.emit(EventKind::StationStopped);
            *self
                .event_writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner) =
                Some((actors.event_writer, actors.event_arbiter));
            drop((
                actors.scheduler,
                actors.generator,
                actors.mixer,
                actors.encoder,
            ));
            actors.generator_arbiter.stop();
            for arbiter in actors.arbiters {
                arbiter.stop();
            }
        }
    }

    /// Counts a restart of one of this station's actors in
    /// `sonicforge_actor_restarts_total`.
    pub(crate) fn count_restart(&self, actor: &'static str, reason: ExitReason) {
        if reason != ExitReason::Panicked {
            tracing::warn!(station = %self.id(), actor, reason = reason.label(), "actor restarting");
        }
        self.global_metrics
            .actor_restarts
            .with_label_values(&[self.id(), actor, reason.label()])
            .inc();
        self.emit(EventKind::ActorRestarted {
            actor: actor.to_string(),
            reason: reason.label().to_string(),
        });
    }

    /// An actor died (and was restarted in place or by actix): count it and tell the
    /// station's supervisor, which applies restart intensity and escalation.
    pub(crate) fn child_exited(&self, actor: &'static str, reason: ExitReason) {
        self.count_restart(actor, reason);
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(supervisor) = supervisor {
            supervisor.do_send(ChildExited {
                child: actor,
                reason,
            });
        }
    }

    /// Called from an actor's `Supervised::restarting`: an exit, unless a subtree
    /// restart stopped the actor on purpose.
    pub(crate) fn child_restarting(&self, actor: &'static str) {
        let planned = {
            let mut planned = self
                .planned_restarts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let index = planned.iter().position(|name| *name == actor);
            index.map(|index| planned.swap_remove(index)).is_some()
        };
        if !planned {
            self.child_exited(actor, ExitReason::Stopped);
        }
    }

    /// Records that `actor` stopped; [`Station::actor_running`] measures the restart.
    /// The earliest record wins: a chaos kill records the kill itself, before the
    /// actor's `stopped` does, so the latency runs from kill to running again.
    pub(crate) fn actor_stopped(&self, actor: &'static str) {
        let mut stopped = self
            .stopped_actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !stopped.iter().any(|(name, _)| *name == actor) {
            stopped.push((actor, Instant::now()));
        }
    }

    /// Called when `actor` (re)starts: observes how long it was down, if it was.
    pub(crate) fn actor_running(&self, actor: &'static str) {
        let stopped_at = {
            let mut stopped = self
                .stopped_actors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let index = stopped.iter().position(|(name, _)| *name == actor);
            index.map(|index| stopped.swap_remove(index).1)
        };
        if let Some(stopped_at) = stopped_at {
            self.observe_restart(actor, stopped_at.elapsed());
        }
    }

    fn observe_restart(&self, actor: &'static str, down: Duration) {
        self.global_metrics
            .actor_restart_seconds
            .with_label_values(&[self.id(), actor])
            .observe(down.as_secs_f64());
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The station's id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The feed of the rendition at `kbps`, or the highest one when `kbps` is `None`.
    pub fn feed(&self, kbps: Option<u32>) -> Option<&RenditionFeed> {
        match kbps {
            Some(kbps) => self.feeds.iter().find(|f| f.bitrate_kbps == kbps),
            None => self.feeds.iter().max_by_key(|f| f.bitrate_kbps),
        }
    }

    /// The clock mapping, once the mixer has started.
    pub fn clock(&self) -> Option<ClockAnchor> {
        *self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_clock(&self, anchor: ClockAnchor) {
        *self.clock.lock().unwrap_or_else(PoisonError::into_inner) = Some(anchor);
    }

    pub(crate) fn mark_packet_published(&self) {
        let ms = self.process_start.elapsed().as_millis() as u64;
        self.last_packet_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Whether audio reached the listeners' rings within the last second.
    pub fn is_audio_flowing(&self) -> bool {
        let last = self.last_packet_ms.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = self.process_start.elapsed().as_millis() as u64;
        now.saturating_sub(last) < 1000
    }

    /// What is on air now, if a track (not the fallback loop) is playing.
    pub fn now_playing(&self) -> Option<NowPlaying> {
        self.board.now_playing()
    }

    /// Listeners connected now, over all transports and renditions.
    pub fn listener_count(&self) -> i64 {
        let metrics = &self.global_metrics;
        let mut total = 0;
        for feed in &self.feeds {
            for transport in [
                crate::metrics::TRANSPORT_WEBSOCKET,
                crate::metrics::TRANSPORT_HTTP,
            ] {
                total += metrics
                    .listeners
                    .with_label_values(&[self.id(), transport, &feed.bitrate_kbps.to_string()])
                    .get();
            }
        }
        total
    }

    /// Waits until the station's listeners have left, at most `within`; the number
    /// still connected then.
    pub async fn listeners_left(&self, within: Duration) -> i64 {
        let started = std::time::Instant::now();
        while self.listener_count() > 0 && started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.listener_count()
    }
}

/// Runs one step of a station actor (a tick, a message). A panic inside it is caught:
/// logged with its message, counted in `sonicforge_actor_restarts_total` with reason
/// `panic` and reported to the station's supervisor, and the actor goes on from the
/// state kept outside it, instead of dying silently with a closed mailbox (what actix
/// does with a panicking handler).
pub(crate) fn run_guarded<R>(
    station: &Station,
    actor: &'static str,
    step: impl FnOnce() -> R,
) -> Option<R> {
    match crate::supervise::tree::catch_panic(step) {
        Ok(result) => Some(result),
        Err(message) => {
            let caught = Instant::now();
            tracing::error!(station = %station.id(), actor, panic = %message, "actor panicked; restarted in place");
            station.child_exited(actor, ExitReason::Panicked);
            // Restarted in place: down only while the panic is reported.
            station.observe_restart(actor, caught.elapsed());
            None
        }
    }
}

/// Where a station's settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StationOrigin {
    /// The config file: it comes back at every start.
    ConfigFile,
    /// Added through the API and kept in the data directory.
    Api,
}

/// A station of the process: its settings, and the running station unless it is
/// stopped.
#[derive(Debug, Clone)]
pub struct StationEntry {
    pub config: StationConfig,
    pub origin: StationOrigin,
    pub running: Option<Arc<Station>>,
}

/// All stations of the process by id, running or stopped, and the playlists they
/// play from. Stations come and go while the engine runs (the station API); readers
/// take a short read lock and get `Arc`s they keep as long as they need.
#[derive(Debug)]
pub struct Stations {
    entries: RwLock<BTreeMap<String, StationEntry>>,
    playlists: Arc<PlaylistStore>,
    media: OnceLock<Arc<MediaLibrary>>,
}

impl Default for Stations {
    fn default() -> Self {
        Self::new(Arc::new(PlaylistStore::in_memory(&[])))
    }
}

impl Stations {
    pub fn new(playlists: Arc<PlaylistStore>) -> Self {
        Self {
            entries: RwLock::new(BTreeMap::new()),
            playlists,
            media: OnceLock::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, StationEntry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, StationEntry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every playlist of the process.
    pub fn playlists(&self) -> &Arc<PlaylistStore> {
        &self.playlists
    }

    /// Lets every station, running now or started later, play files of `library`
    /// (set once; later calls change nothing).
    pub fn use_media_library(&self, library: &Arc<MediaLibrary>) {
        let _ = self.media.set(Arc::clone(library));
        for station in self.running() {
            let _ = station.media.set(Arc::clone(library));
        }
    }

    /// Adds or replaces the entry of a running station.
    pub fn insert(&self, station: Arc<Station>, origin: StationOrigin) {
        if let Some(library) = self.media.get() {
            let _ = station.media.set(Arc::clone(library));
        }
        self.write().insert(
            station.id().to_string(),
            StationEntry {
                config: station.config.clone(),
                origin,
                running: Some(station),
            },
        );
    }

    /// Adds or replaces the entry of a station that is not running.
    pub fn insert_stopped(&self, config: StationConfig, origin: StationOrigin) {
        self.write().insert(
            config.id.clone(),
            StationEntry {
                config,
                origin,
                running: None,
            },
        );
    }

    /// Marks station `id` as stopped and returns the station that ran, if it ran.
    pub fn mark_stopped(&self, id: &str) -> Option<Arc<Station>> {
        self.write()
            .get_mut(id)
            .and_then(|entry| entry.running.take())
    }

    /// Removes station `id` and returns its entry.
    pub fn remove(&self, id: &str) -> Option<StationEntry> {
        self.write().remove(id)
    }

    /// The running station `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Station>> {
        self.read().get(id).and_then(|entry| entry.running.clone())
    }

    /// The entry of station `id`, running or stopped.
    pub fn entry(&self, id: &str) -> Option<StationEntry> {
        self.read().get(id).cloned()
    }

    /// How many stations there are, running or stopped.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there is no station at all.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every station, running or stopped, by id.
    pub fn entries(&self) -> Vec<StationEntry> {
        self.read().values().cloned().collect()
    }

    /// The running stations now, by id.
    pub fn running(&self) -> Vec<Arc<Station>> {
        self.read()
            .values()
            .filter_map(|entry| entry.running.clone())
            .collect()
    }

    pub fn stop_all(&self) {
        for station in self.running() {
            station.stop();
        }
    }
}

/// The playlist a station starts on, claimed for it in the store: the one it played
/// before it was stopped, else the configured `playlist_name`, else the station's
/// built-in playlist. A missing one is logged and the built-in one plays.
fn starting_playlist(config: &StationConfig, playlists: &PlaylistStore) -> Arc<Playlist> {
    // A station started again through the API goes on with the playlist it played.
    if let Some(playing) = playlists.playing(&config.id)
        && let Ok(playlist) = playlists.claim(&config.id, &playing)
    {
        return playlist;
    }
    if let Some(name) = &config.playlist_name {
        match playlists.claim(&config.id, name) {
            Ok(playlist) => return playlist,
            Err(error) => {
                tracing::error!(station = %config.id, %error, "the configured playlist is missing; the station's own prompts play");
            }
        }
    }
    playlists.claim(&config.id, &config.id).unwrap_or_else(|_| {
        let playlist = Arc::new(Playlist::of_station(config));
        tracing::error!(station = %config.id, "no built-in playlist in the store; the configured prompts play");
        playlist
    })
}

/// The dead-air loop: the same for every station, so rendered once per process.
fn fallback_loop() -> Result<Arc<[f32]>, sonicforge_engine::generate::GenerateError> {
    static RENDERED: OnceLock<Arc<[f32]>> = OnceLock::new();
    if let Some(rendered) = RENDERED.get() {
        return Ok(Arc::clone(rendered));
    }
    let rendered = render_fallback_loop()?;
    Ok(Arc::clone(RENDERED.get_or_init(|| rendered)))
}

/// Renders the dead-air loop and blends its end into its start so it loops without a seam.
fn render_fallback_loop() -> Result<Arc<[f32]>, sonicforge_engine::generate::GenerateError> {
    let track = ProceduralGenerator::default().render(&TrackRequest {
        prompt: FALLBACK_PROMPT.to_string(),
        seed: 0x5eed_fa11_bac0,
        length: Some(Duration::from_secs(FALLBACK_SECONDS)),
    })?;
    Ok(seamless_loop(
        &track.samples,
        FALLBACK_LOOP_FADE_SECONDS as usize * SAMPLE_RATE as usize,
    ))
}

/// Returns `samples` shortened by `fade` frames, its tail crossfaded (equal power)
/// over its head, so that playing it in a loop has no seam.
fn seamless_loop(samples: &[f32], fade: usize) -> Arc<[f32]> {
    let frames = samples.len() / CHANNELS;
    let fade = fade.min(frames / 2);
    let length = frames - fade;
    let mut looped = samples[..length * CHANNELS].to_vec();
    for i in 0..fade {
        let t = i as f32 / fade as f32;
        let gain_in = (t * std::f32::consts::FRAC_PI_2).sin();
        let gain_out = (t * std::f32::consts::FRAC_PI_2).cos();
        for channel in 0..CHANNELS {
            let head = i * CHANNELS + channel;
            let tail = (length + i) * CHANNELS + channel;
            looped[head] = samples[head] * gain_in + samples[tail] * gain_out;
        }
    }
    looped.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seamless_loop_joins_its_end_to_its_start() {
        let frames = 1000;
        let samples: Vec<f32> = (0..frames * CHANNELS)
            .map(|i| (i / CHANNELS) as f32)
            .collect();
        let looped = seamless_loop(&samples, 100);
        assert_eq!(looped.len(), 900 * CHANNELS);
        // The first sample of the loop continues right after its last sample.
        assert_eq!(looped[0], samples[900 * CHANNELS]);
        assert_eq!(looped[looped.len() - 1], samples[899 * CHANNELS + 1]);
    }

    #[test]
    fn a_panicking_step_is_caught_and_counted_as_a_restart() {
        let config = crate::config::Config::load(None).unwrap();
        let metrics = Metrics::new();
        let station = Station::start_without_actors(
            config.stations[0].clone(),
            config.listeners,
            config.supervision,
            crate::mastering::MasteringSettings {
                backend: crate::mastering::KernelBackend::Cpu,
                options: crate::mastering::options(&config.mastering),
            },
            EventStorage::sqlite(
                std::env::temp_dir().join("sonicforge-station-test-events.db"),
                std::env::temp_dir().join("sonicforge-station-test-spool"),
                1 << 20,
            ),
            &metrics,
            Arc::new(PlaylistStore::in_memory(&config.stations)),
        )
        .unwrap();
        let survived = run_guarded(&station, "mixer", || -> u32 { panic!("frame bug") });
        assert!(survived.is_none());
        assert_eq!(run_guarded(&station, "mixer", || 7), Some(7));
        let restarts = metrics
            .actor_restarts
            .with_label_values(&["main", "mixer", "panic"])
            .get();
        assert_eq!(restarts, 1);
    }

    #[test]
    fn clock_anchor_maps_samples_to_wall_time() {
        let anchor = ClockAnchor {
            pts: 48_000,
            unix_ms: 10_000,
            instant: Instant::now(),
        };
        assert_eq!(anchor.unix_ms_at(96_000), 11_000.0);
        assert_eq!(anchor.unix_ms_at(0), 9_000.0);
    }
}
