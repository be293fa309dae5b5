//! The packet broadcast ring from an encoder to its listeners.
//!
//! Each slot is a seqlock built only of atomics. Its `stamp` is odd while the writer
//! rewrites the slot and `2 * seq + 2` once packet `seq` is complete in it.
//!
//! - The writer stores the odd stamp, issues a release fence, stores the fields and
//!   payload words with relaxed stores, then stores the even stamp with release and
//!   advances `head` with release.
//! - A reader loads `head` (acquire) to learn whether `seq` exists, loads the stamp
//!   (acquire) and checks it is the one for `seq`, copies the fields and words with
//!   relaxed loads, issues an acquire fence and loads the stamp again. If any word
//!   it copied came from a later write, the fence pair makes that write's odd stamp
//!   (or a later one) visible to the second load, so a torn copy is never reported
//!   as `Ready`.
//! - A reader that finds a later packet's stamp in its slot was lapped. That stamp
//!   shows how far the writer has got, which can be further than the reader's view
//!   of `head` (nothing orders the two for it), so `Overwritten { oldest }` is taken
//!   from both and always lies past the packet asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::codec::opus::MAX_PACKET_LEN;

const PAYLOAD_WORDS: usize = MAX_PACKET_LEN.div_ceil(8);

/// One packet slot; see the module documentation for the stamp protocol.
#[derive(Debug)]
struct Slot {
    stamp: AtomicU64,
    pts: AtomicU64,
    /// Flags in bits 16-23, payload length in bits 0-15.
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

const fn complete_stamp(seq: u64) -> u64 {
    2 * seq + 2
}

/// What a reader learns about a packet besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Position in the ring's sequence (0 for the first packet published).
    pub seq: u64,
    /// First sample of the packet, counted at 48 kHz since the station started.
    pub pts: u64,
    /// Wire flags (see `codec::wire`), for example a discontinuity.
    pub flags: u8,
    /// The track on air when the packet was encoded.
    pub epoch: u32,
    /// Payload length in bytes.
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

/// A reader's buffer for one packet's payload; reused for every read.
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
    /// The first `len` bytes: pass the `len` of the [`PacketMeta`] that the read
    /// returned.
    pub fn as_slice(&self, len: usize) -> &[u8] {
        &self.bytes[..len.min(MAX_PACKET_LEN)]
    }
}

/// The packet is larger than a slot holds; nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet of {len} bytes exceeds the ring's {max} bytes per packet")]
pub struct PacketTooLarge {
    pub len: usize,
    pub max: usize,
}

/// A broadcast ring of Opus packets: one writer, any number of readers, each
/// reading at its own sequence number. Shared through an `Arc`.
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

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Sequence number the next packet will get (packets published so far).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Oldest packet that is readable now. The slot of `head - capacity` is the
    /// one the writer rewrites next, so it is left out.
    pub fn oldest_readable(&self) -> u64 {
        self.head().saturating_sub(self.capacity() as u64 - 1)
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq % self.slots.len() as u64) as usize]
    }

    /// The outcome for a reader that found `stamp`, a later packet's, in its slot.
    /// The stamp proves the writer has reached at least `stamp / 2` (it is writing
    /// packet `s` at stamp `2s + 1`, done with it at `2s + 2`) even when this
    /// thread's view of `head` still lags behind, so `oldest` is always past the
    /// packet that was asked for.
    fn lapped(&self, stamp: u64) -> ReadOutcome {
        let writer_at = stamp / 2;
        ReadOutcome::Overwritten {
            oldest: self
                .oldest_readable()
                .max(writer_at.saturating_sub(self.capacity() as u64 - 1)),
        }
    }

    /// Copies packet `seq` into `out`. Never blocks, locks or allocates: a packet
    /// that the writer overwrites during the copy is reported as `Overwritten`.
    pub fn read(&self, seq: u64, out: &mut PacketBuf) -> ReadOutcome {
        if seq >= self.head() {
            return ReadOutcome::NotYet;
        }
        let slot = self.slot(seq);
        let expected = complete_stamp(seq);
        let stamp = slot.stamp.load(Ordering::Acquire);
        if stamp != expected {
            return self.lapped(stamp);
        }
        let pts = slot.pts.load(Ordering::Relaxed);
        let flags_len = slot.flags_len.load(Ordering::Relaxed);
        let epoch = slot.epoch.load(Ordering::Relaxed);
        // A torn length is caught by the stamp check below; bound it for the copy.
        let len = ((flags_len & 0xffff) as usize).min(MAX_PACKET_LEN);
        for (word, bytes) in slot.payload[..len.div_ceil(8)]
            .iter()
            .zip(out.bytes.chunks_exact_mut(8))
        {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        fence(Ordering::Acquire);
        let stamp = slot.stamp.load(Ordering::Relaxed);
        if stamp != expected {
            return self.lapped(stamp);
        }
        ReadOutcome::Ready(PacketMeta {
            seq,
            pts,
            flags: (flags_len >> 16) as u8,
            epoch,
            len,
        })
    }
}

/// The single writer of a [`PacketRing`]. It is not `Clone`; it can be moved to a
/// new owner (a restarted encoder continues the sequence where the last one
/// stopped).
#[derive(Debug)]
pub struct PacketWriter {
    ring: Arc<PacketRing>,
}

impl PacketWriter {
    /// Publishes a packet and returns its sequence number. Never blocks, locks or
    /// allocates; readers still on the oldest slot find it overwritten.
    pub fn publish(
        &mut self,
        pts: u64,
        flags: u8,
        epoch: u32,
        payload: &[u8],
    ) -> Result<u64, PacketTooLarge> {
        if payload.len() > MAX_PACKET_LEN {
            return Err(PacketTooLarge {
                len: payload.len(),
                max: MAX_PACKET_LEN,
            });
        }
        let ring = &*self.ring;
        // Only this writer stores `head`, so a relaxed load sees its own last store.
        let seq = ring.head.load(Ordering::Relaxed);
        let slot = ring.slot(seq);
        slot.stamp.store(complete_stamp(seq) - 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.pts.store(pts, Ordering::Relaxed);
        slot.flags_len.store(
            (u32::from(flags) << 16) | payload.len() as u32,
            Ordering::Relaxed,
        );
        slot.epoch.store(epoch, Ordering::Relaxed);
        for (word, chunk) in slot.payload.iter().zip(payload.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        slot.stamp.store(complete_stamp(seq), Ordering::Release);
        ring.head.store(seq + 1, Ordering::Release);
        Ok(seq)
    }

    /// The ring this writer publishes into.
    pub fn ring(&self) -> &Arc<PacketRing> {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packet the stress test publishes as `seq`: every field and byte is a
    /// function of `seq`, so a packet assembled from two writes cannot pass.
    fn expected_packet(seq: u64, payload: &mut [u8; MAX_PACKET_LEN]) -> (u64, u8, u32, usize) {
        let len = 1 + (seq.wrapping_mul(7919) % MAX_PACKET_LEN as u64) as usize;
        let mix = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for (i, byte) in payload[..len].iter_mut().enumerate() {
            *byte = (mix >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
        (seq * 960, (seq % 3) as u8, (seq / 50) as u32, len)
    }

    #[test]
    fn packet_ring_reports_not_yet_ready_and_overwritten() {
        let (mut writer, ring) = PacketRing::with_capacity(4);
        let mut buf = PacketBuf::default();
        assert_eq!((ring.head(), ring.oldest_readable()), (0, 0));
        assert_eq!(ring.read(0, &mut buf), ReadOutcome::NotYet);
        assert_eq!(writer.publish(960, 1, 3, b"hello").unwrap(), 0);
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
        assert_eq!(ring.read(1, &mut buf), ReadOutcome::NotYet);
        for seq in 1..10u64 {
            assert_eq!(
                writer.publish(seq * 960, 0, 3, &[seq as u8; 300]).unwrap(),
                seq
            );
        }
        assert_eq!((ring.head(), ring.oldest_readable()), (10, 7));
        assert_eq!(
            ring.read(0, &mut buf),
            ReadOutcome::Overwritten { oldest: 7 }
        );
        assert_eq!(
            ring.read(5, &mut buf),
            ReadOutcome::Overwritten { oldest: 7 }
        );
        for seq in 7..10u64 {
            let ReadOutcome::Ready(meta) = ring.read(seq, &mut buf) else {
                panic!("packet {seq} is ready");
            };
            assert_eq!((meta.seq, meta.pts, meta.len), (seq, seq * 960, 300));
            assert_eq!(buf.as_slice(meta.len), &[seq as u8; 300][..]);
        }
        assert_eq!(ring.read(10, &mut buf), ReadOutcome::NotYet);
    }

    #[test]
    fn shorter_packet_in_a_reused_slot_reads_back_exactly() {
        let (mut writer, ring) = PacketRing::with_capacity(2);
        let mut buf = PacketBuf::default();
        writer.publish(0, 0, 0, &[0xaa; MAX_PACKET_LEN]).unwrap();
        writer.publish(960, 0, 0, &[0xbb; 10]).unwrap();
        writer.publish(1920, 0, 0, &[0xcc; 3]).unwrap();
        let ReadOutcome::Ready(meta) = ring.read(2, &mut buf) else {
            panic!("packet 2 is ready");
        };
        assert_eq!(buf.as_slice(meta.len), &[0xcc; 3]);
        writer.publish(2880, 0, 0, &[]).unwrap();
        let ReadOutcome::Ready(meta) = ring.read(3, &mut buf) else {
            panic!("packet 3 is ready");
        };
        assert_eq!(meta.len, 0);
        assert!(buf.as_slice(meta.len).is_empty());
    }

    #[test]
    fn capacity_is_at_least_two_slots() {
        assert_eq!(PacketRing::with_capacity(0).1.capacity(), 2);
        assert_eq!(PacketRing::with_capacity(1).1.capacity(), 2);
        assert_eq!(PacketRing::with_capacity(250).1.capacity(), 250);
    }

    #[test]
    fn packet_larger_than_a_slot_is_refused() {
        let (mut writer, ring) = PacketRing::with_capacity(4);
        let error = writer
            .publish(0, 0, 0, &[0; MAX_PACKET_LEN + 1])
            .unwrap_err();
        assert_eq!(
            error,
            PacketTooLarge {
                len: MAX_PACKET_LEN + 1,
                max: MAX_PACKET_LEN
            }
        );
        assert_eq!(ring.head(), 0);
        assert_eq!(writer.publish(0, 0, 0, &[0; MAX_PACKET_LEN]).unwrap(), 0);
    }

    #[test]
    fn writer_moved_to_a_new_owner_continues_the_sequence() {
        let (mut writer, ring) = PacketRing::with_capacity(8);
        writer.publish(0, 0, 1, b"a").unwrap();
        writer.publish(960, 0, 1, b"b").unwrap();
        let writer = std::thread::spawn(move || {
            let mut writer = writer;
            assert!(Arc::ptr_eq(writer.ring(), &writer.ring));
            assert_eq!(writer.publish(1920, 0, 2, b"c").unwrap(), 2);
            writer
        })
        .join()
        .unwrap();
        assert!(Arc::ptr_eq(writer.ring(), &ring));
        let mut buf = PacketBuf::default();
        let ReadOutcome::Ready(meta) = ring.read(2, &mut buf) else {
            panic!("packet 2 is ready");
        };
        assert_eq!((meta.pts, meta.epoch), (1920, 2));
        assert_eq!(buf.as_slice(meta.len), b"c");
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_packet() {
        // Miri runs the same protocol on fewer packets, in a smaller ring so that
        // its scheduler still makes the writer lap the readers mid-copy.
        const PACKETS: u64 = if cfg!(miri) { 300 } else { 100_000 };
        const SLOTS: usize = if cfg!(miri) { 2 } else { 16 };
        const READERS: usize = 3;
        let (mut writer, ring) = PacketRing::with_capacity(SLOTS);
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    let mut buf = PacketBuf::default();
                    let mut expected = [0u8; MAX_PACKET_LEN];
                    let (mut seq, mut read, mut last) = (0, 0u64, None);
                    while seq < PACKETS {
                        match ring.read(seq, &mut buf) {
                            ReadOutcome::Ready(meta) => {
                                let (pts, flags, epoch, len) = expected_packet(seq, &mut expected);
                                assert_eq!(
                                    meta,
                                    PacketMeta {
                                        seq,
                                        pts,
                                        flags,
                                        epoch,
                                        len
                                    },
                                    "packet {seq}"
                                );
                                assert_eq!(
                                    buf.as_slice(meta.len),
                                    &expected[..len],
                                    "torn packet {seq}"
                                );
                                last = Some(seq);
                                seq += 1;
                                read += 1;
                            }
                            ReadOutcome::NotYet => std::thread::yield_now(),
                            ReadOutcome::Overwritten { oldest } => {
                                assert!(oldest > seq, "lapped at {seq}, oldest {oldest}");
                                seq = oldest;
                            }
                        }
                    }
                    (read, last)
                })
            })
            .collect();
        let mut payload = [0u8; MAX_PACKET_LEN];
        for seq in 0..PACKETS {
            let (pts, flags, epoch, len) = expected_packet(seq, &mut payload);
            assert_eq!(
                writer.publish(pts, flags, epoch, &payload[..len]).unwrap(),
                seq
            );
        }
        for reader in readers {
            let (read, last) = reader.join().unwrap();
            assert!(read > 0);
            // Nothing overwrites the last packet, so every reader gets it.
            assert_eq!(last, Some(PACKETS - 1));
        }
    }
}
