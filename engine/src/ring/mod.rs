//! Lock-free rings between the real-time stages.
//!
//! - [`pcm_ring`]: mixer -> encoder, an rtrb single-producer single-consumer ring of
//!   whole 20 ms frames, sized in milliseconds and tagged with a generation so that a
//!   restarted actor can tell its ring from a stale one.
//! - [`PacketRing`]: encoder -> listeners, one writer and any number of readers,
//!   each with a cursor of its own. Slots are seqlocks made only of atomics: the
//!   writer never waits, and a reader that is lapped finds out and skips forward.
//!
//! Neither allocates, locks or blocks after construction.

mod packet;
mod pcm;

pub use self::packet::{
    PacketBuf, PacketMeta, PacketRing, PacketTooLarge, PacketWriter, ReadOutcome,
};
pub use self::pcm::{PcmConsumer, PcmFrame, PcmProducer, RingFull, pcm_ring};
