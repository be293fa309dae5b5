//! Signal-processing building blocks: oscillators, filters, envelopes, a stereo
//! reverb and delay, a soft clipper and a loudness meter.
//!
//! Everything here is allocation-free per sample: delay lines are sized once when
//! an effect is made, and all state lives in plain structs.

use std::f32::consts::{PI, TAU};

use crate::frame::SAMPLE_RATE;

/// Sample rate as a float.
pub(crate) const SR: f32 = SAMPLE_RATE as f32;

/// Wraps a phase in cycles into `0..1`.
#[inline]
pub(crate) fn wrap(phase: f32) -> f32 {
    let fraction = phase - (phase as i32) as f32;
    if fraction < 0.0 {
        fraction + 1.0
    } else {
        fraction
    }
}

/// Entries in one cycle of the sine table.
const SINE_SIZE: usize = 2048;

/// One cycle of a sine and its first entry again, computed at compile time.
static SINE_TABLE: [f32; SINE_SIZE + 1] = sine_table();

const fn sine_table() -> [f32; SINE_SIZE + 1] {
    const PI64: f64 = std::f64::consts::PI;
    let mut table = [0.0f32; SINE_SIZE + 1];
    let mut i = 0;
    while i <= SINE_SIZE {
        // The angle folded into -π/2..π/2, where a Taylor series converges fast.
        let mut x = i as f64 / SINE_SIZE as f64 * 2.0 * PI64;
        if x > PI64 {
            x -= 2.0 * PI64;
        }
        if x > PI64 / 2.0 {
            x = PI64 - x;
        } else if x < -PI64 / 2.0 {
            x = -PI64 - x;
        }
        let x2 = x * x;
        let (mut term, mut sum, mut k) = (x, x, 1.0);
        while k < 12.0 {
            term = -term * x2 / ((2.0 * k) * (2.0 * k + 1.0));
            sum += term;
            k += 1.0;
        }
        table[i] = sum as f32;
        i += 1;
    }
    table
}

/// Sine of a phase in `0..1` cycles, from the table with linear interpolation
/// (error below 2e-6).
#[inline]
pub(crate) fn sine_unit(phase: f32) -> f32 {
    let position = phase * SINE_SIZE as f32;
    let index = (position.max(0.0) as usize).min(SINE_SIZE - 1);
    let fraction = position - index as f32;
    let low = SINE_TABLE[index];
    let high = SINE_TABLE[index + 1];
    low + (high - low) * fraction
}

/// Sine of a phase within `-1..2` cycles (an oscillator's phase plus a bounded
/// modulation), folded into `0..1` by comparisons alone.
#[inline]
pub(crate) fn sine_near(phase: f32) -> f32 {
    let folded = if phase < 0.0 {
        phase + 1.0
    } else if phase >= 1.0 {
        phase - 1.0
    } else {
        phase
    };
    sine_unit(folded)
}

/// Sine of a phase in cycles; phases outside `0..1` are wrapped.
#[inline]
pub(crate) fn sine(phase: f32) -> f32 {
    sine_unit(wrap(phase))
}

/// Constant-power gains (left, right) for a pan position from -1 (left) to 1 (right).
pub(crate) fn pan_gains(pan: f32) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * PI / 4.0;
    (angle.cos(), angle.sin())
}

/// Per-sample multiplier that decays by 60 dB in `seconds`.
pub(crate) fn decay_coefficient(seconds: f32) -> f32 {
    if seconds <= 0.0 {
        return 0.0;
    }
    (-6.907_755 / (seconds * SR)).exp()
}

/// Residual of the band-limited step (polyBLEP) at phase `t` for increment `dt`.
#[inline]
fn blep(t: f32, dt: f32) -> f32 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// A phase accumulator with band-limited waveforms.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Oscillator {
    phase: f32,
    step: f32,
}

impl Oscillator {
    pub(crate) fn new(hz: f32, phase: f32) -> Self {
        Self {
            phase: wrap(phase),
            step: (hz / SR).clamp(0.0, 0.49),
        }
    }

    pub(crate) fn set_hz(&mut self, hz: f32) {
        self.step = (hz / SR).clamp(0.0, 0.49);
    }

    pub(crate) fn phase(&self) -> f32 {
        self.phase
    }

    #[inline]
    pub(crate) fn advance(&mut self) {
        self.phase += self.step;
        if self.phase >= 1.0 {
            self.phase -= 1.0;
        }
    }

    /// Band-limited sawtooth, then advance.
    #[inline]
    pub(crate) fn saw(&mut self) -> f32 {
        let value = 2.0 * self.phase - 1.0 - blep(self.phase, self.step);
        self.advance();
        value
    }

    /// Band-limited square, then advance.
    #[inline]
    pub(crate) fn square(&mut self) -> f32 {
        let t = self.phase;
        let mut value = if t < 0.5 { 1.0 } else { -1.0 };
        value += blep(t, self.step);
        let half = if t < 0.5 { t + 0.5 } else { t - 0.5 };
        value -= blep(half, self.step);
        self.advance();
        value
    }

    /// A mix of waveforms read at the same phase (zero weights cost nothing), then advance.
    #[inline]
    pub(crate) fn shapes(&mut self, mix: &Waveforms) -> f32 {
        let t = self.phase;
        let mut value = 0.0;
        if mix.saw != 0.0 {
            value += mix.saw * (2.0 * t - 1.0 - blep(t, self.step));
        }
        if mix.square != 0.0 {
            let mut square = if t < 0.5 { 1.0 } else { -1.0 };
            square += blep(t, self.step);
            square -= blep(if t < 0.5 { t + 0.5 } else { t - 0.5 }, self.step);
            value += mix.square * square;
        }
        if mix.triangle != 0.0 {
            value += mix.triangle * (4.0 * (t - 0.5).abs() - 1.0);
        }
        if mix.sine != 0.0 {
            value += mix.sine * sine_unit(t);
        }
        self.advance();
        value
    }

    /// Sine, then advance.
    #[inline]
    pub(crate) fn sine(&mut self) -> f32 {
        let value = sine_unit(self.phase);
        self.advance();
        value
    }
}

/// Weights of the waveforms an [`Oscillator`] mixes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Waveforms {
    pub(crate) saw: f32,
    pub(crate) square: f32,
    pub(crate) triangle: f32,
    pub(crate) sine: f32,
}

/// One-pole low-pass filter (its complement is a high-pass).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OnePole {
    state: f32,
    coefficient: f32,
}

impl OnePole {
    pub(crate) fn new(cutoff_hz: f32) -> Self {
        let mut filter = Self::default();
        filter.set(cutoff_hz);
        filter
    }

    pub(crate) fn set(&mut self, cutoff_hz: f32) {
        self.coefficient = 1.0 - (-TAU * cutoff_hz.clamp(1.0, SR * 0.49) / SR).exp();
    }

    #[inline]
    pub(crate) fn low(&mut self, input: f32) -> f32 {
        self.state += self.coefficient * (input - self.state);
        self.state
    }

    #[inline]
    pub(crate) fn high(&mut self, input: f32) -> f32 {
        input - self.low(input)
    }
}

/// tan(x) for `0 <= x <= 1.4` by a Padé approximant (within 1% up to 1.2).
#[inline]
fn tan_approx(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.4);
    let x2 = x * x;
    x * (15.0 - x2) / (15.0 - 6.0 * x2)
}

/// Zero-delay-feedback state-variable filter (trapezoidal integration), stable
/// under fast cutoff changes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Svf {
    ic1: f32,
    ic2: f32,
    a1: f32,
    a2: f32,
    a3: f32,
    k: f32,
}

/// The outputs of one [`Svf`] step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SvfOut {
    pub(crate) low: f32,
    pub(crate) band: f32,
    pub(crate) high: f32,
}

impl Svf {
    pub(crate) fn new(cutoff_hz: f32, q: f32) -> Self {
        let mut filter = Self::default();
        filter.set(cutoff_hz, q);
        filter
    }

    /// Sets the cutoff (clamped to 10 Hz..21 kHz) and the resonance `q` (0.5 is
    /// gentle, 10 rings).
    #[inline]
    pub(crate) fn set(&mut self, cutoff_hz: f32, q: f32) {
        let g = tan_approx(PI * cutoff_hz.clamp(10.0, 21_000.0) / SR);
        let k = 1.0 / q.clamp(0.5, 20.0);
        self.k = k;
        self.a1 = 1.0 / (1.0 + g * (g + k));
        self.a2 = g * self.a1;
        self.a3 = g * self.a2;
    }

    #[inline]
    pub(crate) fn process(&mut self, input: f32) -> SvfOut {
        let v3 = input - self.ic2;
        let v1 = self.a1 * self.ic1 + self.a2 * v3;
        let v2 = self.ic2 + self.a2 * self.ic1 + self.a3 * v3;
        self.ic1 = 2.0 * v1 - self.ic1;
        self.ic2 = 2.0 * v2 - self.ic2;
        SvfOut {
            low: v2,
            band: v1,
            high: input - self.k * v1 - v2,
        }
    }

    #[inline]
    pub(crate) fn low(&mut self, input: f32) -> f32 {
        self.process(input).low
    }
}

/// Envelope level (-70 dB) below which a note has ended.
const SILENT: f32 = 3e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Attack,
    Decay,
    Release,
    Done,
}

/// Attack, decay, sustain and release, with a hold time after which the release
/// starts on its own. Attack is linear; decay and release are exponential.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope {
    level: f32,
    stage: Stage,
    attack_step: f32,
    decay: f32,
    sustain: f32,
    release: f32,
    hold: usize,
}

/// Times of an [`Envelope`], in seconds (decay and release to -60 dB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Adsr {
    pub(crate) attack: f32,
    pub(crate) decay: f32,
    pub(crate) sustain: f32,
    pub(crate) release: f32,
}

impl Envelope {
    /// An envelope that releases after `hold` frames.
    pub(crate) fn new(times: Adsr, hold: usize) -> Self {
        Self {
            level: 0.0,
            stage: Stage::Attack,
            attack_step: 1.0 / (times.attack * SR).max(1.0),
            decay: decay_coefficient(times.decay),
            sustain: times.sustain.clamp(0.0, 1.0),
            release: decay_coefficient(times.release),
            hold,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    #[inline]
    pub(crate) fn next(&mut self) -> f32 {
        if self.hold == 0 {
            if matches!(self.stage, Stage::Attack | Stage::Decay) {
                self.stage = Stage::Release;
            }
        } else {
            self.hold -= 1;
        }
        match self.stage {
            Stage::Attack => {
                self.level += self.attack_step;
                if self.level >= 1.0 {
                    self.level = 1.0;
                    self.stage = Stage::Decay;
                }
            }
            Stage::Decay => {
                self.level = self.sustain + (self.level - self.sustain) * self.decay;
                if self.level < SILENT {
                    self.stage = Stage::Done;
                    self.level = 0.0;
                }
            }
            Stage::Release => {
                self.level *= self.release;
                if self.level < SILENT {
                    self.stage = Stage::Done;
                    self.level = 0.0;
                }
            }
            Stage::Done => {}
        }
        self.level
    }
}

/// A delay line whose length is a power of two, read at any delay up to that length.
#[derive(Debug, Clone)]
pub(crate) struct DelayLine {
    buffer: Vec<f32>,
    mask: usize,
    write: usize,
}

impl DelayLine {
    /// A line holding at least `frames` samples.
    pub(crate) fn new(frames: usize) -> Self {
        let size = frames.max(2).next_power_of_two();
        Self {
            buffer: vec![0.0; size],
            mask: size - 1,
            write: 0,
        }
    }

    /// The sample written `delay` steps ago (1 is the last one).
    #[inline]
    pub(crate) fn read(&self, delay: usize) -> f32 {
        self.buffer[self.write.wrapping_sub(delay) & self.mask]
    }

    #[inline]
    pub(crate) fn write(&mut self, value: f32) {
        self.buffer[self.write & self.mask] = value;
        self.write = self.write.wrapping_add(1);
    }
}

/// A Schroeder all-pass diffuser.
#[derive(Debug, Clone)]
struct AllPass {
    line: DelayLine,
    delay: usize,
    gain: f32,
}

impl AllPass {
    fn new(delay: usize, gain: f32) -> Self {
        Self {
            line: DelayLine::new(delay + 1),
            delay: delay.max(1),
            gain,
        }
    }

    #[inline]
    fn process(&mut self, input: f32) -> f32 {
        let delayed = self.line.read(self.delay);
        let feed = input + self.gain * delayed;
        self.line.write(feed);
        delayed - self.gain * feed
    }
}

const REVERB_LINES: usize = 8;
const REVERB_LENGTHS: [usize; REVERB_LINES] = [1447, 1601, 1787, 1949, 2111, 2269, 2437, 2593];

/// Settings of a [`Reverb`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ReverbSettings {
    /// Seconds for the tail to fall by 60 dB.
    pub(crate) decay: f32,
    /// Room size: scales the delay lines (0.5 small .. 1.5 large).
    pub(crate) size: f32,
    /// Low-pass in the feedback path: lower is darker.
    pub(crate) damping_hz: f32,
    /// Delay before the tail starts, in seconds.
    pub(crate) predelay: f32,
}

/// A stereo reverb: pre-delay, four all-pass diffusers, then an eight-line
/// feedback delay network with a Householder matrix and damped feedback.
///
/// The network runs at half the sample rate (its tail is darker than 12 kHz
/// anyway): pairs of input samples are averaged, and outputs are interpolated
/// back to the full rate.
#[derive(Debug, Clone)]
pub(crate) struct Reverb {
    predelay: DelayLine,
    predelay_frames: usize,
    input_high_pass: OnePole,
    diffusers: [AllPass; 4],
    lines: [DelayLine; REVERB_LINES],
    lengths: [usize; REVERB_LINES],
    gains: [f32; REVERB_LINES],
    damping: [OnePole; REVERB_LINES],
    /// The first input of the pair being collected, when one is waiting.
    pending: Option<f32>,
    previous: (f32, f32),
    current: (f32, f32),
}

impl Reverb {
    pub(crate) fn new(settings: ReverbSettings) -> Self {
        // Lengths in samples at the half rate; filters are set for the half rate
        // by doubling their cutoffs.
        let size = settings.size.clamp(0.3, 2.0) * 0.5;
        let rate = SR * 0.5;
        let lengths = REVERB_LENGTHS.map(|length| ((length as f32 * size) as usize).max(8));
        let decay = settings.decay.max(0.1);
        let gains = lengths.map(|length| 10f32.powf(-3.0 * length as f32 / (decay * rate)));
        let predelay_frames = ((settings.predelay.clamp(0.0, 0.2) * rate) as usize).max(1);
        let diffuser = |frames: f32| AllPass::new((frames * size) as usize, 0.6);
        Self {
            predelay: DelayLine::new(predelay_frames + 1),
            predelay_frames,
            input_high_pass: OnePole::new(2.0 * 180.0),
            diffusers: [
                diffuser(142.0),
                diffuser(107.0),
                diffuser(379.0),
                diffuser(277.0),
            ],
            lines: lengths.map(DelayLine::new),
            lengths,
            gains,
            damping: [OnePole::new(2.0 * settings.damping_hz); REVERB_LINES],
            pending: None,
            previous: (0.0, 0.0),
            current: (0.0, 0.0),
        }
    }

    /// Processes one stereo sample of the send, returning the wet signal.
    #[inline]
    pub(crate) fn process(&mut self, left: f32, right: f32) -> (f32, f32) {
        let input = (left + right) * 0.5;
        match self.pending.take() {
            None => {
                self.pending = Some(input);
                self.current
            }
            Some(first) => {
                self.previous = self.current;
                self.current = self.tick((first + input) * 0.5);
                (
                    (self.previous.0 + self.current.0) * 0.5,
                    (self.previous.1 + self.current.1) * 0.5,
                )
            }
        }
    }

    /// One step of the network at the half rate.
    fn tick(&mut self, input: f32) -> (f32, f32) {
        self.predelay.write(input);
        let mut input = self
            .input_high_pass
            .high(self.predelay.read(self.predelay_frames));
        for diffuser in &mut self.diffusers {
            input = diffuser.process(input);
        }
        let mut outputs = [0.0f32; REVERB_LINES];
        let mut sum = 0.0;
        for ((output, line), (damping, &length)) in outputs
            .iter_mut()
            .zip(&self.lines)
            .zip(self.damping.iter_mut().zip(&self.lengths))
        {
            *output = damping.low(line.read(length));
            sum += *output;
        }
        let reflection = sum * (2.0 / REVERB_LINES as f32);
        let (mut wet_left, mut wet_right) = (0.0, 0.0);
        for (i, ((output, line), gain)) in outputs
            .iter()
            .zip(&mut self.lines)
            .zip(&self.gains)
            .enumerate()
        {
            let feedback = (output - reflection) * gain;
            if i.is_multiple_of(2) {
                line.write(input + feedback);
                wet_left += output;
            } else {
                line.write(feedback - input);
                wet_right += output;
            }
        }
        (wet_left * 0.35, wet_right * 0.35)
    }
}

/// A tempo-synced ping-pong delay with filtered, decaying repeats.
#[derive(Debug, Clone)]
pub(crate) struct PingPong {
    left: DelayLine,
    right: DelayLine,
    frames: usize,
    feedback: f32,
    tone: OnePole,
    low_cut: OnePole,
}

impl PingPong {
    pub(crate) fn new(seconds: f32, feedback: f32) -> Self {
        let frames = ((seconds.clamp(0.01, 2.0) * SR) as usize).max(1);
        Self {
            left: DelayLine::new(frames + 1),
            right: DelayLine::new(frames + 1),
            frames,
            feedback: feedback.clamp(0.0, 0.9),
            tone: OnePole::new(3500.0),
            low_cut: OnePole::new(220.0),
        }
    }

    #[inline]
    pub(crate) fn process(&mut self, left: f32, right: f32) -> (f32, f32) {
        let out_left = self.left.read(self.frames);
        let out_right = self.right.read(self.frames);
        let input = (left + right) * 0.5 + out_right * self.feedback;
        let filtered = self.low_cut.high(self.tone.low(input));
        self.left.write(filtered);
        self.right.write(out_left);
        (out_left, out_right)
    }
}

/// Identity below the knee, then a smooth curve rising towards [`CEILING`].
#[inline]
pub(crate) fn soft_clip(x: f32) -> f32 {
    const KNEE: f32 = 0.7;
    const ROOM: f32 = CEILING - KNEE;
    let magnitude = x.abs();
    if magnitude <= KNEE {
        x
    } else {
        let over = (magnitude - KNEE) / ROOM;
        (KNEE + ROOM * over / (1.0 + over)).copysign(x)
    }
}

/// The level [`soft_clip`] approaches and never exceeds.
pub(crate) const CEILING: f32 = 0.97;

/// A biquad in transposed direct form II, in double precision.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    const fn new(b: [f64; 3], a: [f64; 2]) -> Self {
        Self { b, a, z: [0.0; 2] }
    }

    #[inline]
    fn process(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// K-weighting of ITU-R BS.1770 at 48 kHz: a high shelf then a high-pass.
const K_SHELF: Biquad = Biquad::new(
    [
        1.535_124_859_586_97,
        -2.691_696_189_406_38,
        1.198_392_810_852_85,
    ],
    [-1.690_659_293_182_41, 0.732_480_774_215_85],
);
const K_HIGH_PASS: Biquad = Biquad::new(
    [1.0, -2.0, 1.0],
    [-1.990_047_454_833_98, 0.990_072_250_366_21],
);

/// Frames in one 100 ms step of the loudness gate.
const GATE_STEP: usize = SAMPLE_RATE as usize / 10;

/// Integrated loudness of a stereo signal (ITU-R BS.1770-4, gated), in LUFS.
#[derive(Debug, Clone)]
pub(crate) struct LoudnessMeter {
    filters: [[Biquad; 2]; 2],
    steps: Vec<f64>,
    sum: f64,
    count: usize,
}

impl LoudnessMeter {
    /// A meter for a signal of about `frames` frames.
    pub(crate) fn new(frames: usize) -> Self {
        Self {
            filters: [[K_SHELF, K_HIGH_PASS]; 2],
            steps: Vec::with_capacity(frames / GATE_STEP + 1),
            sum: 0.0,
            count: 0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, left: f32, right: f32) {
        let mut energy = 0.0;
        for (channel, value) in [left, right].into_iter().enumerate() {
            let [shelf, high_pass] = &mut self.filters[channel];
            let weighted = high_pass.process(shelf.process(f64::from(value)));
            energy += weighted * weighted;
        }
        self.sum += energy;
        self.count += 1;
        if self.count == GATE_STEP {
            self.steps.push(self.sum / GATE_STEP as f64);
            self.sum = 0.0;
            self.count = 0;
        }
    }

    /// Integrated loudness in LUFS, or `None` when the signal is shorter than
    /// one 400 ms block or silent.
    pub(crate) fn integrated(&self) -> Option<f32> {
        let loudness = |mean_square: f64| -0.691 + 10.0 * mean_square.log10();
        let blocks: Vec<f64> = self
            .steps
            .windows(4)
            .map(|w| w.iter().sum::<f64>() / 4.0)
            .collect();
        let audible: Vec<f64> = blocks
            .into_iter()
            .filter(|&z| loudness(z) > -70.0)
            .collect();
        if audible.is_empty() {
            return None;
        }
        let mean = audible.iter().sum::<f64>() / audible.len() as f64;
        let threshold = loudness(mean) - 10.0;
        let gated: Vec<f64> = audible
            .into_iter()
            .filter(|&z| loudness(z) > threshold)
            .collect();
        let mean = gated.iter().sum::<f64>() / gated.len().max(1) as f64;
        Some(loudness(mean) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sine_matches_the_library_sine() {
        for i in -2000..2000 {
            let phase = i as f32 / 997.0;
            let error =
                (sine(phase) - (f64::from(phase) * std::f64::consts::TAU).sin() as f32).abs();
            assert!(error < 3e-6, "phase {phase}: error {error}");
        }
    }

    #[test]
    fn saw_and_square_stay_bounded_and_average_to_zero() {
        for hz in [55.0, 440.0, 3520.0] {
            let mut saw = Oscillator::new(hz, 0.0);
            let mut square = Oscillator::new(hz, 0.0);
            let frames = SAMPLE_RATE as usize;
            let (mut saw_sum, mut square_sum) = (0.0f64, 0.0f64);
            for _ in 0..frames {
                let (s, q) = (saw.saw(), square.square());
                assert!(s.abs() <= 1.01 && q.abs() <= 1.01);
                saw_sum += f64::from(s);
                square_sum += f64::from(q);
            }
            assert!((saw_sum / frames as f64).abs() < 0.01, "{hz} Hz saw");
            assert!((square_sum / frames as f64).abs() < 0.01, "{hz} Hz square");
        }
    }

    fn rms_after<F: FnMut(f32) -> f32>(hz: f32, mut filter: F) -> f32 {
        let mut oscillator = Oscillator::new(hz, 0.0);
        let frames = SAMPLE_RATE as usize / 2;
        let mut sum = 0.0;
        for i in 0..frames {
            let y = filter(oscillator.sine());
            if i > frames / 2 {
                sum += y * y;
            }
        }
        (sum / (frames / 2) as f32).sqrt()
    }

    #[test]
    fn low_pass_filters_pass_lows_and_cut_highs() {
        let mut svf = Svf::new(1000.0, 0.707);
        let low = rms_after(100.0, |x| svf.low(x));
        let mut svf = Svf::new(1000.0, 0.707);
        let high = rms_after(8000.0, |x| svf.low(x));
        assert!(low > 0.65 && high < 0.02, "svf low {low} high {high}");
        let mut one_pole = OnePole::new(500.0);
        let low = rms_after(50.0, |x| one_pole.low(x));
        let mut one_pole = OnePole::new(500.0);
        let high = rms_after(10_000.0, |x| one_pole.low(x));
        assert!(low > 0.65 && high < 0.05, "one-pole low {low} high {high}");
    }

    #[test]
    fn envelope_attacks_holds_and_releases_to_silence() {
        let times = Adsr {
            attack: 0.01,
            decay: 0.1,
            sustain: 0.5,
            release: 0.1,
        };
        let mut envelope = Envelope::new(times, SAMPLE_RATE as usize / 2);
        let levels: Vec<f32> = (0..SAMPLE_RATE as usize).map(|_| envelope.next()).collect();
        assert!(levels[0] < 0.01);
        assert!((levels[480] - 1.0).abs() < 0.01);
        assert!((levels[20_000] - 0.5).abs() < 0.01);
        assert!(levels[24_000 + 6_000] < 0.01);
        assert!(envelope.is_done());
    }

    #[test]
    fn reverb_tail_decays_and_stays_finite() {
        let mut reverb = Reverb::new(ReverbSettings {
            decay: 1.0,
            size: 1.0,
            damping_hz: 6000.0,
            predelay: 0.01,
        });
        let mut energy = [0.0f32; 3];
        for i in 0..(3 * SAMPLE_RATE as usize) {
            let input = if i < 480 { 1.0 } else { 0.0 };
            let (l, r) = reverb.process(input, input);
            assert!(l.is_finite() && r.is_finite());
            energy[i / SAMPLE_RATE as usize] += l * l + r * r;
        }
        assert!(energy[0] > 0.0);
        assert!(energy[1] < energy[0] * 0.01, "{energy:?}");
        assert!(energy[2] < energy[1] * 0.01, "{energy:?}");
    }

    #[test]
    fn ping_pong_repeats_on_alternating_sides() {
        let mut delay = PingPong::new(0.1, 0.5);
        let mut first_left = None;
        let mut first_right = None;
        for i in 0..SAMPLE_RATE as usize {
            let input = if i == 0 { 1.0 } else { 0.0 };
            let (l, r) = delay.process(input, input);
            if l.abs() > 0.1 && first_left.is_none() {
                first_left = Some(i);
            }
            if r.abs() > 0.1 && first_right.is_none() {
                first_right = Some(i);
            }
        }
        let (left, right) = (first_left.unwrap(), first_right.unwrap());
        assert!(left < right, "left {left}, right {right}");
    }

    #[test]
    fn soft_clip_is_transparent_below_the_knee_and_bounded() {
        assert_eq!(soft_clip(0.5), 0.5);
        assert_eq!(soft_clip(-0.7), -0.7);
        assert!(soft_clip(1e9) <= CEILING);
        assert!(soft_clip(-1e9) >= -CEILING);
        assert!(soft_clip(3.0) < CEILING);
        assert!(soft_clip(0.9) > soft_clip(0.8));
    }

    #[test]
    fn full_scale_stereo_sine_at_one_kilohertz_reads_zero_lufs() {
        let frames = 3 * SAMPLE_RATE as usize;
        let mut meter = LoudnessMeter::new(frames);
        let mut oscillator = Oscillator::new(1000.0, 0.0);
        for _ in 0..frames {
            let x = oscillator.sine();
            meter.push(x, x);
        }
        // One channel of a full-scale 1 kHz sine reads -3.01 LUFS; two read 0.
        let lufs = meter.integrated().unwrap();
        assert!((lufs - 0.0).abs() < 0.1, "{lufs} LUFS");
        assert!(LoudnessMeter::new(10).integrated().is_none());
    }
}
