//! Time-based event ids: version-1 UUIDs, compatible with CQL `timeuuid`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::{Timestamp, Uuid};

/// 100 ns ticks from 1582-10-15 00:00 UTC to 1970-01-01 00:00 UTC.
const TICKS_BEFORE_UNIX_EPOCH: u64 = 0x01B2_1DD2_1381_4000;
/// 100 ns ticks per millisecond.
const TICKS_PER_MS: u64 = 10_000;
/// The clock sequence has 14 bits.
const MAX_CLOCK_SEQUENCE: u16 = (1 << 14) - 1;

/// The unique, time-ordered id of one play event: a version-1 UUID,
/// compatible with CQL `timeuuid`. Its text form is the usual hyphenated UUID,
/// which is also its serde form.
///
/// An id is taken when its event happens. It carries a 60-bit timestamp in
/// 100 ns ticks since 1582-10-15 (the Gregorian reform), a 14-bit clock
/// sequence and a 48-bit node id.
///
/// - The node id is random, drawn once per process, with the multicast bit set
///   as RFC 9562 asks of node ids that are not a network card's address. Two
///   processes therefore never share a node id in practice, even on one host.
/// - Within a process, the pair (timestamp, clock sequence) strictly increases
///   from one id to the next: the clock sequence restarts at zero on each new
///   tick and counts up for further ids within the same tick. When 16,384 ids
///   are taken within one tick, the generator borrows the next tick; when the
///   system clock steps backwards, ids go on counting from the last one taken
///   instead of repeating or going back. Ids are thus unique, and ordered as
///   they were taken: `Ord` compares the timestamp, then the clock sequence,
///   then the node id.
///
/// Taking an id takes a short process-wide lock and reads the system clock: it
/// belongs on the control path, never on the real-time audio path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = "uuid"))]
#[serde(into = "Uuid", try_from = "Uuid")]
pub struct EventId(Uuid);

impl EventId {
    /// A new id stamped with the current time.
    pub fn now() -> Self {
        generator().next(system_ticks())
    }

    /// The id as a UUID, e.g. to bind it as a CQL `timeuuid`.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// 100 ns ticks since 1582-10-15 00:00 UTC, the UUID's own time base.
    pub fn gregorian_ticks(&self) -> u64 {
        self.parts().0
    }

    /// The clock sequence that orders ids taken within the same 100 ns tick.
    pub fn clock_sequence(&self) -> u16 {
        self.parts().1
    }

    /// The random node id of the process that took this id.
    pub fn node_id(&self) -> [u8; 6] {
        let bytes = self.0.as_bytes();
        [
            bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ]
    }

    /// Milliseconds since the Unix epoch (0 for an instant before it).
    pub fn unix_ms(&self) -> u64 {
        self.gregorian_ticks()
            .saturating_sub(TICKS_BEFORE_UNIX_EPOCH)
            / TICKS_PER_MS
    }

    /// Nanoseconds since the Unix epoch, to the id's 100 ns resolution (0 for
    /// an instant before it).
    pub fn unix_nanos(&self) -> u128 {
        u128::from(
            self.gregorian_ticks()
                .saturating_sub(TICKS_BEFORE_UNIX_EPOCH),
        ) * 100
    }

    /// The instant the id was taken, to its 100 ns resolution.
    pub fn system_time(&self) -> SystemTime {
        let nanos = self.unix_nanos();
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        // The remainder is below one billion, so it fits.
        let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        UNIX_EPOCH
            .checked_add(Duration::new(secs, subsec))
            .unwrap_or(UNIX_EPOCH)
    }

    /// (ticks, clock sequence) read from the UUID's fields.
    fn parts(&self) -> (u64, u16) {
        // Construction guarantees version 1, so the timestamp is always there.
        self.0
            .get_timestamp()
            .map(|timestamp| timestamp.to_gregorian())
            .unwrap_or((0, 0))
    }

    pub(crate) fn from_parts(ticks: u64, clock_sequence: u16, node_id: &[u8; 6]) -> Self {
        Self(Uuid::new_v1(
            Timestamp::from_gregorian_time(ticks, clock_sequence),
            node_id,
        ))
    }
}

impl Ord for EventId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts()
            .cmp(&other.parts())
            .then_with(|| self.node_id().cmp(&other.node_id()))
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0.hyphenated())
    }
}

/// Why a UUID or a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    #[error("{text:?} is not a UUID")]
    Syntax { text: String },
    #[error("{uuid} is a version {version} UUID, not a time-based version 1 UUID")]
    NotTimeBased { uuid: Uuid, version: usize },
}

impl TryFrom<Uuid> for EventId {
    type Error = EventIdError;

    fn try_from(uuid: Uuid) -> Result<Self, Self::Error> {
        match uuid.get_version() {
            Some(uuid::Version::Mac) => Ok(Self(uuid)),
            _ => Err(EventIdError::NotTimeBased {
                uuid,
                version: uuid.get_version_num(),
            }),
        }
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl FromStr for EventId {
    type Err = EventIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::parse_str(text).map_err(|_| EventIdError::Syntax {
            text: text.chars().take(64).collect(),
        })?;
        Self::try_from(uuid)
    }
}

/// The process-wide id generator.
struct Generator {
    node_id: [u8; 6],
    last: Mutex<(u64, u16)>,
}

impl Generator {
    fn new() -> Self {
        let random = *Uuid::new_v4().as_bytes();
        // Bytes 10..16 of a version-4 UUID are all random.
        let mut node_id = [
            random[10], random[11], random[12], random[13], random[14], random[15],
        ];
        node_id[0] |= 0x01;
        Self {
            node_id,
            last: Mutex::new((0, 0)),
        }
    }

    /// The next id for a clock that reads `now_ticks`.
    fn next(&self, now_ticks: u64) -> EventId {
        // The guarded pair is always consistent, so a panic elsewhere while it
        // was held cannot have broken it.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (ticks, sequence) = next_stamp(*last, now_ticks);
        *last = (ticks, sequence);
        drop(last);
        EventId::from_parts(ticks, sequence, &self.node_id)
    }
}

/// The stamp after `last` for a clock that reads `now_ticks`: strictly greater
/// than `last` in (ticks, sequence) order.
fn next_stamp(last: (u64, u16), now_ticks: u64) -> (u64, u16) {
    let (last_ticks, last_sequence) = last;
    if now_ticks > last_ticks {
        (now_ticks, 0)
    } else if last_sequence < MAX_CLOCK_SEQUENCE {
        (last_ticks, last_sequence + 1)
    } else {
        (last_ticks + 1, 0)
    }
}

fn generator() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(Generator::new)
}

/// The system clock in 100 ns ticks since 1582-10-15.
fn system_ticks() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let ticks = since_epoch.as_secs() * 10_000_000 + u64::from(since_epoch.subsec_nanos() / 100);
    TICKS_BEFORE_UNIX_EPOCH + ticks
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_burst_of_100k_ids_is_unique_and_strictly_time_ordered() {
        let ids: Vec<EventId> = (0..100_000).map(|_| EventId::now()).collect();
        for pair in ids.windows(2) {
            assert!(
                pair[0] < pair[1],
                "{:?} is not before {:?}",
                pair[0],
                pair[1]
            );
            assert!(pair[0].gregorian_ticks() <= pair[1].gregorian_ticks());
        }
        let distinct: HashSet<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn ids_taken_on_many_threads_are_all_distinct() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..25_000).map(|_| EventId::now()).collect::<Vec<_>>()))
            .collect();
        let mut distinct = HashSet::new();
        for handle in handles {
            let ids = handle.join().unwrap();
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
            distinct.extend(ids);
        }
        assert_eq!(distinct.len(), 100_000);
    }

    #[test]
    fn ids_are_version_1_with_a_multicast_random_node_of_this_process() {
        let first = EventId::now();
        let second = EventId::now();
        assert_eq!(first.as_uuid().get_version_num(), 1);
        assert_eq!(first.as_uuid().get_variant(), uuid::Variant::RFC4122);
        assert_eq!(first.node_id(), second.node_id());
        assert_eq!(first.node_id()[0] & 0x01, 0x01);
        assert_eq!(first.as_uuid().get_node_id(), Some(first.node_id()));
    }

    #[test]
    fn the_timestamp_reads_back_as_the_time_the_id_was_taken() {
        let before = SystemTime::now();
        let id = EventId::now();
        let after = SystemTime::now();
        let floor_ms = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert!(u128::from(id.unix_ms()) >= floor_ms(before));
        assert!(u128::from(id.unix_ms()) <= floor_ms(after));
        assert_eq!(id.unix_nanos() / 1_000_000, u128::from(id.unix_ms()));
        assert_eq!(
            id.system_time()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
            id.unix_nanos()
        );
    }

    #[test]
    fn the_clock_sequence_counts_within_a_tick_and_restarts_on_the_next() {
        assert_eq!(next_stamp((100, 7), 101), (101, 0));
        assert_eq!(next_stamp((100, 7), 100), (100, 8));
    }

    #[test]
    fn a_full_clock_sequence_or_a_clock_stepping_back_borrows_the_next_tick() {
        assert_eq!(next_stamp((100, MAX_CLOCK_SEQUENCE), 100), (101, 0));
        assert_eq!(next_stamp((100, 3), 50), (100, 4));
        assert_eq!(next_stamp((100, MAX_CLOCK_SEQUENCE), 50), (101, 0));
    }

    #[test]
    fn parts_survive_the_uuid_layout() {
        let node = [0x01, 2, 3, 4, 5, 6];
        let id = EventId::from_parts(TICKS_BEFORE_UNIX_EPOCH + 12_345_678, 0x2ABC, &node);
        assert_eq!(id.gregorian_ticks(), TICKS_BEFORE_UNIX_EPOCH + 12_345_678);
        assert_eq!(id.clock_sequence(), 0x2ABC);
        assert_eq!(id.node_id(), node);
        assert_eq!(id.unix_ms(), 1_234);
    }

    #[test]
    fn text_and_serde_forms_round_trip_and_refuse_other_uuid_versions() {
        let id = EventId::now();
        assert_eq!(id.to_string().parse::<EventId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);

        let random = Uuid::new_v4();
        assert_eq!(
            random.to_string().parse::<EventId>(),
            Err(EventIdError::NotTimeBased {
                uuid: random,
                version: 4
            })
        );
        assert!(serde_json::from_str::<EventId>(&format!("\"{random}\"")).is_err());
        assert!(matches!(
            "not an id".parse::<EventId>(),
            Err(EventIdError::Syntax { .. })
        ));
    }
}
