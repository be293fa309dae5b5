//! Behaviour of the mastering chain as a whole: determinism, batches, bad input,
//! silence, statistics, and a limiter that adds no clicks on real material.

use std::time::Duration;

use sonicforge_engine::events;
use sonicforge_engine::master::corpus::CorpusTrack;
use sonicforge_engine::master::limiter::{LimiterOptions, TruePeakLimiter};
use sonicforge_engine::master::loudness::apply_gain_db;
use sonicforge_engine::master::{
    CpuKernels, EqTarget, GenreTarget, MasterError, Mastering, MasteringOptions,
};

const LENGTH: Duration = Duration::from_secs(20);

#[test]
fn the_mastering_chain_is_deterministic() {
    let track = CorpusTrack::Bright.render(LENGTH).unwrap();
    let options = MasteringOptions {
        eq_target: EqTarget::Genre(GenreTarget::Synthwave),
        ..MasteringOptions::default()
    };
    let mut first = Mastering::cpu(options.clone());
    let a = first.master(&track).unwrap();
    let b = first.master(&track).unwrap();
    let c = Mastering::new(Box::new(CpuKernels::new()), options)
        .master(&track)
        .unwrap();
    assert_eq!(a.samples, b.samples);
    assert_eq!(a.samples, c.samples);
    assert_eq!(a.stats.output_lufs, c.stats.output_lufs);
    assert_eq!(a.samples.len(), track.len());
}

#[test]
fn a_batch_masters_each_track_as_alone() {
    let quiet = CorpusTrack::Quiet.render(LENGTH).unwrap();
    let dull = CorpusTrack::Dull.render(Duration::from_secs(13)).unwrap();
    let mut mastering = Mastering::cpu(MasteringOptions::default());
    let batch = mastering.master_batch(&[&quiet, &dull]).unwrap();
    let alone = [
        mastering.master(&quiet).unwrap(),
        mastering.master(&dull).unwrap(),
    ];
    for (together, alone) in batch.iter().zip(&alone) {
        assert_eq!(together.samples, alone.samples);
        assert_eq!(together.stats.eq_range_db, alone.stats.eq_range_db);
    }
    assert!(mastering.master_batch(&[]).unwrap().is_empty());
}

#[test]
fn bad_input_to_mastering_is_refused_with_its_reason() {
    let mut mastering = Mastering::cpu(MasteringOptions::default());
    let good = vec![0.1f32; 9600];
    assert!(matches!(
        mastering.master(&[]),
        Err(MasterError::Empty { track: 0 })
    ));
    assert!(matches!(
        mastering.master_batch(&[&good, &good[..9599]]),
        Err(MasterError::OddSampleCount {
            track: 1,
            samples: 9599
        })
    ));
    let mut broken = good.clone();
    broken[77] = f32::INFINITY;
    let error = mastering.master(&broken).unwrap_err();
    assert!(matches!(
        error,
        MasterError::NonFinite {
            track: 0,
            index: 77,
            ..
        }
    ));
    assert!(error.to_string().contains("sample 77"));

    let mut bad_options = Mastering::cpu(MasteringOptions {
        ceiling_dbtp: 3.0,
        ..MasteringOptions::default()
    });
    assert!(matches!(
        bad_options.master(&good),
        Err(MasterError::BadOption {
            option: "ceiling_dbtp",
            ..
        })
    ));
    bad_options.set_options(MasteringOptions {
        fir_taps: 100,
        ..MasteringOptions::default()
    });
    assert!(matches!(
        bad_options.master(&good),
        Err(MasterError::BadOption { option: "taps", .. })
    ));
}

#[test]
fn mastered_silence_stays_silent_and_has_no_loudness() {
    let silence = vec![0.0f32; 48_000 * 2 * 3];
    let mastered = Mastering::cpu(MasteringOptions::default())
        .master(&silence)
        .unwrap();
    assert!(mastered.samples.iter().all(|&x| x == 0.0));
    assert_eq!(mastered.stats.input_lufs, f64::NEG_INFINITY);
    assert_eq!(mastered.stats.loudness_gain_db, 0.0);
    let event = events::MasteringStats::from(&mastered.stats);
    assert_eq!(event.input_lufs, None);
    assert_eq!(event.output_lufs, None);
    assert_eq!(event.eq_range_db, Some(0.0));
    assert_eq!(event.backend.as_deref(), Some("cpu"));
}

#[test]
fn the_mastering_event_gets_the_widest_eq_gain_with_its_sign() {
    let track = CorpusTrack::Dull.render(LENGTH).unwrap();
    let mastered = Mastering::cpu(MasteringOptions::default())
        .master(&track)
        .unwrap();
    let range = mastered.stats.eq_range_db;
    let event = events::MasteringStats::from(mastered.stats.clone());
    let widest = if range.min_db.abs() > range.max_db.abs() {
        range.min_db
    } else {
        range.max_db
    };
    assert_eq!(event.eq_range_db, Some(widest));
    assert_eq!(event.true_peak_dbtp, Some(mastered.stats.true_peak_dbtp));
    assert_eq!(event.seconds, Some(mastered.stats.seconds));
}

#[test]
fn the_mastering_limiter_adds_no_clicks_on_a_clipped_track() {
    // The loud, clipped track pushed 6 dB further: the limiter works hard.
    let mut track = CorpusTrack::Loud.render(LENGTH).unwrap();
    apply_gain_db(&mut track, 6.0);
    let limiter = TruePeakLimiter::new(LimiterOptions::default());
    let gains = limiter.gain_envelope(&track);
    let deepest = gains.iter().cloned().fold(1.0, f32::min);
    assert!(deepest < 0.5, "the limiter barely acted: {deepest}");
    let bound = 1.0 / (limiter.lookahead_frames() + 1) as f32 + 1e-6;
    let largest = gains
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).abs())
        .fold(0.0, f32::max);
    assert!(
        largest <= bound,
        "the gain moved by {largest} in one sample"
    );
    // Rising (release) is far slower than falling (attack).
    let largest_rise = gains
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f32::max);
    assert!(largest_rise < bound / 10.0, "release step {largest_rise}");
}
