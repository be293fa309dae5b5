//! The mixer's real-time core: plays queued tracks back to back with equal-power
//! crossfades and falls back to a loop when nothing is ready (dead air).
//!
//! [`Mixer::render`] produces one 20 ms frame per call. It never allocates, locks or
//! blocks: upcoming tracks arrive through a lock-free queue ([`UpcomingConsumer`]) and
//! finished tracks leave through another ([`RetiredProducer`]), so that freeing a
//! track's buffer never happens on the real-time thread.
//!
//! Other threads steer the mixer through a [`MixerControl`] (atomics read once per
//! frame): drop queued tracks older than an epoch (a playlist swap) and cut over to
//! the next track now with a short equal-power fade (a skip, a swap on air).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::frame::{CHANNELS, FRAME_LEN, FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// A track handed to the mixer, ready to go on air.
#[derive(Debug, Clone)]
pub struct QueuedTrack {
    /// Identifies the track on air; listeners learn of track changes when it changes.
    pub epoch: u32,
    /// Interleaved stereo samples at 48 kHz.
    pub samples: Arc<[f32]>,
    /// Crossfade into the following track, in samples per channel; `None` uses the mixer's default.
    pub crossfade_samples: Option<u32>,
}

impl QueuedTrack {
    fn frames(&self) -> usize {
        self.samples.len() / CHANNELS
    }
}

/// Producer half of the upcoming-track queue (held by the scheduler side).
pub type UpcomingProducer = rtrb::Producer<QueuedTrack>;
/// Consumer half of the upcoming-track queue (held by the mixer).
pub type UpcomingConsumer = rtrb::Consumer<QueuedTrack>;
/// Producer half of the queue of finished tracks (held by the mixer).
pub type RetiredProducer = rtrb::Producer<QueuedTrack>;
/// Consumer half of the queue of finished tracks (drained off the real-time path).
pub type RetiredConsumer = rtrb::Consumer<QueuedTrack>;

/// Creates the upcoming-track queue holding at most `tracks` tracks.
pub fn upcoming_queue(tracks: usize) -> (UpcomingProducer, UpcomingConsumer) {
    rtrb::RingBuffer::new(tracks.max(1))
}

/// Creates the queue of finished tracks; it must hold at least as many as the upcoming queue plus two.
pub fn retired_queue(tracks: usize) -> (RetiredProducer, RetiredConsumer) {
    rtrb::RingBuffer::new(tracks.max(1))
}

/// Commands for a running mixer from other threads. Writing one never waits; the
/// mixer reads them once per frame without locking or allocating.
///
/// Epochs are compared as plain integers: a station would need 2^32 tracks (over
/// 8000 years of 1-minute tracks) before they wrap.
#[derive(Debug, Default)]
pub struct MixerControl {
    /// Queued tracks with an epoch below this are dropped unplayed.
    min_epoch: AtomicU32,
    /// Counts cut requests; the mixer acts once for every change it sees.
    cuts: AtomicU32,
}

impl MixerControl {
    /// Drops, unplayed, every queued track whose epoch is below `epoch` (tracks
    /// already on air or fading in play on). Never lowers an earlier bound.
    pub fn drop_queued_before(&self, epoch: u32) {
        self.min_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Asks the mixer to leave what is on air now: the next playable queued track
    /// comes in with the cut fade as soon as one is ready.
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::AcqRel);
    }

    /// The lowest epoch the mixer still plays from its queue.
    pub fn min_epoch(&self) -> u32 {
        self.min_epoch.load(Ordering::Acquire)
    }
}

/// Settings of the mixer, with defaults matching the shipped configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerOptions {
    /// Default crossfade between tracks, in samples per channel (default 4 s).
    pub crossfade_samples: u32,
    /// Fade between the fallback loop and music, in samples per channel (default 0.5 s).
    pub fallback_fade_samples: u32,
    /// Music quieter than this (RMS of a frame, dBFS) counts as dead air (default -50).
    pub silence_threshold_dbfs: f32,
    /// Dead air longer than this, in samples per channel, brings in the fallback loop
    /// until the music is back above the threshold (default 2 s).
    pub silence_timeout_samples: u32,
    /// Fade of a cut (a skip or a swap on air), in samples per channel (default 1 s).
    pub cut_fade_samples: u32,
}

impl Default for MixerOptions {
    fn default() -> Self {
        Self {
            cut_fade_samples: SAMPLE_RATE,
            crossfade_samples: 4 * SAMPLE_RATE,
            fallback_fade_samples: SAMPLE_RATE / 2,
            silence_threshold_dbfs: -50.0,
            silence_timeout_samples: 2 * SAMPLE_RATE,
        }
    }
}

/// What happened while rendering one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameReport {
    /// Epoch of the track considered on air for this frame (`0`: the fallback loop).
    pub epoch: u32,
    /// No queued track had audio for this frame, so the fallback loop played.
    pub underrun: bool,
    /// A crossfade was in progress during this frame.
    pub crossfading: bool,
    /// A new track became the one on air in this frame.
    pub track_changed: bool,
    /// The music has been below the silence threshold for longer than the timeout,
    /// so the fallback loop replaces it.
    pub dead_air: bool,
}

/// Epoch reported while the fallback loop is on air.
pub const FALLBACK_EPOCH: u32 = 0;

#[derive(Debug)]
struct Playing {
    track: QueuedTrack,
    /// Next frame (sample per channel) to play.
    position: usize,
}

impl Playing {
    fn remaining(&self) -> usize {
        self.track.frames().saturating_sub(self.position)
    }
}

#[derive(Debug)]
struct Crossfade {
    incoming: Playing,
    length: usize,
    done: usize,
}

/// Finished tracks the retired queue had no room for, retried every frame. A frame
/// retires at most three tracks (a cut ends the current track, the one fading in
/// and hands over); stale queued tracks are dropped only while the queue has room.
const RETIRED_OVERFLOW: usize = 4;

/// The mixer's state: what is playing, what fades in, and the fallback loop.
#[derive(Debug)]
pub struct Mixer {
    options: MixerOptions,
    upcoming: UpcomingConsumer,
    /// Requests: played before the upcoming queue's next track.
    requests: Option<UpcomingConsumer>,
    retired: RetiredProducer,
    retired_overflow: [Option<QueuedTrack>; RETIRED_OVERFLOW],
    current: Option<Playing>,
    crossfade: Option<Crossfade>,
    /// A cut in progress: the incoming track fades in over everything that played.
    cut: Option<Crossfade>,
    /// A cut was asked for and waits for a playable track.
    cut_pending: bool,
    control: Arc<MixerControl>,
    /// The control's cut count last acted on.
    cuts_seen: u32,
    fallback: Arc<[f32]>,
    fallback_position: usize,
    /// 0.0 = music only, 1.0 = fallback only.
    fallback_mix: f32,
    on_air_epoch: u32,
    /// Samples per channel of music below the silence threshold, in a row.
    silent_samples: u64,
    /// The fallback loop is held on air; the music waits where it was.
    holding_fallback: bool,
    /// The music comes back after a hold: announce the track on air again.
    music_resumes: bool,
}

impl Mixer {
    /// Creates a mixer reading tracks from `upcoming`, returning finished ones
    /// through `retired`, and looping `fallback` (interleaved stereo) on dead air.
    pub fn new(
        options: MixerOptions,
        upcoming: UpcomingConsumer,
        retired: RetiredProducer,
        fallback: Arc<[f32]>,
    ) -> Self {
        Self {
            options,
            upcoming,
            requests: None,
            retired,
            retired_overflow: Default::default(),
            current: None,
            crossfade: None,
            cut: None,
            cut_pending: false,
            control: Arc::new(MixerControl::default()),
            cuts_seen: 0,
            fallback,
            fallback_position: 0,
            fallback_mix: 0.0,
            on_air_epoch: FALLBACK_EPOCH,
            silent_samples: 0,
            holding_fallback: false,
            music_resumes: false,
        }
    }

    /// Adds a queue of requests: each plays after the track on air, before the
    /// upcoming queue's next track. The retired queue must have room for its tracks too.
    pub fn with_request_queue(mut self, requests: UpcomingConsumer) -> Self {
        self.requests = Some(requests);
        self
    }

    /// The handle other threads steer this mixer with.
    pub fn control(&self) -> Arc<MixerControl> {
        Arc::clone(&self.control)
    }

    /// Holds the fallback loop on air (`true`), fading over from the music, or
    /// lets the music fade back in where it stopped (`false`).
    pub fn hold_fallback(&mut self, hold: bool) {
        if self.holding_fallback && !hold {
            self.music_resumes = true;
        }
        self.holding_fallback = hold;
    }

    /// Whether the fallback loop is held on air.
    pub fn is_holding_fallback(&self) -> bool {
        self.holding_fallback
    }

    /// Epoch of the track on air.
    pub fn on_air_epoch(&self) -> u32 {
        self.on_air_epoch
    }

    /// Number of tracks waiting in the upcoming queue.
    pub fn queued_tracks(&self) -> usize {
        self.upcoming.slots()
    }

    /// Seconds of audio ready ahead of the playout position (rest of the current
    /// track, the incoming track and queued ones are not counted here).
    pub fn current_remaining_samples(&self) -> usize {
        self.current.as_ref().map_or(0, Playing::remaining)
    }

    /// Leaves the current track early: the next queued track comes in with the cut
    /// fade as soon as one is ready (the same as [`MixerControl::cut`]).
    pub fn skip_current(&mut self) {
        self.cut_pending = true;
    }

    /// Renders the next 20 ms frame into `out`.
    pub fn render(&mut self, out: &mut Frame) -> FrameReport {
        self.flush_retired_overflow();
        let cuts = self.control.cuts.load(Ordering::Acquire);
        if cuts != self.cuts_seen {
            self.cuts_seen = cuts;
            self.cut_pending = true;
        }
        self.drop_stale_queued();
        if self.holding_fallback && self.fallback_mix >= 1.0 {
            return self.render_held_fallback(out);
        }
        let mut track_changed = std::mem::take(&mut self.music_resumes)
            && self.current.is_some()
            && self.on_air_epoch == FALLBACK_EPOCH;
        if track_changed && let Some(playing) = &self.current {
            self.on_air_epoch = playing.track.epoch;
        }

        if self.current.is_none() {
            if let Some(crossfade) = self.crossfade.take() {
                self.current = Some(crossfade.incoming);
            } else if let Some(track) = self.pop_playable() {
                self.current = Some(Playing { track, position: 0 });
            }
            if let Some(playing) = &self.current {
                track_changed |= self.on_air_epoch != playing.track.epoch;
                self.on_air_epoch = playing.track.epoch;
                // Music starting from the fallback loop is already a cut.
                self.cut_pending = false;
            }
        }

        track_changed |= self.maybe_start_cut();
        self.maybe_start_crossfade();

        out.fill(0.0);
        let mut music_frames = 0usize;
        if let Some(playing) = &mut self.current {
            music_frames = add_from(out, playing, 1.0, 1.0);
        }
        let mut crossfading = false;
        if let Some(crossfade) = &mut self.crossfade {
            crossfading = true;
            let length = crossfade.length.max(1) as f32;
            let start = crossfade.done as f32 / length;
            let end = ((crossfade.done + FRAME_SAMPLES) as f32 / length).min(1.0);
            // Equal-power: the outgoing track already sits in `out` at unit gain.
            let (out_start, out_end) = (equal_power_out(start), equal_power_out(end));
            scale_ramp(out, out_start, out_end);
            add_from(
                out,
                &mut crossfade.incoming,
                equal_power_in(start),
                equal_power_in(end),
            );
            let before = crossfade.done;
            crossfade.done += FRAME_SAMPLES;
            if before < crossfade.length / 2
                && crossfade.done >= crossfade.length / 2
                && self.cut.is_none()
            {
                track_changed = true;
                self.on_air_epoch = crossfade.incoming.track.epoch;
            }
            music_frames = FRAME_SAMPLES;
        }
        if let Some(cut) = &mut self.cut {
            // Everything that played so far fades out as one; the cut's track fades in.
            let length = cut.length.max(1) as f32;
            let start = cut.done as f32 / length;
            let end = ((cut.done + FRAME_SAMPLES) as f32 / length).min(1.0);
            scale_ramp(out, equal_power_out(start), equal_power_out(end));
            add_from(
                out,
                &mut cut.incoming,
                equal_power_in(start),
                equal_power_in(end),
            );
            cut.done += FRAME_SAMPLES;
            crossfading = true;
            music_frames = FRAME_SAMPLES;
        }

        let underrun = music_frames < FRAME_SAMPLES;
        if music_frames > 0
            && crate::frame::rms_dbfs(&out[..music_frames * CHANNELS])
                >= self.options.silence_threshold_dbfs
        {
            self.silent_samples = 0;
        } else {
            self.silent_samples += FRAME_SAMPLES as u64;
        }
        let dead_air = self.silent_samples > u64::from(self.options.silence_timeout_samples);
        // On dead air the loop replaces the (near-silent) music outright.
        self.mix_fallback(
            out,
            if dead_air { 0 } else { music_frames },
            self.holding_fallback,
        );
        if underrun && self.current.is_none() && self.crossfade.is_none() && self.cut.is_none() {
            track_changed |= self.on_air_epoch != FALLBACK_EPOCH;
            self.on_air_epoch = FALLBACK_EPOCH;
        }

        self.finish_tracks();

        FrameReport {
            epoch: self.on_air_epoch,
            underrun,
            crossfading,
            track_changed,
            dead_air,
        }
    }

    /// A frame of the fallback loop alone, faded in from whatever played before.
    fn render_held_fallback(&mut self, out: &mut Frame) -> FrameReport {
        out.fill(0.0);
        self.mix_fallback(out, 0, true);
        let track_changed = self.on_air_epoch != FALLBACK_EPOCH;
        self.on_air_epoch = FALLBACK_EPOCH;
        FrameReport {
            epoch: FALLBACK_EPOCH,
            underrun: false,
            crossfading: false,
            track_changed,
            dead_air: false,
        }
    }

    /// Starts a pending cut once a playable track is queued; returns whether the
    /// track on air changed (a cut announces its track from its first frame).
    fn maybe_start_cut(&mut self) -> bool {
        if !self.cut_pending || self.cut.is_some() || self.current.is_none() {
            return false;
        }
        let Some(next) = self.pop_playable() else {
            return false;
        };
        self.cut_pending = false;
        let length = (self.options.cut_fade_samples as usize)
            .min(next.frames() / 2)
            .max(FRAME_SAMPLES);
        self.on_air_epoch = next.epoch;
        self.cut = Some(Crossfade {
            incoming: Playing {
                track: next,
                position: 0,
            },
            length,
            done: 0,
        });
        true
    }

    fn maybe_start_crossfade(&mut self) {
        if self.crossfade.is_some() || self.cut.is_some() {
            return;
        }
        let Some(playing) = &self.current else {
            return;
        };
        let wanted = playing
            .track
            .crossfade_samples
            .unwrap_or(self.options.crossfade_samples) as usize;
        let remaining = playing.remaining();
        if remaining > wanted.max(FRAME_SAMPLES) {
            return;
        }
        let Some(next) = self.pop_playable() else {
            return;
        };
        // The fade fits in what is left of the outgoing track and in half the incoming one.
        let length = remaining
            .min(wanted)
            .min(next.frames() / 2)
            .max(FRAME_SAMPLES);
        self.crossfade = Some(Crossfade {
            incoming: Playing {
                track: next,
                position: 0,
            },
            length,
            done: 0,
        });
    }

    /// The next queued track that may still play (a request first), dropping stale
    /// ones on the way.
    fn pop_playable(&mut self) -> Option<QueuedTrack> {
        self.drop_stale_queued();
        let min_epoch = self.control.min_epoch();
        if let Some(requests) = &mut self.requests
            && requests.peek().is_ok_and(|track| track.epoch >= min_epoch)
        {
            return requests.pop().ok();
        }
        match self.upcoming.peek() {
            Ok(track) if track.epoch >= min_epoch => self.upcoming.pop().ok(),
            _ => None,
        }
    }

    /// Moves queued tracks older than the control's bound to the retired queue, while
    /// it has room (they are freed off this thread, never here).
    fn drop_stale_queued(&mut self) {
        let min_epoch = self.control.min_epoch();
        let stale = |queue: &UpcomingConsumer| queue.peek().is_ok_and(|t| t.epoch < min_epoch);
        while self.retired.slots() > 0 {
            let track = if self.requests.as_ref().is_some_and(stale) {
                self.requests.as_mut().and_then(|queue| queue.pop().ok())
            } else if stale(&self.upcoming) {
                self.upcoming.pop().ok()
            } else {
                break;
            };
            if let Some(track) = track {
                self.retire(track);
            }
        }
    }

    fn finish_tracks(&mut self) {
        if self.cut.as_ref().is_some_and(|c| c.done >= c.length) {
            if let Some(playing) = self.current.take() {
                self.retire(playing.track);
            }
            if let Some(crossfade) = self.crossfade.take() {
                self.retire(crossfade.incoming.track);
            }
            if let Some(cut) = self.cut.take() {
                self.on_air_epoch = cut.incoming.track.epoch;
                self.current = Some(cut.incoming);
            }
            return;
        }
        let current_done = self.current.as_ref().is_some_and(|p| p.remaining() == 0);
        let crossfade_done = self.crossfade.as_ref().is_some_and(|c| c.done >= c.length);
        if current_done || crossfade_done {
            if let Some(playing) = self.current.take() {
                self.retire(playing.track);
            }
            if let Some(crossfade) = self.crossfade.take() {
                if self.cut.is_none() {
                    self.on_air_epoch = crossfade.incoming.track.epoch;
                }
                self.current = Some(crossfade.incoming);
            }
        }
    }

    /// Blends the fallback loop in or out. Frames after the end of the music
    /// (`music_frames`) are filled by the loop, so dead air is never silent; with
    /// `toward_fallback` the loop fades in over the music (a held fallback).
    fn mix_fallback(&mut self, out: &mut Frame, music_frames: usize, toward_fallback: bool) {
        let underrun = music_frames < FRAME_SAMPLES;
        let fade_step = FRAME_SAMPLES as f32 / self.options.fallback_fade_samples.max(1) as f32;
        let start = self.fallback_mix;
        let end = if underrun {
            1.0
        } else if toward_fallback {
            (start + fade_step).min(1.0)
        } else {
            (start - fade_step).max(0.0)
        };
        self.fallback_mix = end;
        let fallback_frames = self.fallback.len() / CHANNELS;
        if (start == 0.0 && end == 0.0) || fallback_frames == 0 {
            return;
        }
        for i in 0..FRAME_SAMPLES {
            let (gain_music, gain_fallback) = if i >= music_frames {
                (0.0, 1.0)
            } else {
                let mix = if underrun {
                    start
                } else {
                    start + (end - start) * (i as f32 / FRAME_SAMPLES as f32)
                };
                (equal_power_out(mix), equal_power_in(mix))
            };
            let source = self.fallback_position * CHANNELS;
            for channel in 0..CHANNELS {
                let index = i * CHANNELS + channel;
                out[index] =
                    out[index] * gain_music + self.fallback[source + channel] * gain_fallback;
            }
            self.fallback_position += 1;
            if self.fallback_position >= fallback_frames {
                self.fallback_position = 0;
            }
        }
    }

    fn retire(&mut self, track: QueuedTrack) {
        self.flush_retired_overflow();
        let Err(rtrb::PushError::Full(track)) = self.retired.push(track) else {
            return;
        };
        if let Some(slot) = self.retired_overflow.iter_mut().find(|s| s.is_none()) {
            *slot = Some(track);
        }
        // Otherwise the track is freed here: the last resort when nothing has drained
        // the retired queue for several tracks in a row (its scheduler is gone).
    }

    fn flush_retired_overflow(&mut self) {
        for slot in &mut self.retired_overflow {
            if let Some(track) = slot.take()
                && let Err(rtrb::PushError::Full(track)) = self.retired.push(track)
            {
                *slot = Some(track);
                return;
            }
        }
    }
}

/// Adds up to one frame of `playing` into `out` with a gain ramping from `start`
/// to `end`, advancing its position. Returns the number of frames taken.
fn add_from(out: &mut Frame, playing: &mut Playing, start: f32, end: f32) -> usize {
    let take = playing.remaining().min(FRAME_SAMPLES);
    let samples =
        &playing.track.samples[playing.position * CHANNELS..(playing.position + take) * CHANNELS];
    for (i, (out_pair, in_pair)) in out[..take * CHANNELS]
        .chunks_exact_mut(CHANNELS)
        .zip(samples.chunks_exact(CHANNELS))
        .enumerate()
    {
        let gain = start + (end - start) * (i as f32 / FRAME_SAMPLES as f32);
        for (o, s) in out_pair.iter_mut().zip(in_pair) {
            *o += s * gain;
        }
    }
    playing.position += take;
    take
}

fn scale_ramp(out: &mut Frame, start: f32, end: f32) {
    for (i, pair) in out.chunks_exact_mut(CHANNELS).enumerate() {
        let gain = start + (end - start) * (i as f32 / FRAME_SAMPLES as f32);
        for sample in pair {
            *sample *= gain;
        }
    }
}

/// Gain of the outgoing signal at crossfade position `t` in `0..=1`.
fn equal_power_out(t: f32) -> f32 {
    (t.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2).cos()
}

/// Gain of the incoming signal at crossfade position `t` in `0..=1`.
fn equal_power_in(t: f32) -> f32 {
    (t.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2).sin()
}

const _: () = assert!(FRAME_LEN == FRAME_SAMPLES * CHANNELS);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SILENT_FRAME;

    fn constant_track(epoch: u32, seconds: f32, value: f32) -> QueuedTrack {
        let frames = (seconds * SAMPLE_RATE as f32) as usize;
        QueuedTrack {
            epoch,
            samples: vec![value; frames * CHANNELS].into(),
            crossfade_samples: None,
        }
    }

    fn mixer_with(
        options: MixerOptions,
        fallback_value: f32,
    ) -> (Mixer, UpcomingProducer, RetiredConsumer) {
        let (producer, consumer) = upcoming_queue(4);
        let (retired_producer, retired_consumer) = retired_queue(8);
        let fallback: Arc<[f32]> = vec![fallback_value; FRAME_LEN * 5].into();
        (
            Mixer::new(options, consumer, retired_producer, fallback),
            producer,
            retired_consumer,
        )
    }

    #[test]
    fn plays_tracks_back_to_back_without_a_gap() {
        let options = MixerOptions {
            crossfade_samples: SAMPLE_RATE,
            ..MixerOptions::default()
        };
        let (mut mixer, mut upcoming, mut retired) = mixer_with(options, 0.0);
        upcoming.push(constant_track(1, 3.0, 0.5)).unwrap();
        upcoming.push(constant_track(2, 3.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        let mut epochs = Vec::new();
        // 5 s of two 3 s tracks with a 1 s crossfade: never an underrun.
        for _ in 0..250 {
            let report = mixer.render(&mut frame);
            assert!(!report.underrun, "underrun during crossfaded playout");
            let min = frame.iter().fold(f32::MAX, |a, b| a.min(*b));
            assert!(min > 0.45, "level dipped to {min} between tracks");
            epochs.push(report.epoch);
        }
        assert_eq!(epochs.first(), Some(&1));
        assert_eq!(epochs.last(), Some(&2));
        assert_eq!(retired.pop().map(|t| t.epoch).ok(), Some(1));
    }

    #[test]
    fn crossfade_is_equal_power() {
        let options = MixerOptions {
            crossfade_samples: SAMPLE_RATE,
            ..MixerOptions::default()
        };
        let (mut mixer, mut upcoming, _retired) = mixer_with(options, 0.0);
        // Uncorrelated-like content: one track on the left, one on the right.
        let mut left = vec![0.0f32; 2 * SAMPLE_RATE as usize * CHANNELS];
        left.iter_mut().step_by(2).for_each(|s| *s = 1.0);
        let mut right = vec![0.0f32; 2 * SAMPLE_RATE as usize * CHANNELS];
        right.iter_mut().skip(1).step_by(2).for_each(|s| *s = 1.0);
        upcoming
            .push(QueuedTrack {
                epoch: 1,
                samples: left.into(),
                crossfade_samples: None,
            })
            .unwrap();
        upcoming
            .push(QueuedTrack {
                epoch: 2,
                samples: right.into(),
                crossfade_samples: None,
            })
            .unwrap();
        let mut frame = SILENT_FRAME;
        for _ in 0..100 {
            mixer.render(&mut frame);
            let power = frame[0] * frame[0] + frame[1] * frame[1];
            assert!((power - 1.0).abs() < 0.01, "power {power} is not constant");
        }
    }

    #[test]
    fn falls_back_to_the_loop_on_dead_air_and_returns() {
        let (mut mixer, mut upcoming, _retired) = mixer_with(MixerOptions::default(), 0.25);
        let mut frame = SILENT_FRAME;
        let report = mixer.render(&mut frame);
        assert!(report.underrun);
        assert_eq!(report.epoch, FALLBACK_EPOCH);
        assert!(frame.iter().all(|s| (*s - 0.25).abs() < 1e-6));

        upcoming.push(constant_track(7, 2.0, 0.5)).unwrap();
        let report = mixer.render(&mut frame);
        assert!(!report.underrun);
        assert!(report.track_changed);
        assert_eq!(report.epoch, 7);
        // After the fade the fallback is gone.
        for _ in 0..40 {
            mixer.render(&mut frame);
        }
        assert!(frame.iter().all(|s| (*s - 0.5).abs() < 1e-6));
    }

    #[test]
    fn a_held_fallback_fades_in_over_the_music_and_the_music_resumes_where_it_stopped() {
        let (mut mixer, mut upcoming, _retired) = mixer_with(MixerOptions::default(), 0.25);
        upcoming.push(constant_track(4, 10.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        mixer.render(&mut frame);
        mixer.hold_fallback(true);
        let mut previous = frame[0];
        let mut held_epoch_seen = false;
        for _ in 0..50 {
            let report = mixer.render(&mut frame);
            // Equal-power fade: no step larger than one frame's share of the fade.
            assert!(
                (frame[0] - previous).abs() < 0.1,
                "click: {previous} -> {}",
                frame[0]
            );
            previous = frame[FRAME_LEN - 1];
            held_epoch_seen |= report.epoch == FALLBACK_EPOCH;
        }
        assert!(held_epoch_seen);
        assert!(frame.iter().all(|s| (*s - 0.25).abs() < 1e-6));
        let held_remaining = mixer.current_remaining_samples();
        for _ in 0..10 {
            mixer.render(&mut frame);
        }
        assert_eq!(
            mixer.current_remaining_samples(),
            held_remaining,
            "music advanced while held"
        );

        mixer.hold_fallback(false);
        let report = mixer.render(&mut frame);
        assert!(report.track_changed);
        assert_eq!(report.epoch, 4);
        for _ in 0..50 {
            mixer.render(&mut frame);
        }
        assert!(frame.iter().all(|s| (*s - 0.5).abs() < 1e-6));
    }

    #[test]
    fn a_track_ending_with_nothing_queued_is_covered_by_the_fallback() {
        let (mut mixer, mut upcoming, _retired) = mixer_with(MixerOptions::default(), 0.25);
        upcoming.push(constant_track(3, 0.03, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        mixer.render(&mut frame);
        let report = mixer.render(&mut frame);
        assert!(report.underrun);
        // The part after the track's end is filled by the loop, never silence.
        assert!(frame.iter().all(|s| s.abs() > 0.1));
    }

    #[test]
    fn silent_music_switches_to_the_fallback_and_back() {
        let options = MixerOptions {
            silence_timeout_samples: SAMPLE_RATE,
            crossfade_samples: SAMPLE_RATE / 5,
            ..MixerOptions::default()
        };
        let (mut mixer, mut upcoming, _retired) = mixer_with(options, 0.25);
        // 3 s of near silence (-60 dBFS), then music.
        upcoming.push(constant_track(1, 3.0, 0.001)).unwrap();
        upcoming.push(constant_track(2, 10.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        let reports: Vec<FrameReport> = (0..250).map(|_| mixer.render(&mut frame)).collect();
        // Not before the timeout (1 s = 50 frames).
        assert!(reports[..50].iter().all(|r| !r.dead_air));
        let first_dead = reports.iter().position(|r| r.dead_air).unwrap();
        assert_eq!(first_dead, 50);
        // The loop fills the dead air at full level.
        assert!(reports[60..130].iter().all(|r| r.dead_air));
        assert!(
            reports.iter().all(|r| !r.underrun),
            "a track was always playing"
        );
        // Back to the music once it is audible again, without a fallback at the end.
        assert!(!reports.last().unwrap().dead_air);
        assert!(
            frame.iter().all(|s| (*s - 0.5).abs() < 1e-3),
            "music is back alone"
        );
    }

    #[test]
    fn skip_moves_to_the_next_track() {
        let (mut mixer, mut upcoming, mut retired) = mixer_with(MixerOptions::default(), 0.0);
        upcoming.push(constant_track(1, 30.0, 0.5)).unwrap();
        upcoming.push(constant_track(2, 30.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        assert_eq!(mixer.render(&mut frame).epoch, 1);
        mixer.skip_current();
        let report = mixer.render(&mut frame);
        // A cut names its track from its first frame.
        assert!(report.track_changed);
        assert_eq!(report.epoch, 2);
        // The 1 s cut fade is 50 frames; the skipped track leaves after it.
        for _ in 0..49 {
            let report = mixer.render(&mut frame);
            assert!(!report.underrun);
            assert!(!report.track_changed);
        }
        assert_eq!(retired.pop().map(|t| t.epoch).ok(), Some(1));
    }

    fn sine_track(epoch: u32, seconds: f32, hz: f32, amplitude: f32) -> QueuedTrack {
        let frames = (seconds * SAMPLE_RATE as f32) as usize;
        let mut samples = Vec::with_capacity(frames * CHANNELS);
        for n in 0..frames {
            let value =
                amplitude * (std::f32::consts::TAU * hz * n as f32 / SAMPLE_RATE as f32).sin();
            samples.extend([value; CHANNELS]);
        }
        QueuedTrack {
            epoch,
            samples: samples.into(),
            crossfade_samples: None,
        }
    }

    /// Largest difference between neighbouring samples of the left channel across
    /// `frames` rendered frames, including the step from the last sample before.
    fn largest_step(mixer: &mut Mixer, frames: usize, previous: &mut f32) -> f32 {
        let mut frame = SILENT_FRAME;
        let mut largest = 0.0f32;
        for _ in 0..frames {
            mixer.render(&mut frame);
            for pair in frame.chunks_exact(CHANNELS) {
                largest = largest.max((pair[0] - *previous).abs());
                *previous = pair[0];
            }
        }
        largest
    }

    /// The steepest a sum of the two test sines may move between samples.
    fn sine_slope_bound() -> f32 {
        // 0.5 * 2 * pi * 660 / 48000 for each source, both at full gain at worst,
        // plus the fade's own slope.
        2.0 * 0.5 * std::f32::consts::TAU * 660.0 / SAMPLE_RATE as f32 + 0.01
    }

    #[test]
    fn a_cut_fades_over_without_a_discontinuity() {
        let (mut mixer, mut upcoming, mut retired) = mixer_with(MixerOptions::default(), 0.0);
        let control = mixer.control();
        upcoming.push(sine_track(1, 20.0, 440.0, 0.5)).unwrap();
        upcoming.push(sine_track(2, 20.0, 550.0, 0.5)).unwrap();
        let mut previous = 0.0;
        largest_step(&mut mixer, 100, &mut previous);
        // A swap on air: the queued epoch 2 is stale, epoch 3 is the new playlist.
        control.drop_queued_before(3);
        control.cut();
        let step = largest_step(&mut mixer, 5, &mut previous);
        assert!(
            step < sine_slope_bound(),
            "step {step} before the new track"
        );
        assert_eq!(
            mixer.on_air_epoch(),
            1,
            "the old track plays until the new one is ready"
        );
        assert_eq!(
            retired.pop().map(|t| t.epoch).ok(),
            Some(2),
            "stale track retired"
        );
        upcoming.push(sine_track(3, 20.0, 660.0, 0.5)).unwrap();
        let step = largest_step(&mut mixer, 100, &mut previous);
        assert!(step < sine_slope_bound(), "click of {step} during the cut");
        assert_eq!(mixer.on_air_epoch(), 3);
        assert_eq!(
            retired.pop().map(|t| t.epoch).ok(),
            Some(1),
            "cut track retired"
        );
    }

    #[test]
    fn a_cut_during_a_crossfade_fades_both_tracks_out_together() {
        let options = MixerOptions {
            crossfade_samples: 4 * SAMPLE_RATE,
            ..MixerOptions::default()
        };
        let (mut mixer, mut upcoming, mut retired) = mixer_with(options, 0.0);
        let control = mixer.control();
        upcoming.push(sine_track(1, 6.0, 440.0, 0.5)).unwrap();
        upcoming.push(sine_track(2, 20.0, 550.0, 0.5)).unwrap();
        let mut previous = 0.0;
        // 3 s in: the 4 s crossfade from 1 to 2 started at 2 s.
        largest_step(&mut mixer, 150, &mut previous);
        upcoming.push(sine_track(3, 20.0, 660.0, 0.5)).unwrap();
        control.cut();
        let step = largest_step(&mut mixer, 100, &mut previous);
        assert!(
            step < sine_slope_bound(),
            "click of {step} cutting a crossfade"
        );
        assert_eq!(mixer.on_air_epoch(), 3);
        let retired: Vec<u32> =
            std::iter::from_fn(|| retired.pop().ok().map(|t| t.epoch)).collect();
        assert_eq!(retired, vec![1, 2]);
    }

    #[test]
    fn a_request_plays_before_the_upcoming_queue_and_a_swap_drops_it() {
        let options = MixerOptions {
            crossfade_samples: SAMPLE_RATE / 2,
            ..MixerOptions::default()
        };
        let (mixer, mut upcoming, mut retired) = mixer_with(options, 0.0);
        let (mut requests, request_consumer) = upcoming_queue(2);
        let mut mixer = mixer.with_request_queue(request_consumer);
        let control = mixer.control();
        upcoming.push(constant_track(1, 2.0, 0.5)).unwrap();
        upcoming.push(constant_track(2, 2.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        mixer.render(&mut frame);
        requests.push(constant_track(3, 2.0, 0.5)).unwrap();
        let order: Vec<u32> = (0..220).map(|_| mixer.render(&mut frame).epoch).fold(
            Vec::new(),
            |mut order, epoch| {
                if order.last() != Some(&epoch) {
                    order.push(epoch);
                }
                order
            },
        );
        assert_eq!(order, vec![1, 3, 2], "the request plays next");
        // A request still queued at a swap is dropped with the rest.
        requests.push(constant_track(4, 2.0, 0.5)).unwrap();
        upcoming.push(constant_track(5, 2.0, 0.5)).unwrap();
        control.drop_queued_before(6);
        mixer.render(&mut frame);
        let dropped: Vec<u32> =
            std::iter::from_fn(|| retired.pop().ok().map(|t| t.epoch)).collect();
        assert!(dropped.contains(&4) && dropped.contains(&5), "{dropped:?}");
    }

    #[test]
    fn dropped_tracks_are_skipped_without_a_cut() {
        let options = MixerOptions {
            crossfade_samples: SAMPLE_RATE / 2,
            ..MixerOptions::default()
        };
        let (mut mixer, mut upcoming, mut retired) = mixer_with(options, 0.0);
        let control = mixer.control();
        upcoming.push(constant_track(1, 2.0, 0.5)).unwrap();
        upcoming.push(constant_track(2, 2.0, 0.5)).unwrap();
        upcoming.push(constant_track(3, 2.0, 0.5)).unwrap();
        let mut frame = SILENT_FRAME;
        mixer.render(&mut frame);
        // A swap for the next track: 2 and 3 are dropped, 1 plays to its end.
        control.drop_queued_before(4);
        mixer.render(&mut frame);
        let dropped: Vec<u32> =
            std::iter::from_fn(|| retired.pop().ok().map(|t| t.epoch)).collect();
        assert_eq!(dropped, vec![2, 3]);
        upcoming.push(constant_track(4, 4.0, 0.5)).unwrap();
        let epochs: Vec<u32> = (0..150).map(|_| mixer.render(&mut frame).epoch).collect();
        assert_eq!(epochs[0], 1);
        assert_eq!(epochs.last(), Some(&4));
        assert!(epochs.iter().all(|e| *e == 1 || *e == 4));
    }
}
