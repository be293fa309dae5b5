//! Any channel layout to stereo.

use symphonia::core::audio::Channels;

/// Gains of one source channel into the left and right outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gains {
    left: f32,
    right: f32,
}

const SIDE: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Folds interleaved audio of any channel count down to interleaved stereo.
///
/// Mono goes to both channels at full level; stereo passes unchanged. Wider layouts
/// use the ITU-R BS.775 coefficients (front left/right at 1, centre and surrounds at
/// -3 dB, LFE dropped), scaled so that no output can exceed the loudest input.
#[derive(Debug, Clone)]
pub(super) struct Downmix {
    gains: Vec<Gains>,
}

impl Downmix {
    pub(super) fn new(channels: &Channels) -> Self {
        let count = channels.count();
        let mut gains: Vec<Gains> = match channels {
            _ if count == 1 => vec![Gains {
                left: 1.0,
                right: 1.0,
            }],
            _ if count == 2 => vec![
                Gains {
                    left: 1.0,
                    right: 0.0,
                },
                Gains {
                    left: 0.0,
                    right: 1.0,
                },
            ],
            Channels::Positioned(positions) => (0..u32::BITS)
                .filter(|bit| positions.bits() & (1 << bit) != 0)
                .map(gains_of_position_bit)
                .collect(),
            // The first channel of an Ambisonic set is the omnidirectional one.
            Channels::Ambisonic(_) => (0..count)
                .map(|index| {
                    let level = if index == 0 { 1.0 } else { 0.0 };
                    Gains {
                        left: level,
                        right: level,
                    }
                })
                .collect(),
            // Unnamed channels: even ones to the left, odd ones to the right.
            _ => (0..count)
                .map(|index| {
                    if index % 2 == 0 {
                        Gains {
                            left: 1.0,
                            right: 0.0,
                        }
                    } else {
                        Gains {
                            left: 0.0,
                            right: 1.0,
                        }
                    }
                })
                .collect(),
        };
        if count > 2 {
            let left: f32 = gains.iter().map(|g| g.left).sum();
            let right: f32 = gains.iter().map(|g| g.right).sum();
            let scale = 1.0 / left.max(right).max(1.0);
            for gain in &mut gains {
                gain.left *= scale;
                gain.right *= scale;
            }
        }
        Self { gains }
    }

    /// Source channels this downmix expects.
    pub(super) fn channels(&self) -> usize {
        self.gains.len()
    }

    /// Appends the stereo fold of `interleaved` (whole frames of [`channels`](Self::channels)) to `out`.
    pub(super) fn apply(&self, interleaved: &[f32], out: &mut Vec<f32>) {
        let channels = self.gains.len();
        if channels == 2 {
            out.extend_from_slice(interleaved);
            return;
        }
        out.reserve(interleaved.len() / channels.max(1) * 2);
        for frame in interleaved.chunks_exact(channels) {
            let (left, right) = frame
                .iter()
                .zip(&self.gains)
                .fold((0.0, 0.0), |(l, r), (&x, g)| {
                    (l + x * g.left, r + x * g.right)
                });
            out.push(left);
            out.push(right);
        }
    }
}

/// Symphonia's position bits, in order: FL, FR, FC, LFE1, RL, RR, FLC, FRC, RC, SL, SR,
/// TC, TFL, TFC, TFR, TRL, TRC, TRR, then others.
fn gains_of_position_bit(bit: u32) -> Gains {
    match bit {
        0 => Gains {
            left: 1.0,
            right: 0.0,
        },
        1 => Gains {
            left: 0.0,
            right: 1.0,
        },
        3 => Gains {
            left: 0.0,
            right: 0.0,
        },
        4 | 6 | 9 | 12 | 15 => Gains {
            left: SIDE,
            right: 0.0,
        },
        5 | 7 | 10 | 14 | 17 => Gains {
            left: 0.0,
            right: SIDE,
        },
        _ => Gains {
            left: SIDE * SIDE,
            right: SIDE * SIDE,
        },
    }
}

#[cfg(test)]
mod tests {
    use symphonia::core::audio::Position;

    use super::*;

    #[test]
    fn mono_goes_to_both_channels() {
        let downmix = Downmix::new(&Channels::Positioned(Position::FRONT_CENTER));
        let mut out = Vec::new();
        downmix.apply(&[0.5, -0.25], &mut out);
        assert_eq!(out, [0.5, 0.5, -0.25, -0.25]);
    }

    #[test]
    fn five_one_keeps_sides_apart_drops_lfe_and_never_exceeds_full_scale() {
        let layout = Position::FRONT_LEFT
            | Position::FRONT_RIGHT
            | Position::FRONT_CENTER
            | Position::LFE1
            | Position::SIDE_LEFT
            | Position::SIDE_RIGHT;
        let downmix = Downmix::new(&Channels::Positioned(layout));
        assert_eq!(downmix.channels(), 6);
        let mut out = Vec::new();
        // Only the LFE: silence.
        downmix.apply(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0], &mut out);
        assert_eq!(out, [0.0, 0.0]);
        // Only the front left: left only.
        out.clear();
        downmix.apply(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], &mut out);
        assert!(out[0] > 0.0 && out[1] == 0.0, "{out:?}");
        // Everything at full scale: at most full scale out.
        out.clear();
        downmix.apply(&[1.0; 6], &mut out);
        assert!(out.iter().all(|&x| x <= 1.0 + 1e-6), "{out:?}");
    }
}
