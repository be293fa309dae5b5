//! Listener caps: at most `max_listeners` listeners in all and
//! `max_listeners_per_station` per station. A listener reserves a [`ListenerSlot`]
//! before its stream starts and gives it back when the slot is dropped; reserving is
//! a compare-and-swap on atomic counters, so the counts stay exact under concurrency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// Why a listener was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    #[error("the station has its maximum of {limit} listeners")]
    Station { limit: u32 },
    #[error("the server has its maximum of {limit} listeners")]
    Total { limit: u32 },
}

/// The listener counts and their caps (0: no cap).
#[derive(Debug, Default)]
pub struct ListenerCaps {
    max_total: u32,
    max_per_station: u32,
    total: Arc<AtomicU32>,
    per_station: RwLock<HashMap<String, Arc<AtomicU32>>>,
}

/// One reserved place; dropping it frees the place.
#[derive(Debug)]
pub struct ListenerSlot {
    total: Arc<AtomicU32>,
    station: Arc<AtomicU32>,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.station.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Adds one to `counter` unless that would pass `limit` (0: no limit).
fn try_increment(counter: &AtomicU32, limit: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (limit == 0 || count < limit).then(|| count.saturating_add(1))
        })
        .is_ok()
}

impl ListenerCaps {
    pub fn new(max_total: u32, max_per_station: u32) -> Self {
        Self {
            max_total,
            max_per_station,
            ..Self::default()
        }
    }

    fn station_counter(&self, station: &str) -> Arc<AtomicU32> {
        if let Some(counter) = self
            .per_station
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(station)
        {
            return Arc::clone(counter);
        }
        let mut map = self
            .per_station
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(station.to_string()).or_default())
    }

    /// Reserves a place for one listener of `station`.
    pub fn reserve(&self, station: &str) -> Result<ListenerSlot, CapReached> {
        let station_count = self.station_counter(station);
        if !try_increment(&station_count, self.max_per_station) {
            return Err(CapReached::Station {
                limit: self.max_per_station,
            });
        }
        if !try_increment(&self.total, self.max_total) {
            station_count.fetch_sub(1, Ordering::AcqRel);
            return Err(CapReached::Total {
                limit: self.max_total,
            });
        }
        Ok(ListenerSlot {
            total: Arc::clone(&self.total),
            station: station_count,
        })
    }

    /// Listeners holding a place now, in all and on `station`.
    pub fn counts(&self, station: &str) -> (u32, u32) {
        (
            self.total.load(Ordering::Acquire),
            self.station_counter(station).load(Ordering::Acquire),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_and_total_caps_turn_listeners_away() {
        let caps = ListenerCaps::new(3, 2);
        let a1 = caps.reserve("a").unwrap();
        let _a2 = caps.reserve("a").unwrap();
        assert_eq!(
            caps.reserve("a").unwrap_err(),
            CapReached::Station { limit: 2 }
        );
        let _b1 = caps.reserve("b").unwrap();
        assert_eq!(
            caps.reserve("b").unwrap_err(),
            CapReached::Total { limit: 3 }
        );
        assert_eq!(caps.counts("b"), (3, 1), "a refused reserve holds nothing");
        drop(a1);
        let _b2 = caps.reserve("b").unwrap();
        assert_eq!(caps.counts("a"), (3, 1));
    }

    #[test]
    fn zero_means_no_cap() {
        let caps = ListenerCaps::new(0, 0);
        let slots: Vec<_> = (0..1000).map(|_| caps.reserve("a").unwrap()).collect();
        assert_eq!(caps.counts("a"), (1000, 1000));
        drop(slots);
        assert_eq!(caps.counts("a"), (0, 0));
    }

    #[test]
    fn counts_are_exact_under_concurrency() {
        let caps = Arc::new(ListenerCaps::new(100, 60));
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let caps = Arc::clone(&caps);
                std::thread::spawn(move || {
                    let station = if n % 2 == 0 { "even" } else { "odd" };
                    let mut held = Vec::new();
                    for round in 0..2000 {
                        if let Ok(slot) = caps.reserve(station) {
                            held.push(slot);
                        }
                        if round % 3 == 0 {
                            held.pop();
                        }
                        let (total, _) = caps.counts(station);
                        assert!(total <= 100, "total {total} passed the cap");
                    }
                    held
                })
            })
            .collect();
        let held: Vec<ListenerSlot> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let (total, even) = caps.counts("even");
        let (_, odd) = caps.counts("odd");
        assert_eq!(total as usize, held.len(), "the count is the places held");
        assert_eq!(even + odd, total);
        assert!(even <= 60 && odd <= 60);
    }
}
