//! The PCM ring from the mixer to the encoder.

use crate::frame::{Frame, SILENT_FRAME, frames_for_ms};

/// One frame on its way from the mixer to the encoder.
#[derive(Debug, Clone, Copy)]
pub struct PcmFrame {
    /// First sample of the frame, counted at 48 kHz since the station started.
    pub pts: u64,
    /// The track on air during this frame; it changes at every track change.
    pub epoch: u32,
    pub samples: Frame,
}

impl Default for PcmFrame {
    fn default() -> Self {
        Self {
            pts: 0,
            epoch: 0,
            samples: SILENT_FRAME,
        }
    }
}

/// The ring had no free slot; the frame was not written (the caller still holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PCM ring is full")]
pub struct RingFull;

/// Creates a PCM ring holding at least `capacity_ms` of audio (whole 20 ms frames,
/// at least one), both ends tagged with `generation`.
pub fn pcm_ring(capacity_ms: u64, generation: u64) -> (PcmProducer, PcmConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(frames_for_ms(capacity_ms));
    (
        PcmProducer {
            inner: producer,
            generation,
        },
        PcmConsumer {
            inner: consumer,
            generation,
        },
    )
}

/// Writing end of a PCM ring (the mixer's).
#[derive(Debug)]
pub struct PcmProducer {
    inner: rtrb::Producer<PcmFrame>,
    generation: u64,
}

impl PcmProducer {
    /// The generation the ring was created with; both ends share it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Copies `frame` into the next free slot. Never allocates or blocks.
    pub fn push(&mut self, frame: &PcmFrame) -> Result<(), RingFull> {
        self.inner.push(*frame).map_err(|_| RingFull)
    }

    /// Frames that can be pushed before the ring is full.
    pub fn free_frames(&self) -> usize {
        self.inner.slots()
    }

    pub fn capacity_frames(&self) -> usize {
        self.inner.buffer().capacity()
    }

    /// Whether the consuming end was dropped.
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

/// Reading end of a PCM ring (the encoder's).
#[derive(Debug)]
pub struct PcmConsumer {
    inner: rtrb::Consumer<PcmFrame>,
    generation: u64,
}

impl PcmConsumer {
    /// The generation the ring was created with; both ends share it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Copies the oldest frame into `out` and frees its slot; `false` when the ring
    /// is empty (`out` is then untouched). Never allocates or blocks.
    pub fn pop_into(&mut self, out: &mut PcmFrame) -> bool {
        let Ok(chunk) = self.inner.read_chunk(1) else {
            return false;
        };
        let (first, second) = chunk.as_slices();
        if let Some(frame) = first.first().or(second.first()) {
            *out = *frame;
        }
        chunk.commit_all();
        true
    }

    /// Frames waiting to be popped.
    pub fn buffered_frames(&self) -> usize {
        self.inner.slots()
    }

    /// Whether the producing end was dropped.
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FRAME_LEN;

    fn frame(pts: u64) -> PcmFrame {
        let mut samples = SILENT_FRAME;
        samples[0] = pts as f32;
        samples[FRAME_LEN - 1] = -(pts as f32);
        PcmFrame {
            pts,
            epoch: (pts / 3) as u32,
            samples,
        }
    }

    #[test]
    fn capacity_is_whole_frames_covering_the_milliseconds() {
        for (ms, frames) in [(100, 5), (20, 1), (30, 2), (1, 1), (0, 1), (1000, 50)] {
            let (producer, consumer) = pcm_ring(ms, 0);
            assert_eq!(producer.capacity_frames(), frames, "{ms} ms");
            assert_eq!(producer.free_frames(), frames);
            assert_eq!(consumer.buffered_frames(), 0);
        }
    }

    #[test]
    fn both_ends_carry_the_generation() {
        let (producer, consumer) = pcm_ring(100, 42);
        assert_eq!((producer.generation(), consumer.generation()), (42, 42));
        let (producer, consumer) = pcm_ring(100, 43);
        assert_eq!((producer.generation(), consumer.generation()), (43, 43));
    }

    #[test]
    fn push_until_full_then_refuse() {
        let (mut producer, consumer) = pcm_ring(60, 1);
        for pts in 0..3 {
            producer.push(&frame(pts)).unwrap();
            assert_eq!(producer.free_frames(), 2 - pts as usize);
        }
        assert_eq!(consumer.buffered_frames(), 3);
        assert_eq!(producer.push(&frame(3)), Err(RingFull));
        assert_eq!(consumer.buffered_frames(), 3);
    }

    #[test]
    fn frames_come_out_in_order_and_intact() {
        let (mut producer, mut consumer) = pcm_ring(100, 1);
        let mut out = PcmFrame::default();
        let mut next_in = 0;
        let mut next_out = 0;
        // Interleave pushes and pops so that the ring wraps several times.
        for round in 0..20 {
            for _ in 0..1 + round % 5 {
                if producer.push(&frame(next_in)).is_ok() {
                    next_in += 1;
                }
            }
            for _ in 0..1 + round % 3 {
                if consumer.pop_into(&mut out) {
                    let expected = frame(next_out);
                    assert_eq!((out.pts, out.epoch), (expected.pts, expected.epoch));
                    assert_eq!(out.samples, expected.samples);
                    next_out += 1;
                }
            }
        }
        while consumer.pop_into(&mut out) {
            assert_eq!(out.pts, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(next_in > 20);
    }

    #[test]
    fn pop_from_an_empty_ring_leaves_the_frame_alone() {
        let (_producer, mut consumer) = pcm_ring(100, 1);
        let mut out = frame(7);
        assert!(!consumer.pop_into(&mut out));
        assert_eq!(out.pts, 7);
    }

    #[test]
    fn dropping_one_end_abandons_the_other() {
        let (producer, consumer) = pcm_ring(100, 1);
        assert!(!producer.is_abandoned() && !consumer.is_abandoned());
        drop(producer);
        assert!(consumer.is_abandoned());
        let (producer, consumer) = pcm_ring(100, 2);
        drop(consumer);
        assert!(producer.is_abandoned());
    }
}
