//! What one WebSocket connection heard: timestamp continuity, discontinuity flags,
//! decoded samples against the timestamps they span, decode errors, and runs of
//! digital silence in the decoded audio. Every irregularity is kept as a [`Glitch`]
//! with the time its packet arrived, so it can be put down to a kill afterwards.

use std::time::Instant;

use serde::Serialize;

use crate::wire::{PACKET_SAMPLES, SAMPLES_PER_MS};

/// A stereo frame whose samples are all below this magnitude is digital silence.
pub const SILENCE_THRESHOLD: f32 = 1e-4;
/// Silence runs longer than this many samples (100 ms) are glitches.
pub const SILENCE_MIN_SAMPLES: u64 = 100 * SAMPLES_PER_MS;
/// Glitches kept per connection; more are only counted.
pub const MAX_GLITCHES: usize = 1000;
/// Channels of the decoded audio.
pub const CHANNELS: usize = 2;

/// One irregularity in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GlitchKind {
    /// Timestamps jumped forward: `ms` of audio never arrived. `flagged` says whether
    /// the packet after the gap carried the discontinuity flag, as it must.
    Gap { ms: f64, flagged: bool },
    /// A discontinuity flag on a packet that follows the previous one without a gap.
    FlagWithoutGap,
    /// A timestamp repeated (`ms` = 20) or went further back.
    Backwards { ms: f64 },
    /// Decoded audio stayed digital silence for `ms`, longer than 100 ms.
    Silence { ms: f64 },
}

/// An irregularity and when the packet that showed it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Glitch {
    pub at: Instant,
    pub kind: GlitchKind,
}

fn samples_to_ms(samples: u64) -> f64 {
    samples as f64 / SAMPLES_PER_MS as f64
}

/// The running figures of one connection, measured from its first packet.
#[derive(Debug, Clone, Default)]
pub struct StreamTracker {
    expected_pts: Option<u64>,
    first_pts: u64,
    end_pts: u64,
    pub packets: u64,
    /// Packets that carried the discontinuity flag (the first packet's flag is ignored).
    pub flags: u64,
    /// Samples the forward timestamp jumps skipped.
    pub gap_samples: u64,
    /// Whether a timestamp ever repeated or went backwards.
    pub went_backwards: bool,
    /// Samples per channel the decoder produced.
    pub decoded_samples: u64,
    pub decode_errors: u64,
    pub first_decode_error: Option<String>,
    silence_samples: u64,
    silence_started: Option<Instant>,
    glitches: Vec<Glitch>,
    /// Glitches past [`MAX_GLITCHES`], counted but not kept.
    pub dropped_glitches: u64,
}

impl StreamTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, at: Instant, kind: GlitchKind) {
        if self.glitches.len() < MAX_GLITCHES {
            self.glitches.push(Glitch { at, kind });
        } else {
            self.dropped_glitches += 1;
        }
    }

    /// A packet's header arrived at `at`.
    pub fn packet(&mut self, at: Instant, pts: u64, flagged: bool) {
        match self.expected_pts {
            None => self.first_pts = pts,
            Some(expected) => {
                if flagged {
                    self.flags += 1;
                }
                if pts > expected {
                    self.gap_samples += pts - expected;
                    let ms = samples_to_ms(pts - expected);
                    self.push(at, GlitchKind::Gap { ms, flagged });
                } else if pts < expected {
                    self.went_backwards = true;
                    let ms = samples_to_ms(expected - pts);
                    self.push(at, GlitchKind::Backwards { ms });
                } else if flagged {
                    self.push(at, GlitchKind::FlagWithoutGap);
                }
            }
        }
        self.packets += 1;
        self.expected_pts = Some(pts + PACKET_SAMPLES);
        self.end_pts = self.end_pts.max(pts + PACKET_SAMPLES);
    }

    /// The decoded audio of the packet that arrived at `at`, interleaved stereo.
    ///
    /// Runs shorter than a packet between two loud frames cannot reach 100 ms, so only
    /// the silence before the packet's first loud frame and after its last one counts:
    /// a loud packet costs two short scans, not one per frame.
    pub fn audio(&mut self, at: Instant, interleaved: &[f32]) {
        let frames = interleaved.len() / CHANNELS;
        self.decoded_samples += frames as u64;
        let loud = |frame: &[f32]| frame.iter().any(|s| s.abs() >= SILENCE_THRESHOLD);
        let mut chunks = interleaved.chunks_exact(CHANNELS);
        let Some(first_loud) = chunks.position(loud) else {
            self.extend_silence(at, frames as u64);
            return;
        };
        self.extend_silence(at, first_loud as u64);
        self.end_silence();
        let trailing = interleaved
            .chunks_exact(CHANNELS)
            .rev()
            .position(loud)
            .unwrap_or(0);
        self.extend_silence(at, trailing as u64);
    }

    fn extend_silence(&mut self, at: Instant, samples: u64) {
        if samples == 0 {
            return;
        }
        if self.silence_samples == 0 {
            self.silence_started = Some(at);
        }
        self.silence_samples += samples;
    }

    fn end_silence(&mut self) {
        if self.silence_samples > SILENCE_MIN_SAMPLES
            && let Some(started) = self.silence_started
        {
            let ms = samples_to_ms(self.silence_samples);
            self.push(started, GlitchKind::Silence { ms });
        }
        self.silence_samples = 0;
        self.silence_started = None;
    }

    /// A packet that the decoder refused.
    pub fn decode_error(&mut self, error: &opus::Error) {
        self.decode_errors += 1;
        if self.first_decode_error.is_none() {
            self.first_decode_error = Some(error.to_string());
        }
    }

    /// The connection ended: a silence run still open counts too.
    pub fn finish(&mut self) {
        self.end_silence();
    }

    pub fn glitches(&self) -> &[Glitch] {
        &self.glitches
    }

    /// Samples per channel from the first packet's timestamp to the end of the last.
    pub fn pts_span(&self) -> u64 {
        self.end_pts.saturating_sub(self.first_pts)
    }

    /// Whether the decoded samples and the gaps add up to the timestamps' span. Not
    /// meaningful once timestamps went backwards.
    pub fn samples_match_span(&self) -> bool {
        self.packets == 0
            || self.went_backwards
            || self.decoded_samples + self.gap_samples == self.pts_span()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn kinds(tracker: &StreamTracker) -> Vec<GlitchKind> {
        tracker
            .glitches()
            .iter()
            .map(|glitch| glitch.kind)
            .collect()
    }

    #[test]
    fn continuous_stream_has_no_glitches_and_its_samples_match_the_span() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        let loud = [0.25_f32; 960 * 2];
        for packet in 0..50u64 {
            tracker.packet(start, 96_000 + packet * 960, false);
            tracker.audio(start, &loud);
        }
        tracker.finish();
        assert!(kinds(&tracker).is_empty());
        assert_eq!((tracker.packets, tracker.decoded_samples), (50, 48_000));
        assert_eq!(tracker.pts_span(), 48_000);
        assert!(tracker.samples_match_span());
    }

    #[test]
    fn first_packet_flag_is_ignored_and_later_flags_need_a_gap() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        tracker.packet(start, 9_600, true);
        tracker.packet(start, 10_560, false);
        // Two packets (40 ms) missing, flagged as it must be.
        tracker.packet(start, 10_560 + 3 * 960, true);
        // One packet missing without the flag.
        tracker.packet(start, 10_560 + 5 * 960, false);
        // A flag with no jump.
        tracker.packet(start, 10_560 + 6 * 960, true);
        assert_eq!(
            kinds(&tracker),
            [
                GlitchKind::Gap {
                    ms: 40.0,
                    flagged: true
                },
                GlitchKind::Gap {
                    ms: 20.0,
                    flagged: false
                },
                GlitchKind::FlagWithoutGap,
            ]
        );
        assert_eq!((tracker.flags, tracker.gap_samples), (2, 3 * 960));
    }

    #[test]
    fn repeated_and_backward_timestamps_are_glitches() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        tracker.packet(start, 4_800, false);
        tracker.packet(start, 4_800, false);
        tracker.packet(start, 960, false);
        assert_eq!(
            kinds(&tracker),
            [
                GlitchKind::Backwards { ms: 20.0 },
                GlitchKind::Backwards { ms: 100.0 }
            ]
        );
        assert!(tracker.went_backwards);
        assert!(tracker.samples_match_span());
    }

    #[test]
    fn samples_missing_from_decoding_break_the_span_match() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        tracker.packet(start, 0, false);
        tracker.audio(start, &[0.5; 960 * 2]);
        tracker.packet(start, 960, false);
        // This packet decoded to 10 ms only.
        tracker.audio(start, &[0.5; 480 * 2]);
        assert!(!tracker.samples_match_span());
        // A gap's samples are accounted for by the gap.
        let mut gapped = StreamTracker::new();
        gapped.packet(start, 0, false);
        gapped.audio(start, &[0.5; 960 * 2]);
        gapped.packet(start, 3 * 960, true);
        gapped.audio(start, &[0.5; 960 * 2]);
        assert!(gapped.samples_match_span());
    }

    #[test]
    fn silence_longer_than_100_ms_is_a_glitch_dated_by_its_first_packet() {
        let start = Instant::now();
        let later = start + Duration::from_millis(20);
        let mut tracker = StreamTracker::new();
        let silent = [0.0_f32; 960 * 2];
        let quiet_noise = [5e-5_f32; 960 * 2];
        let loud = [0.1_f32; 960 * 2];
        // Exactly 100 ms of silence is not yet a glitch.
        for _ in 0..5 {
            tracker.audio(start, &silent);
        }
        tracker.audio(later, &loud);
        assert!(kinds(&tracker).is_empty());
        // 120 ms, partly below the threshold without being exactly zero.
        tracker.audio(later, &silent);
        for _ in 0..5 {
            tracker.audio(start, &quiet_noise);
        }
        tracker.audio(start, &loud);
        assert_eq!(kinds(&tracker), [GlitchKind::Silence { ms: 120.0 }]);
        assert_eq!(tracker.glitches()[0].at, later);
        // A run still open when the connection ends counts as well.
        for _ in 0..10 {
            tracker.audio(start, &silent);
        }
        tracker.finish();
        assert_eq!(kinds(&tracker)[1], GlitchKind::Silence { ms: 200.0 });
    }

    #[test]
    fn silence_spanning_packets_is_measured_to_the_frame() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        // Loud, then silent from frame 480: 10 ms of silence at the packet's end.
        let mut fading = [0.2_f32; 960 * 2];
        fading[480 * 2..].fill(0.0);
        // Silent, loud for frames 300..310 only, silent again.
        let mut blip = [0.0_f32; 960 * 2];
        blip[300 * 2..310 * 2].fill(0.2);
        // Silent for 240 frames (5 ms), then loud.
        let mut rising = [0.2_f32; 960 * 2];
        rising[..240 * 2].fill(0.0);
        tracker.audio(start, &fading);
        for _ in 0..5 {
            tracker.audio(start, &[0.0; 960 * 2]);
        }
        tracker.audio(start, &rising);
        // 480 + 5 x 960 + 240 samples: 115 ms.
        assert_eq!(kinds(&tracker), [GlitchKind::Silence { ms: 115.0 }]);
        // Short runs around a blip inside a packet are not glitches.
        tracker.audio(start, &blip);
        tracker.audio(start, &rising);
        tracker.finish();
        assert_eq!(kinds(&tracker).len(), 1);
        assert_eq!(tracker.decoded_samples, 9 * 960);
    }

    #[test]
    fn one_loud_channel_is_not_silence() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        let mut left_only = [0.0_f32; 960 * 2];
        for frame in left_only.chunks_exact_mut(2) {
            frame[0] = 0.3;
        }
        for _ in 0..20 {
            tracker.audio(start, &left_only);
        }
        tracker.finish();
        assert!(kinds(&tracker).is_empty());
    }

    #[test]
    fn glitches_past_the_cap_are_counted_not_kept() {
        let start = Instant::now();
        let mut tracker = StreamTracker::new();
        tracker.packet(start, 0, false);
        for step in 1..=(MAX_GLITCHES as u64 + 5) {
            tracker.packet(start, step * 2 * 960, true);
        }
        assert_eq!(tracker.glitches().len(), MAX_GLITCHES);
        assert_eq!(tracker.dropped_glitches, 5);
    }
}
