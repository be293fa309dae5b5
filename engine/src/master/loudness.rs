//! Loudness per ITU-R BS.1770-4 / EBU R128, measured with the `ebur128` crate, and
//! the gain that brings a track to a target integrated loudness.
//!
//! Every measurement in the mastering chain goes through [`measure`]: the chain
//! never hand-rolls a meter, so its figures agree with other BS.1770 meters.

use ebur128::{EbuR128, Mode};
use thiserror::Error;

use crate::frame::{CHANNELS, SAMPLE_RATE};

/// The station's default integrated loudness, in LUFS.
pub const DEFAULT_TARGET_LUFS: f64 = -14.0;
/// The largest gain [`gain_to_target_db`] gives: a track quieter than the target by
/// more than this is raised by this much only (its noise floor would come up with it).
pub const MAX_LOUDNESS_GAIN_DB: f64 = 40.0;

/// Frames handed to the meter per call (one second).
const CHUNK_FRAMES: usize = SAMPLE_RATE as usize;

/// What to measure besides integrated loudness, which is always measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    /// Sample peak.
    pub sample_peak: bool,
    /// Loudness range (EBU Tech 3342).
    pub range: bool,
    /// True peak (the meter's 4x oversampling at 48 kHz).
    pub true_peak: bool,
}

impl Measure {
    /// Integrated loudness only: the cheapest measurement.
    pub const INTEGRATED: Self = Self {
        sample_peak: false,
        range: false,
        true_peak: false,
    };
    /// Everything: integrated loudness, range, sample and true peak.
    pub const ALL: Self = Self {
        sample_peak: true,
        range: true,
        true_peak: true,
    };
    /// Integrated loudness, sample and true peak.
    pub const WITH_TRUE_PEAK: Self = Self {
        sample_peak: true,
        range: false,
        true_peak: true,
    };
}

/// The loudness of a stereo signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loudness {
    /// Integrated loudness in LUFS; negative infinity for silence or a signal shorter
    /// than one 400 ms gating block.
    pub integrated_lufs: f64,
    /// Loudness range in LU, when measured.
    pub range_lu: Option<f64>,
    /// The largest absolute sample value of either channel in dBFS, when measured.
    pub sample_peak_dbfs: Option<f64>,
    /// The largest true peak of either channel in dBTP, when measured.
    pub true_peak_dbtp: Option<f64>,
}

/// The meter refused a call. It only does so for a defect in the caller (a mode or
/// channel it was not set up for), or when memory runs out.
#[derive(Debug, Error)]
#[error("loudness meter failed while {while_doing}: {source}")]
pub struct MeterError {
    /// What the meter was asked to do.
    pub while_doing: &'static str,
    /// The meter's error.
    #[source]
    pub source: ebur128::Error,
}

fn meter_error(while_doing: &'static str) -> impl FnOnce(ebur128::Error) -> MeterError {
    move |source| MeterError {
        while_doing,
        source,
    }
}

/// Measures interleaved stereo at 48 kHz. An odd trailing sample is ignored.
pub fn measure(interleaved: &[f32], what: Measure) -> Result<Loudness, MeterError> {
    let whole = interleaved.len() / CHANNELS * CHANNELS;
    measure_with(what, |meter| {
        for chunk in interleaved[..whole].chunks(CHUNK_FRAMES * CHANNELS) {
            meter.add_frames_f32(chunk)?;
        }
        Ok(())
    })
}

/// Measures stereo at 48 kHz given as two channels (frames beyond the shorter are ignored).
pub fn measure_planar(left: &[f32], right: &[f32], what: Measure) -> Result<Loudness, MeterError> {
    let frames = left.len().min(right.len());
    measure_with(what, |meter| {
        for (l, r) in left[..frames]
            .chunks(CHUNK_FRAMES)
            .zip(right[..frames].chunks(CHUNK_FRAMES))
        {
            meter.add_frames_planar_f32(&[l, r])?;
        }
        Ok(())
    })
}

fn measure_with(
    what: Measure,
    feed: impl FnOnce(&mut EbuR128) -> Result<(), ebur128::Error>,
) -> Result<Loudness, MeterError> {
    let mut mode = Mode::I;
    if what.sample_peak {
        mode |= Mode::SAMPLE_PEAK;
    }
    if what.range {
        mode |= Mode::LRA;
    }
    if what.true_peak {
        mode |= Mode::TRUE_PEAK;
    }
    let mut meter =
        EbuR128::new(CHANNELS as u32, SAMPLE_RATE, mode).map_err(meter_error("starting"))?;
    feed(&mut meter).map_err(meter_error("adding samples"))?;
    let integrated_lufs = meter
        .loudness_global()
        .map_err(meter_error("reading integrated loudness"))?;
    let range_lu = if what.range {
        Some(
            meter
                .loudness_range()
                .map_err(meter_error("reading loudness range"))?,
        )
    } else {
        None
    };
    let mut sample_peak = 0.0f64;
    let mut true_peak = 0.0f64;
    for channel in 0..CHANNELS as u32 {
        if what.sample_peak {
            sample_peak = sample_peak.max(
                meter
                    .sample_peak(channel)
                    .map_err(meter_error("reading sample peak"))?,
            );
        }
        if what.true_peak {
            true_peak = true_peak.max(
                meter
                    .true_peak(channel)
                    .map_err(meter_error("reading true peak"))?,
            );
        }
    }
    Ok(Loudness {
        integrated_lufs,
        range_lu,
        sample_peak_dbfs: what.sample_peak.then(|| amplitude_to_db(sample_peak)),
        true_peak_dbtp: what.true_peak.then(|| amplitude_to_db(true_peak)),
    })
}

/// The gain in dB that brings `measured_lufs` to `target_lufs`, at most
/// [`MAX_LOUDNESS_GAIN_DB`]; 0 when the measurement is not finite (silence).
pub fn gain_to_target_db(measured_lufs: f64, target_lufs: f64) -> f64 {
    if measured_lufs.is_finite() && target_lufs.is_finite() {
        (target_lufs - measured_lufs).min(MAX_LOUDNESS_GAIN_DB)
    } else {
        0.0
    }
}

/// Multiplies every sample by the gain `gain_db`.
pub fn apply_gain_db(samples: &mut [f32], gain_db: f64) {
    let gain = db_to_amplitude(gain_db) as f32;
    for sample in samples {
        *sample *= gain;
    }
}

/// `20·log10(amplitude)`; negative infinity for 0.
pub fn amplitude_to_db(amplitude: f64) -> f64 {
    20.0 * amplitude.log10()
}

/// `10^(db / 20)`.
pub fn db_to_amplitude(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(frequency: f64, amplitude: f64, seconds: f64) -> Vec<f32> {
        let frames = (seconds * f64::from(SAMPLE_RATE)) as usize;
        (0..frames)
            .flat_map(|n| {
                let x = (amplitude * (2.0 * PI * frequency * n as f64 / 48_000.0).sin()) as f32;
                [x, x]
            })
            .collect()
    }

    #[test]
    fn a_full_scale_stereo_sine_at_1khz_reads_about_zero_lufs() {
        // EBU Tech 3341: a 1 kHz sine at -23 dBFS in both channels reads -23 LUFS, so
        // one at full scale reads 0 LUFS.
        let loudness = measure(&sine(1000.0, 1.0, 5.0), Measure::ALL).unwrap();
        assert!((loudness.integrated_lufs - 0.0).abs() < 0.1, "{loudness:?}");
        assert!(loudness.sample_peak_dbfs.unwrap().abs() < 0.01);
        assert!(loudness.true_peak_dbtp.unwrap().abs() < 0.05);
        assert!(loudness.range_lu.unwrap().abs() < 0.1);
    }

    #[test]
    fn planar_and_interleaved_read_the_same() {
        let interleaved = sine(440.0, 0.3, 3.0);
        let (left, right): (Vec<f32>, Vec<f32>) = interleaved
            .chunks_exact(2)
            .map(|f| (f[0], 0.5 * f[1]))
            .unzip();
        let halved: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        let a = measure(&halved, Measure::ALL).unwrap();
        let b = measure_planar(&left, &right, Measure::ALL).unwrap();
        assert!((a.integrated_lufs - b.integrated_lufs).abs() < 1e-9);
        assert_eq!(a.true_peak_dbtp, b.true_peak_dbtp);
    }

    #[test]
    fn silence_has_no_loudness_and_needs_no_gain() {
        let loudness = measure(&vec![0.0; 96_000], Measure::INTEGRATED).unwrap();
        assert_eq!(loudness.integrated_lufs, f64::NEG_INFINITY);
        assert_eq!(gain_to_target_db(loudness.integrated_lufs, -14.0), 0.0);
        assert_eq!(loudness.true_peak_dbtp, None);
    }

    #[test]
    fn gain_to_target_closes_the_gap() {
        let mut samples = sine(997.0, 0.05, 5.0);
        let before = measure(&samples, Measure::INTEGRATED).unwrap();
        apply_gain_db(
            &mut samples,
            gain_to_target_db(before.integrated_lufs, -14.0),
        );
        let after = measure(&samples, Measure::INTEGRATED).unwrap();
        assert!((after.integrated_lufs + 14.0).abs() < 0.01, "{after:?}");
        assert_eq!(gain_to_target_db(-100.0, -14.0), MAX_LOUDNESS_GAIN_DB);
    }
}
