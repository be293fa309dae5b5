//! The mixer actor: owns the playout clock and plays one 20 ms frame per tick of
//! wall time into the PCM ring towards the encoder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context};
use sonicforge_engine::frame::{FRAME_SAMPLES, SAMPLE_RATE, SILENT_FRAME};
use sonicforge_engine::mix::{FALLBACK_EPOCH, Mixer};
use sonicforge_engine::ring::{PcmFrame, PcmProducer};

use super::{ClockAnchor, Station, unix_ms_now};

/// How often the actor wakes to play the frames that are due.
const TICK: Duration = Duration::from_millis(5);
/// How long a new station waits for its first track before going on air with the fallback loop.
const FIRST_TRACK_WAIT: Duration = Duration::from_secs(20);
/// A clock further behind than this is moved forward instead of caught up.
const MAX_CATCH_UP_FRAMES: u64 = 25;

/// Mixer state that outlives the actor: the mixer itself, the ring's producer end
/// and the playout position.
#[derive(Debug)]
pub(crate) struct MixerParts {
    mixer: Mixer,
    pcm: PcmProducer,
    next_pts: u64,
    frame: Box<PcmFrame>,
    /// Whether the fallback loop stands in for the music (no track ready, or dead air).
    on_fallback: bool,
    /// The mixer's copy of the station's clock, so that ticks read no lock.
    anchor: Option<ClockAnchor>,
}

impl MixerParts {
    pub(crate) fn new(mixer: Mixer, pcm: PcmProducer) -> Self {
        Self {
            mixer,
            pcm,
            next_pts: 0,
            on_fallback: false,
            anchor: None,
            frame: Box::new(PcmFrame {
                pts: 0,
                epoch: FALLBACK_EPOCH,
                samples: SILENT_FRAME,
            }),
        }
    }
}

/// Plays the station out in real time.
#[derive(Debug)]
pub struct MixerActor {
    station: Arc<Station>,
    parts: Option<MixerParts>,
    waiting_since: Instant,
}

impl MixerActor {
    /// The station this actor belongs to.
    pub(crate) fn station(&self) -> &Station {
        &self.station
    }

    pub fn new(station: Arc<Station>) -> Self {
        Self {
            station,
            parts: None,
            waiting_since: Instant::now(),
        }
    }

    fn tick(&mut self, _ctx: &mut Context<Self>) {
        let station = Arc::clone(&self.station);
        station.heartbeats.mixer.beat();
        super::run_guarded(&station, "mixer", || self.play_due_frames());
    }

    fn play_due_frames(&mut self) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        let station = &self.station;
        if parts.pcm.generation() != station.pcm_generation() {
            // A subtree restart re-wired the ring; only then is the slot touched.
            if let Some(producer) = station.pending_pcm_producer.try_take() {
                parts.pcm = producer;
            }
        }
        let degraded = station.is_degraded();
        if degraded != parts.mixer.is_holding_fallback() {
            parts.mixer.hold_fallback(degraded);
        }
        let anchor = match parts.anchor {
            Some(anchor) => anchor,
            None => {
                if parts.mixer.queued_tracks() == 0
                    && self.waiting_since.elapsed() < FIRST_TRACK_WAIT
                {
                    return;
                }
                let anchor = ClockAnchor {
                    pts: parts.next_pts,
                    unix_ms: unix_ms_now(),
                    instant: Instant::now(),
                };
                station.set_clock(anchor);
                parts.anchor = Some(anchor);
                tracing::info!(station = %station.id(), "on air");
                anchor
            }
        };
        let now = Instant::now();
        let elapsed_samples = (now.saturating_duration_since(anchor.instant).as_secs_f64()
            * f64::from(SAMPLE_RATE)) as u64;
        let due_pts = anchor.pts + elapsed_samples;
        if due_pts >= parts.next_pts + MAX_CATCH_UP_FRAMES * FRAME_SAMPLES as u64 {
            let behind_ms = (due_pts - parts.next_pts) / u64::from(SAMPLE_RATE / 1000);
            tracing::warn!(station = %station.id(), behind_ms, "playout clock fell behind; moving it forward");
            station
                .metrics
                .mixer_late_frames
                .inc_by((due_pts - parts.next_pts) / FRAME_SAMPLES as u64);
            let anchor = ClockAnchor {
                pts: parts.next_pts,
                unix_ms: unix_ms_now(),
                instant: now,
            };
            station.set_clock(anchor);
            parts.anchor = Some(anchor);
            return;
        }
        let mut frames = 0u64;
        while parts.next_pts <= due_pts {
            let report = parts.mixer.render(&mut parts.frame.samples);
            parts.frame.pts = parts.next_pts;
            parts.frame.epoch = report.epoch;
            if report.underrun {
                station.metrics.mixer_underruns.inc();
            }
            if report.dead_air {
                station.metrics.dead_air_frames.inc();
            }
            let on_fallback = report.underrun || report.dead_air;
            if on_fallback != parts.on_fallback {
                parts.on_fallback = on_fallback;
                if on_fallback {
                    station.metrics.switches_to_fallback.inc();
                    tracing::warn!(station = %station.id(), dead_air = report.dead_air, "fallback loop on air");
                } else {
                    station.metrics.switches_to_music.inc();
                    tracing::info!(station = %station.id(), "music back on air");
                }
            }
            if report.track_changed {
                station.board.set_on_air(report.epoch, parts.next_pts);
                if report.epoch != FALLBACK_EPOCH {
                    station.metrics.track_changes.inc();
                }
            }
            if parts.pcm.push(&parts.frame).is_err() {
                station.metrics.encoder_dropped_frames.inc();
            }
            parts.next_pts += FRAME_SAMPLES as u64;
            frames += 1;
        }
        if frames > 1 {
            station.metrics.mixer_late_frames.inc_by(frames - 1);
        }
        station.metrics.mixer_frames.inc_by(frames);
        station
            .playout_pts
            .store(parts.next_pts, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Actor for MixerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.station.actor_running("mixer");
        if self.parts.is_none() {
            self.parts = self.station.mixer_parts.take();
        }
        if let Some(parts) = &mut self.parts
            && let Some(producer) = self.station.pending_pcm_producer.take()
        {
            parts.pcm = producer;
        }
        self.waiting_since = Instant::now();
        ctx.run_interval(TICK, Self::tick);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("mixer");
        if let Some(parts) = self.parts.take() {
            self.station.mixer_parts.put(parts);
        }
    }
}
