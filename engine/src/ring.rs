//! Lock-free rings between the real-time stages.
//!
//! - [`pcm_ring`]: mixer -> encoder, an rtrb single-producer single-consumer ring of
//!   whole 20 ms frames, sized in milliseconds and tagged with a generation so that a
//!   restarted actor can tell its ring from a stale one.
//! - [`PacketRing`]: encoder -> listeners, one writer and any number of readers,
//!   each with a cursor of its own. Slots are seqlocks made only of atomics: the
//!   writer never waits, and a reader that is lapped finds out and skips forward.
//!
//! Neither allocates after construction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::codec::opus::MAX_PACKET_LEN;
use crate::frame::{FRAME_LEN, Frame, frames_for_ms};

/// One frame on its way from the mixer to the encoder.
#[derive(Debug, Clone, Copy)]
pub struct PcmFrame {
    /// First sample of the frame, counted at 48 kHz since the station started.
    pub pts: u64,
    /// The track on air during this frame.
    pub epoch: u32,
    pub samples: Frame,
}

impl Default for PcmFrame {
    fn default() -> Self {
        Self {
            pts: 0,
            epoch: 0,
            samples: [0.0; FRAME_LEN],
        }
    }
}

/// The ring had no free slot; the frame was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PCM ring is full")]
pub struct RingFull;

/// Creates a PCM ring holding at least `capacity_ms` of audio.
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
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Copies `frame` into the ring.
    pub fn push(&mut self, frame: &PcmFrame) -> Result<(), RingFull> {
        self.inner.push(*frame).map_err(|_| RingFull)
    }

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
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Copies the oldest frame into `out`; `false` when the ring is empty.
    pub fn pop_into(&mut self, out: &mut PcmFrame) -> bool {
        match self.inner.read_chunk(1) {
            Ok(chunk) => {
                let (first, _) = chunk.as_slices();
                *out = first[0];
                chunk.commit_all();
                true
            }
            Err(_) => false,
        }
    }

    pub fn buffered_frames(&self) -> usize {
        self.inner.slots()
    }

    /// Whether the producing end was dropped.
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

const PAYLOAD_WORDS: usize = MAX_PACKET_LEN.div_ceil(8);

/// One packet slot. `stamp` is `2 * seq + 2` when packet `seq` is complete and odd
/// while the writer is changing the slot.
#[derive(Debug)]
struct Slot {
    stamp: AtomicU64,
    pts: AtomicU64,
    flags_len: AtomicU32,
    epoch: AtomicU32,
    payload: [AtomicU64; PAYLOAD_WORDS],
}

impl Slot {
    fn new() -> Self {
        Self {
            stamp: AtomicU64::new(0),
            pts: AtomicU64::new(0),
            flags_len: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
            payload: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Where a packet lives, as a reader learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub seq: u64,
    pub pts: u64,
    pub flags: u8,
    pub epoch: u32,
    pub len: usize,
}

/// What [`PacketRing::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The packet was copied into the buffer.
    Ready(PacketMeta),
    /// The packet has not been published yet.
    NotYet,
    /// The writer lapped the reader; `oldest` is the oldest packet still readable.
    Overwritten { oldest: u64 },
}

/// A reader's buffer for one packet's payload.
#[derive(Debug, Clone)]
pub struct PacketBuf {
    bytes: [u8; PAYLOAD_WORDS * 8],
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self {
            bytes: [0; PAYLOAD_WORDS * 8],
        }
    }
}

impl PacketBuf {
    /// The first `len` bytes (a packet's length from its [`PacketMeta`]).
    pub fn as_slice(&self, len: usize) -> &[u8] {
        &self.bytes[..len.min(MAX_PACKET_LEN)]
    }
}

/// The packet is larger than a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet of {len} bytes exceeds the ring's {max} bytes per packet")]
pub struct PacketTooLarge {
    pub len: usize,
    pub max: usize,
}

/// A broadcast ring of Opus packets: one writer, any number of readers.
#[derive(Debug)]
pub struct PacketRing {
    slots: Box<[Slot]>,
    head: AtomicU64,
}

impl PacketRing {
    /// A ring of `packets` slots (at least 2), with its single writer.
    pub fn with_capacity(packets: usize) -> (PacketWriter, Arc<PacketRing>) {
        let ring = Arc::new(PacketRing {
            slots: (0..packets.max(2)).map(|_| Slot::new()).collect(),
            head: AtomicU64::new(0),
        });
        (
            PacketWriter {
                ring: Arc::clone(&ring),
            },
            ring,
        )
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Sequence number the next packet will get.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Oldest packet that may still be read.
    pub fn oldest_readable(&self) -> u64 {
        // One slot is kept as a margin: the writer may be rewriting it.
        self.head().saturating_sub(self.capacity() as u64 - 1)
    }

    /// Copies packet `seq` into `out`.
    pub fn read(&self, seq: u64, out: &mut PacketBuf) -> ReadOutcome {
        if seq >= self.head() {
            return ReadOutcome::NotYet;
        }
        let slot = &self.slots[(seq % self.capacity() as u64) as usize];
        let expected = 2 * seq + 2;
        let before = slot.stamp.load(Ordering::Acquire);
        if before != expected {
            return ReadOutcome::Overwritten {
                oldest: self.oldest_readable(),
            };
        }
        let pts = slot.pts.load(Ordering::Relaxed);
        let flags_len = slot.flags_len.load(Ordering::Relaxed);
        let epoch = slot.epoch.load(Ordering::Relaxed);
        let len = (flags_len & 0xffff) as usize;
        let words = len.div_ceil(8).min(PAYLOAD_WORDS);
        for (word, chunk) in slot.payload[..words].iter().zip(out.bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        fence(Ordering::Acquire);
        if slot.stamp.load(Ordering::Relaxed) != expected {
            return ReadOutcome::Overwritten {
                oldest: self.oldest_readable(),
            };
        }
        ReadOutcome::Ready(PacketMeta {
            seq,
            pts,
            flags: (flags_len >> 16) as u8,
            epoch,
            len: len.min(MAX_PACKET_LEN),
        })
    }
}

/// The single writer of a [`PacketRing`]. It is not `Clone`; it can be moved to a
/// new owner (a restarted encoder continues where the last one stopped).
#[derive(Debug)]
pub struct PacketWriter {
    ring: Arc<PacketRing>,
}

impl PacketWriter {
    /// Publishes a packet and returns its sequence number.
    pub fn publish(&mut self, pts: u64, flags: u8, epoch: u32, payload: &[u8]) -> Result<u64, PacketTooLarge> {
        if payload.len() > MAX_PACKET_LEN {
            return Err(PacketTooLarge {
                len: payload.len(),
                max: MAX_PACKET_LEN,
            });
        }
        let ring = &*self.ring;
        let seq = ring.head.load(Ordering::Relaxed);
        let slot = &ring.slots[(seq % ring.capacity() as u64) as usize];
        slot.stamp.store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.pts.store(pts, Ordering::Relaxed);
        slot.flags_len
            .store((u32::from(flags) << 16) | payload.len() as u32, Ordering::Relaxed);
        slot.epoch.store(epoch, Ordering::Relaxed);
        for (word, chunk) in slot.payload.iter().zip(payload.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        slot.stamp.store(2 * seq + 2, Ordering::Release);
        ring.head.store(seq + 1, Ordering::Release);
        Ok(seq)
    }

    pub fn ring(&self) -> &Arc<PacketRing> {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_ring_is_sized_in_milliseconds_and_keeps_order() {
        let (mut producer, mut consumer) = pcm_ring(100, 7);
        assert_eq!(producer.capacity_frames(), 5);
        assert_eq!((producer.generation(), consumer.generation()), (7, 7));
        let mut frame = PcmFrame::default();
        for pts in 0..5 {
            frame.pts = pts;
            producer.push(&frame).unwrap();
        }
        assert_eq!(producer.push(&frame), Err(RingFull));
        let mut out = PcmFrame::default();
        for pts in 0..5 {
            assert!(consumer.pop_into(&mut out));
            assert_eq!(out.pts, pts);
        }
        assert!(!consumer.pop_into(&mut out));
    }

    #[test]
    fn packet_ring_reports_not_yet_ready_and_overwritten() {
        let (mut writer, ring) = PacketRing::with_capacity(4);
        let mut buf = PacketBuf::default();
        assert_eq!(ring.read(0, &mut buf), ReadOutcome::NotYet);
        writer.publish(960, 1, 3, b"hello").unwrap();
        let ReadOutcome::Ready(meta) = ring.read(0, &mut buf) else {
            panic!("packet 0 is ready");
        };
        assert_eq!(
            meta,
            PacketMeta {
                seq: 0,
                pts: 960,
                flags: 1,
                epoch: 3,
                len: 5
            }
        );
        assert_eq!(buf.as_slice(meta.len), b"hello");
        for seq in 1..10u64 {
            writer.publish(seq * 960, 0, 3, &[seq as u8; 300]).unwrap();
        }
        assert_eq!(ring.read(0, &mut buf), ReadOutcome::Overwritten { oldest: 7 });
        let ReadOutcome::Ready(meta) = ring.read(9, &mut buf) else {
            panic!("packet 9 is ready");
        };
        assert_eq!(buf.as_slice(meta.len), &[9u8; 300][..]);
    }

    #[test]
    fn packet_larger_than_a_slot_is_refused() {
        let (mut writer, _ring) = PacketRing::with_capacity(4);
        let error = writer.publish(0, 0, 0, &[0; MAX_PACKET_LEN + 1]).unwrap_err();
        assert_eq!(error.len, MAX_PACKET_LEN + 1);
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_packet() {
        let (mut writer, ring) = PacketRing::with_capacity(16);
        const PACKETS: u64 = 100_000;
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    let mut buf = PacketBuf::default();
                    let mut seq = 0;
                    let mut read = 0u64;
                    while seq < PACKETS {
                        match ring.read(seq, &mut buf) {
                            ReadOutcome::Ready(meta) => {
                                assert_eq!(meta.pts, seq * 960);
                                let payload = buf.as_slice(meta.len);
                                assert_eq!(payload.len(), 1 + (seq % 400) as usize);
                                assert!(payload.iter().all(|b| *b == seq as u8), "torn packet {seq}");
                                seq += 1;
                                read += 1;
                            }
                            ReadOutcome::NotYet => std::hint::spin_loop(),
                            ReadOutcome::Overwritten { oldest } => seq = oldest.max(seq + 1),
                        }
                    }
                    read
                })
            })
            .collect();
        for seq in 0..PACKETS {
            let payload = [seq as u8; 400];
            writer
                .publish(seq * 960, 0, 0, &payload[..1 + (seq % 400) as usize])
                .unwrap();
        }
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    }
}
