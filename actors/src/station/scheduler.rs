//! The scheduler actor: keeps the upcoming-track queue full from the station's
//! playlist (with operator requests and jingles in between), keeps the first track
//! of the playlists a swap is likely to go to rendered ahead, carries out swaps and
//! skips, and frees finished tracks off the real-time path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};
use serde::Serialize;
use sonicforge_engine::events::{EndReason, EventId, EventKind, PlayEvent, TrackSource};
use sonicforge_engine::frame::SAMPLE_RATE;
use sonicforge_engine::generate::TrackRequest;
use sonicforge_engine::mix::{MixerControl, QueuedTrack, RetiredConsumer, UpcomingProducer};

use super::generator::{MasteredTrack, Render, RenderSource};
use super::{Station, TrackInfo};
use crate::playlists::{ItemSource, Playlist, PlaylistItem, Rotation};

const TICK: Duration = Duration::from_millis(100);
/// How soon a track that found the queue full is offered again.
const PUSH_RETRY: Duration = Duration::from_millis(5);
/// A render that has not answered by then is given up (the supervisor replaces a
/// stalled generator long before).
const RENDER_TIMEOUT: Duration = Duration::from_secs(120);
/// Most operator requests waiting to be rendered.
pub const MAX_REQUESTS: usize = 32;
/// End reasons remembered for tracks cut short and not yet announced as ended.
const MAX_CUT_REASONS: usize = 8;

/// What a station plays from: a playlist and where it is in its rotation.
#[derive(Debug)]
struct Programme {
    playlist: Arc<Playlist>,
    rotation: Rotation,
    /// Bumped by every swap; renders for an older programme are dropped.
    generation: u64,
}

/// A playlist's next track, rendered and mastered ahead, so that a swap to it needs
/// no render.
#[derive(Debug)]
struct ReadyFirst {
    revision: u64,
    /// The rotation after picking this track.
    rotation: Rotation,
    item: PlaylistItem,
    track: MasteredTrack,
}

/// Why a track is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Rotation,
    Request,
    Jingle,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Self::Rotation => "rotation",
            Self::Request => "request",
            Self::Jingle => "jingle",
        }
    }
}

/// Scheduler state that outlives the actor.
#[derive(Debug)]
pub(crate) struct SchedulerParts {
    upcoming: UpcomingProducer,
    /// Rendered requests: the mixer plays them before the upcoming queue's next track.
    request_queue: UpcomingProducer,
    retired: RetiredConsumer,
    control: Arc<MixerControl>,
    station_seed: u64,
    /// Plays scheduled so far; picks the seeds.
    plays: u64,
    next_epoch: u32,
    /// The epoch whose play events were emitted last, and the play on air.
    announced_epoch: u32,
    announced: Option<OnAir>,
    programme: Programme,
    requests: VecDeque<PlaylistItem>,
    /// When the next jingle is due; `None` without jingles.
    jingles: Option<JingleClock>,
    ready: BTreeMap<String, ReadyFirst>,
    /// Tracks with an epoch that found the queue full, oldest first.
    pending: VecDeque<QueuedTrack>,
    /// Why tracks were cut short, by epoch, until their end is announced.
    cut_reasons: VecDeque<(u32, EndReason)>,
}

/// The play on air, as its `track_started` event announced it.
#[derive(Debug)]
struct OnAir {
    track: Arc<TrackInfo>,
    /// Sample timestamp at which it went on air.
    started_pts: u64,
    /// The id of its `track_started` event.
    play_id: EventId,
    /// The station's listener-milliseconds when it started.
    listener_ms_at_start: u64,
}

impl SchedulerParts {
    pub(crate) fn new(
        upcoming: UpcomingProducer,
        request_queue: UpcomingProducer,
        retired: RetiredConsumer,
        control: Arc<MixerControl>,
        station_seed: u64,
        playlist: Arc<Playlist>,
        jingle_every: Option<Duration>,
    ) -> Self {
        Self {
            upcoming,
            request_queue,
            retired,
            control,
            station_seed,
            plays: 0,
            next_epoch: 1,
            announced_epoch: sonicforge_engine::mix::FALLBACK_EPOCH,
            announced: None,
            programme: Programme {
                rotation: Rotation::new(playlist.rotation, track_seed(station_seed, u64::MAX)),
                playlist,
                generation: 0,
            },
            requests: VecDeque::new(),
            jingles: jingle_every.map(|every| JingleClock::new(every, Instant::now())),
            ready: BTreeMap::new(),
            pending: VecDeque::new(),
            cut_reasons: VecDeque::new(),
        }
    }

    /// Tracks in the mixer's queue (stale ones included until the mixer drops them)
    /// and waiting to enter it.
    fn queued(&self) -> usize {
        self.upcoming.buffer().capacity() - self.upcoming.slots() + self.pending.len()
    }

    fn remember_cut(&mut self, epoch: u32, reason: EndReason) {
        if self.cut_reasons.len() == MAX_CUT_REASONS {
            self.cut_reasons.pop_front();
        }
        self.cut_reasons.push_back((epoch, reason));
    }

    fn cut_reason(&mut self, epoch: u32) -> EndReason {
        match self.cut_reasons.iter().position(|(e, _)| *e == epoch) {
            Some(index) => self
                .cut_reasons
                .remove(index)
                .map_or(EndReason::Finished, |(_, reason)| reason),
            None => EndReason::Finished,
        }
    }
}

/// When jingles are due: every `every`, counted from when the last one was scheduled
/// (a jingle goes between tracks, so it is never due twice in a row).
#[derive(Debug, Clone, Copy)]
struct JingleClock {
    every: Duration,
    due: Instant,
}

impl JingleClock {
    fn new(every: Duration, now: Instant) -> Self {
        Self {
            every,
            due: now + every,
        }
    }

    /// Whether a jingle is due at `now`; if so, the next one is due `every` later.
    fn take_if_due(&mut self, now: Instant) -> bool {
        if now < self.due {
            return false;
        }
        self.due = now + self.every;
        true
    }
}

/// What the scheduler renders next and for what.
#[derive(Debug)]
enum Job {
    /// For air, from the programme of `generation` (rotation items) or at any time.
    Air {
        item: PlaylistItem,
        origin: Origin,
        playlist: String,
        generation: u64,
    },
    /// The first track of a playlist a swap may go to.
    Ready {
        playlist: String,
        revision: u64,
        rotation: Rotation,
        item: PlaylistItem,
    },
}

/// When a swap takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwapWhen {
    /// Crossfade into the new playlist's first track now.
    Now,
    /// After the track on air.
    Next,
}

/// Swaps the station to another playlist.
#[derive(Debug)]
pub struct SwapPlaylist {
    pub playlist: Arc<Playlist>,
    pub when: SwapWhen,
}

/// What a swap did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SwapOutcome {
    pub from: String,
    pub to: String,
    pub when: SwapWhen,
    /// The new playlist's first track was ready: no render stands between the
    /// request and the change (`false`: it follows as soon as it is rendered, while
    /// the old music plays on).
    pub first_track_ready: bool,
}

impl Message for SwapPlaylist {
    type Result = Option<SwapOutcome>;
}

/// Crossfades into the next track now.
#[derive(Debug)]
pub struct SkipTrack;

/// What a skip did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkipOutcome {
    /// The track cut short, when one was on air.
    pub skipped: Option<String>,
    /// A next track was ready (`false`: the skip happens once one is rendered).
    pub next_track_ready: bool,
}

impl Message for SkipTrack {
    type Result = Option<SkipOutcome>;
}

/// Plays an operator's request after the track on air, before the rotation's next
/// item (requests play in the order they came).
#[derive(Debug)]
pub struct QueueRequest(pub PlaylistItem);

/// Where a request went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueOutcome {
    /// Requests waiting before it (0: it is rendered next).
    pub position: usize,
}

impl Message for QueueRequest {
    type Result = Option<Result<QueueOutcome, QueueFull>>;
}

/// The request queue holds [`MAX_REQUESTS`] already.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request queue is full ({MAX_REQUESTS} requests wait)")]
pub struct QueueFull;

/// Keeps at least `upcoming_tracks` tracks rendered ahead of the mixer.
#[derive(Debug)]
pub struct SchedulerActor {
    station: Arc<Station>,
    parts: Option<SchedulerParts>,
    render_in_flight: bool,
    /// A retry of the tracks waiting for room in the queue is scheduled.
    push_retry_scheduled: bool,
}

impl SchedulerActor {
    /// The station this actor belongs to.
    pub(crate) fn station(&self) -> &Station {
        &self.station
    }

    pub fn new(station: Arc<Station>) -> Self {
        Self {
            station,
            parts: None,
            render_in_flight: false,
            push_retry_scheduled: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        // Finished tracks are freed here, never on the mixer's thread.
        while parts.retired.pop().is_ok() {}
        announce_track_changes(&self.station, parts);
        self.flush_pending(ctx);
        let Some(parts) = &mut self.parts else {
            return;
        };
        let queued = parts.queued();
        self.station.metrics.upcoming_tracks.set(queued as i64);
        if self.render_in_flight || self.station.is_degraded() {
            return;
        }
        let job = if !parts.requests.is_empty() && parts.request_queue.slots() > 0 {
            next_request_job(&self.station, parts)
        } else if queued < self.station.config.upcoming_tracks {
            next_air_job(&self.station, parts)
        } else {
            next_ready_job(&self.station, parts)
        };
        if let Some(job) = job {
            self.render(job, ctx);
        }
    }

    /// Offers tracks that found the queue full again, soon if some are left.
    fn flush_pending(&mut self, ctx: &mut Context<Self>) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        while let Some(track) = parts.pending.pop_front() {
            if let Err(rtrb::PushError::Full(track)) = parts.upcoming.push(track) {
                parts.pending.push_front(track);
                if !self.push_retry_scheduled {
                    self.push_retry_scheduled = true;
                    ctx.run_later(PUSH_RETRY, |actor, ctx| {
                        actor.push_retry_scheduled = false;
                        actor.flush_pending(ctx);
                    });
                }
                return;
            }
        }
    }

    fn render(&mut self, job: Job, ctx: &mut Context<Self>) {
        let Some(generator) = self.station.generator() else {
            return;
        };
        let Some(parts) = &mut self.parts else {
            return;
        };
        let item = match &job {
            Job::Air { item, .. } | Job::Ready { item, .. } => item,
        };
        let source = render_source(&self.station, parts, item);
        self.render_in_flight = true;
        let render = generator.send(Render(source)).timeout(RENDER_TIMEOUT);
        ctx.spawn(render.into_actor(self).map(move |result, actor, ctx| {
            actor.render_in_flight = false;
            let mastered = match result {
                Ok(Ok(mastered)) => mastered,
                // Logged and counted by the generator; the next item is tried.
                Ok(Err(_)) => return,
                Err(error) => {
                    tracing::warn!(station = %actor.station.id(), %error, "generator unreachable");
                    return;
                }
            };
            actor.rendered(job, mastered, ctx);
        }));
    }

    fn rendered(&mut self, job: Job, mastered: MasteredTrack, ctx: &mut Context<Self>) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        match job {
            Job::Air {
                item,
                origin,
                playlist,
                generation,
            } => {
                if origin == Origin::Rotation && generation != parts.programme.generation {
                    tracing::debug!(station = %self.station.id(), %playlist, "track of a playlist swapped away dropped");
                    return;
                }
                let playlist = (origin == Origin::Rotation).then_some(playlist);
                queue_for_air(&self.station, parts, mastered, &item, origin, playlist);
            }
            Job::Ready {
                playlist,
                revision,
                rotation,
                item,
            } => {
                parts.ready.insert(
                    playlist,
                    ReadyFirst {
                        revision,
                        rotation,
                        item,
                        track: mastered,
                    },
                );
            }
        }
        self.flush_pending(ctx);
        self.tick(ctx);
    }
}

/// The oldest operator request, to render and play after the track on air.
fn next_request_job(station: &Station, parts: &mut SchedulerParts) -> Option<Job> {
    let item = parts.requests.pop_front()?;
    station.note_requests(parts.requests.len());
    Some(Job::Air {
        item,
        origin: Origin::Request,
        playlist: String::new(),
        generation: parts.programme.generation,
    })
}

/// The next item to render for the upcoming queue: a due jingle, or the rotation's next.
fn next_air_job(station: &Station, parts: &mut SchedulerParts) -> Option<Job> {
    if let (Some(jingles), Some(jingle)) = (&mut parts.jingles, &station.config.jingle)
        && jingles.take_if_due(Instant::now())
    {
        return Some(Job::Air {
            item: jingle.clone(),
            origin: Origin::Jingle,
            playlist: String::new(),
            generation: parts.programme.generation,
        });
    }
    // A changed playlist is picked up at its next item.
    let programme = &mut parts.programme;
    if let Some(latest) = station.playlists.get(&programme.playlist.name)
        && latest.revision != programme.playlist.revision
    {
        programme.playlist = latest;
    }
    let index = programme.rotation.next(&programme.playlist)?;
    Some(Job::Air {
        item: programme.playlist.items[index].clone(),
        origin: Origin::Rotation,
        playlist: programme.playlist.name.clone(),
        generation: programme.generation,
    })
}

/// The first track of a playlist a swap may go to, when one is missing.
fn next_ready_job(station: &Station, parts: &mut SchedulerParts) -> Option<Job> {
    let count = station.config.swap_ready_playlists;
    let candidates = station
        .playlists
        .most_recent(&parts.programme.playlist.name, count);
    parts.ready.retain(|name, ready| {
        candidates
            .iter()
            .any(|p| &p.name == name && p.revision == ready.revision)
    });
    let playlist = candidates
        .into_iter()
        .find(|p| !parts.ready.contains_key(&p.name))?;
    let mut rotation = Rotation::new(
        playlist.rotation,
        track_seed(parts.station_seed, parts.plays ^ 0x5eed),
    );
    let index = rotation.next(&playlist)?;
    Some(Job::Ready {
        playlist: playlist.name.clone(),
        revision: playlist.revision,
        rotation,
        item: playlist.items[index].clone(),
    })
}

/// What the generator renders for `item`.
fn render_source(
    station: &Station,
    parts: &mut SchedulerParts,
    item: &PlaylistItem,
) -> RenderSource {
    let play = parts.plays;
    parts.plays += 1;
    match item.source() {
        ItemSource::Prompt {
            prompt,
            seconds,
            seed,
        } => RenderSource::Prompt(TrackRequest {
            prompt: prompt.to_string(),
            seed: seed.unwrap_or_else(|| track_seed(parts.station_seed, play)),
            length: seconds
                .or(station.config.track_seconds)
                .map(Duration::from_secs_f32),
        }),
        ItemSource::File { media_id } => RenderSource::File {
            media_id: media_id.to_string(),
        },
    }
}

/// Gives a mastered track the next epoch, posts it on the board and queues it for
/// the mixer (or keeps it until the queue has room).
fn queue_for_air(
    station: &Station,
    parts: &mut SchedulerParts,
    mastered: MasteredTrack,
    item: &PlaylistItem,
    origin: Origin,
    playlist: Option<String>,
) -> u32 {
    let epoch = parts.next_epoch;
    parts.next_epoch = parts.next_epoch.wrapping_add(1).max(1);
    let info = TrackInfo {
        playlist,
        scheduled_as: origin.label(),
        ..mastered.info
    };
    station.board.post(epoch, info);
    let track = QueuedTrack {
        epoch,
        samples: mastered.samples,
        crossfade_samples: item
            .crossfade_ms
            .map(|ms| (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as u32),
    };
    let track = if origin == Origin::Request {
        match parts.request_queue.push(track) {
            Ok(()) => return epoch,
            // Full of tracks a swap just dropped: it waits in the upcoming queue instead.
            Err(rtrb::PushError::Full(track)) => track,
        }
    } else {
        track
    };
    if parts.pending.is_empty() {
        if let Err(rtrb::PushError::Full(track)) = parts.upcoming.push(track) {
            parts.pending.push_back(track);
        }
    } else {
        parts.pending.push_back(track);
    }
    epoch
}

impl Handler<SwapPlaylist> for SchedulerActor {
    type Result = Option<SwapOutcome>;

    fn handle(&mut self, swap: SwapPlaylist, ctx: &mut Context<Self>) -> Self::Result {
        let station = Arc::clone(&self.station);
        let parts = self.parts.as_mut()?;
        let to = swap.playlist.name.clone();
        let from = parts.programme.playlist.name.clone();
        station.emit(EventKind::PlaylistSwapped {
            from: from.clone(),
            to: to.clone(),
        });
        let ready = parts
            .ready
            .remove(&to)
            .filter(|ready| ready.revision == swap.playlist.revision);
        let generation = parts.programme.generation + 1;
        let rotation = match &ready {
            Some(ready) => ready.rotation.clone(),
            None => Rotation::new(
                swap.playlist.rotation,
                track_seed(parts.station_seed, u64::MAX - generation),
            ),
        };
        parts.programme = Programme {
            playlist: Arc::clone(&swap.playlist),
            rotation,
            generation,
        };
        // Every track queued so far is dropped: the old playlist's, and requests or
        // jingles already rendered (requests still waiting stay queued).
        let first_epoch = parts.next_epoch;
        parts.control.drop_queued_before(first_epoch);
        parts.pending.clear();
        station.board.forget_queued_before(first_epoch);
        if swap.when == SwapWhen::Now {
            let on_air = station.board.on_air_epoch();
            parts.remember_cut(on_air, EndReason::Swapped);
            parts.control.cut();
        }
        let first_track_ready = ready.is_some();
        if let Some(ready) = ready {
            queue_for_air(
                &station,
                parts,
                ready.track,
                &ready.item,
                Origin::Rotation,
                Some(to.clone()),
            );
        }
        tracing::info!(station = %station.id(), %from, %to, when = ?swap.when, first_track_ready, "playlist swapped");
        self.flush_pending(ctx);
        self.tick(ctx);
        Some(SwapOutcome {
            from,
            to,
            when: swap.when,
            first_track_ready,
        })
    }
}

impl Handler<SkipTrack> for SchedulerActor {
    type Result = Option<SkipOutcome>;

    fn handle(&mut self, _skip: SkipTrack, ctx: &mut Context<Self>) -> Self::Result {
        let station = Arc::clone(&self.station);
        let parts = self.parts.as_mut()?;
        let on_air = station.board.on_air_epoch();
        let skipped = station.board.get(on_air).map(|t| t.track_id.clone());
        if let Some(track_id) = &skipped {
            station.emit(EventKind::Skip {
                track_id: track_id.clone(),
            });
            parts.remember_cut(on_air, EndReason::Skipped);
        }
        let next_track_ready = parts.queued() > 0;
        parts.control.cut();
        self.tick(ctx);
        Some(SkipOutcome {
            skipped,
            next_track_ready,
        })
    }
}

impl Handler<QueueRequest> for SchedulerActor {
    type Result = Option<Result<QueueOutcome, QueueFull>>;

    fn handle(
        &mut self,
        QueueRequest(item): QueueRequest,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let parts = self.parts.as_mut()?;
        if parts.requests.len() >= MAX_REQUESTS {
            return Some(Err(QueueFull));
        }
        let position = parts.requests.len();
        parts.requests.push_back(item);
        self.station.note_requests(parts.requests.len());
        self.tick(ctx);
        Some(Ok(QueueOutcome { position }))
    }
}

/// Emits `track_ended` and `track_started` play events when the mixer put another
/// epoch on air since the last tick.
fn announce_track_changes(station: &Station, parts: &mut SchedulerParts) {
    let epoch = station.board.on_air_epoch();
    if epoch == parts.announced_epoch {
        return;
    }
    let since_pts = station.board.on_air_since_pts();
    let listener_ms = station.listener_clock.listener_ms();
    if let Some(on_air) = parts.announced.take() {
        let reason = parts.cut_reason(parts.announced_epoch);
        station.emit(EventKind::TrackEnded {
            track_id: on_air.track.track_id.clone(),
            played_ms: since_pts.saturating_sub(on_air.started_pts) * 1000 / u64::from(SAMPLE_RATE),
            reason,
            play_id: Some(on_air.play_id),
            listener_ms: listener_ms.saturating_sub(on_air.listener_ms_at_start),
        });
    }
    parts.announced_epoch = epoch;
    if let Some(track) = station.board.get(epoch) {
        let started = PlayEvent::new(
            station.id(),
            EventKind::TrackStarted {
                track_id: track.track_id.clone(),
                title: track.title.clone(),
                source: match &track.file {
                    Some(media_id) => TrackSource::File(media_id.clone()),
                    None => TrackSource::Prompt(track.prompt.clone()),
                },
                generator: track.generator.clone(),
                duration_ms: track.duration_ms,
                mastering: track.mastering.clone(),
            },
        );
        let play_id = started.id;
        station.events.emit(started);
        parts.announced = Some(OnAir {
            track,
            started_pts: since_pts,
            play_id,
            listener_ms_at_start: listener_ms,
        });
    }
}

/// The seed of the `play`-th track of a station: SplitMix64 of both.
fn track_seed(station_seed: u64, play: u64) -> u64 {
    let mut z = station_seed ^ play.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.station.actor_running("scheduler");
        if self.parts.is_none() {
            self.parts = self.station.scheduler_parts.take();
        }
        self.render_in_flight = false;
        self.push_retry_scheduled = false;
        self.tick(ctx);
        ctx.run_interval(TICK, Self::tick);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("scheduler");
        if let Some(parts) = self.parts.take() {
            self.station.scheduler_parts.put(parts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jingle_is_due_every_interval_counted_from_the_last_one() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut clock = JingleClock::new(minute, start);
        assert!(!clock.take_if_due(start));
        assert!(!clock.take_if_due(start + Duration::from_secs(59)));
        // Late (a long track was on air): due now, then a whole interval later.
        assert!(clock.take_if_due(start + Duration::from_secs(90)));
        assert!(!clock.take_if_due(start + Duration::from_secs(91)));
        assert!(!clock.take_if_due(start + Duration::from_secs(149)));
        assert!(clock.take_if_due(start + Duration::from_secs(150)));
    }

    #[test]
    fn end_reasons_of_cut_tracks_are_kept_until_announced() {
        let (upcoming, _) = sonicforge_engine::mix::upcoming_queue(2);
        let (requests, _) = sonicforge_engine::mix::upcoming_queue(2);
        let (_, retired) = sonicforge_engine::mix::retired_queue(4);
        let playlist = Arc::new(Playlist::of_station(
            &crate::config::Config::load(None).unwrap().stations[0],
        ));
        let mut parts = SchedulerParts::new(
            upcoming,
            requests,
            retired,
            Arc::new(MixerControl::default()),
            1,
            playlist,
            None,
        );
        parts.remember_cut(3, EndReason::Skipped);
        parts.remember_cut(4, EndReason::Swapped);
        assert_eq!(parts.cut_reason(4), EndReason::Swapped);
        assert_eq!(parts.cut_reason(4), EndReason::Finished, "announced once");
        assert_eq!(parts.cut_reason(3), EndReason::Skipped);
        assert_eq!(parts.cut_reason(9), EndReason::Finished);
    }

    #[test]
    fn track_seeds_differ_per_play_and_repeat_per_station() {
        assert_ne!(track_seed(1, 0), track_seed(1, 1));
        assert_ne!(track_seed(1, 0), track_seed(2, 0));
        assert_eq!(track_seed(7, 3), track_seed(7, 3));
    }
}
