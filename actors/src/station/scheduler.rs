//! The scheduler actor: keeps the upcoming-track queue full from the station's
//! playlist, and frees finished tracks off the real-time path.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use sonicforge_engine::events::{EndReason, EventId, EventKind, PlayEvent, TrackSource};
use sonicforge_engine::frame::SAMPLE_RATE;
use sonicforge_engine::generate::TrackRequest;
use sonicforge_engine::mix::{QueuedTrack, RetiredConsumer, UpcomingProducer};

use super::generator::Render;
use super::{Station, TrackInfo};

const TICK: Duration = Duration::from_millis(100);
/// A render that has not answered by then is given up (the supervisor replaces a
/// stalled generator long before).
const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Scheduler state that outlives the actor.
#[derive(Debug)]
pub(crate) struct SchedulerParts {
    upcoming: UpcomingProducer,
    retired: RetiredConsumer,
    station_seed: u64,
    /// Plays scheduled so far; picks the playlist item and the seed.
    plays: u64,
    next_epoch: u32,
    /// The epoch whose play events were emitted last, and the play on air.
    announced_epoch: u32,
    announced: Option<OnAir>,
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
        retired: RetiredConsumer,
        station_seed: u64,
    ) -> Self {
        Self {
            upcoming,
            retired,
            station_seed,
            plays: 0,
            next_epoch: 1,
            announced_epoch: sonicforge_engine::mix::FALLBACK_EPOCH,
            announced: None,
        }
    }

    fn queued(&self) -> usize {
        self.upcoming.buffer().capacity() - self.upcoming.slots()
    }
}

/// Keeps at least `upcoming_tracks` tracks rendered ahead of the mixer.
#[derive(Debug)]
pub struct SchedulerActor {
    station: Arc<Station>,
    parts: Option<SchedulerParts>,
    render_in_flight: bool,
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
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        // Finished tracks are freed here, never on the mixer's thread.
        while parts.retired.pop().is_ok() {}
        announce_track_changes(&self.station, parts);
        let queued = parts.queued();
        self.station.metrics.upcoming_tracks.set(queued as i64);
        if self.render_in_flight
            || queued >= self.station.config.upcoming_tracks
            || self.station.is_degraded()
        {
            return;
        }
        let Some(generator) = self.station.generator() else {
            return;
        };
        let playlist = &self.station.config.playlist;
        let prompt = playlist[(parts.plays % playlist.len() as u64) as usize].clone();
        let request = TrackRequest {
            prompt,
            seed: track_seed(parts.station_seed, parts.plays),
            length: self
                .station
                .config
                .track_seconds
                .map(Duration::from_secs_f32),
        };
        parts.plays += 1;
        self.render_in_flight = true;
        let render = generator.send(Render(request)).timeout(RENDER_TIMEOUT);
        ctx.spawn(render.into_actor(self).map(|result, actor, _ctx| {
            actor.render_in_flight = false;
            let mastered = match result {
                Ok(Ok(mastered)) => mastered,
                Ok(Err(_)) => return, // logged and counted by the generator; the next prompt is tried
                Err(error) => {
                    tracing::warn!(station = %actor.station.id(), %error, "generator unreachable");
                    return;
                }
            };
            let Some(parts) = &mut actor.parts else {
                return;
            };
            let epoch = parts.next_epoch;
            actor.station.board.post(
                epoch,
                TrackInfo::mastered(&mastered.track, &mastered.mastering),
            );
            let queued = QueuedTrack {
                epoch,
                samples: Arc::clone(&mastered.track.samples),
                crossfade_samples: None,
            };
            if parts.upcoming.push(queued).is_ok() {
                parts.next_epoch = parts.next_epoch.wrapping_add(1).max(1);
            }
        }));
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
        station.emit(EventKind::TrackEnded {
            track_id: on_air.track.track_id.clone(),
            played_ms: since_pts.saturating_sub(on_air.started_pts) * 1000 / u64::from(SAMPLE_RATE),
            reason: EndReason::Finished,
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
                source: TrackSource::Prompt(track.prompt.clone()),
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
    fn track_seeds_differ_per_play_and_repeat_per_station() {
        assert_ne!(track_seed(1, 0), track_seed(1, 1));
        assert_ne!(track_seed(1, 0), track_seed(2, 0));
        assert_eq!(track_seed(7, 3), track_seed(7, 3));
    }
}
