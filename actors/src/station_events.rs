//! What happens on each station, announced off the audio path: the track on air, the
//! listener count and whether the station is up.
//!
//! One watcher task per station looks at the track board, the listener gauges and the
//! station's health every [`POLL_EVERY`] (reads of atomics and a short read lock the
//! audio path never takes) and publishes each change as a [`StationEvent`] on a
//! bounded broadcast channel of the station and on one channel of all stations. The
//! event stream (`GET /api/stations/{id}/events`) and the webhooks subscribe to them.
//! Publishing never waits: a subscriber that falls more than [`CHANNEL_CAPACITY`]
//! events behind loses the oldest ones and is told so, and starts again from the
//! latest [`StationSnapshot`].

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::station::{NowPlaying, Station, unix_ms_now};

/// How often a station's watcher looks for changes.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// A listener-count event goes out at most this often per station.
pub const LISTENERS_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// Events a subscriber may fall behind before it loses the oldest.
pub const CHANNEL_CAPACITY: usize = 64;

/// Whether a station is on air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StationState {
    /// Started; no audio has reached the listeners yet.
    Starting,
    /// Audio reaches the listeners.
    Up,
    /// Restarts did not help: the fallback loop is held on air.
    Degraded,
    /// No audio reached the listeners for a second, or the station stopped.
    Down,
}

/// What changed on a station.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StationChange {
    /// The track on air changed; `None` while the fallback loop plays.
    TrackChange {
        now_playing: Option<Box<NowPlaying>>,
    },
    /// The number of listeners over all transports and renditions changed.
    Listeners { listeners: i64 },
    /// The station went up, down or degraded.
    State {
        state: StationState,
        previous: StationState,
    },
}

impl StationChange {
    /// The event's name in the event stream.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TrackChange { .. } => "track_change",
            Self::Listeners { .. } => "listeners",
            Self::State { .. } => "station",
        }
    }
}

/// One change of one station, numbered in the order the station's watcher saw them.
#[derive(Debug, Clone, Serialize)]
pub struct StationEvent {
    #[serde(serialize_with = "serialize_shared_str")]
    pub station: Arc<str>,
    /// Counts from 1 per station and process.
    pub seq: u64,
    /// When the watcher saw the change, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    #[serde(flatten)]
    pub change: StationChange,
}

fn serialize_shared_str<S: serde::Serializer>(
    value: &Arc<str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// A station's state as of its event `seq`, for subscribers that start or fall behind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationSnapshot {
    pub seq: u64,
    pub state: StationState,
    pub now_playing: Option<NowPlaying>,
    pub listeners: i64,
}

impl StationSnapshot {
    /// The snapshot as the changes that lead to it, for a subscriber that starts.
    pub fn as_changes(&self) -> [StationChange; 3] {
        [
            StationChange::State {
                state: self.state,
                previous: self.state,
            },
            StationChange::TrackChange {
                now_playing: self.now_playing.clone().map(Box::new),
            },
            StationChange::Listeners {
                listeners: self.listeners,
            },
        ]
    }
}

/// A subscription to one station: the latest snapshot and the changes after it.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: watch::Receiver<Arc<StationSnapshot>>,
    pub events: broadcast::Receiver<Arc<StationEvent>>,
}

#[derive(Debug)]
struct StationChannel {
    events: broadcast::Sender<Arc<StationEvent>>,
    snapshot: watch::Receiver<Arc<StationSnapshot>>,
}

/// The change announcements of every station.
#[derive(Debug)]
pub struct StationEvents {
    stations: RwLock<BTreeMap<String, StationChannel>>,
    all: broadcast::Sender<Arc<StationEvent>>,
}

impl Default for StationEvents {
    fn default() -> Self {
        Self {
            stations: RwLock::default(),
            all: broadcast::channel(CHANNEL_CAPACITY * 4).0,
        }
    }
}

impl StationEvents {
    /// Starts watching `station` (a task on the current actix system) until it stops.
    pub fn watch(self: &Arc<Self>, station: Arc<Station>) {
        let mut watcher = Watcher::new(&station, self.all.clone());
        let channel = StationChannel {
            events: watcher.events.clone(),
            snapshot: watcher.snapshot.subscribe(),
        };
        self.stations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(station.id().to_string(), channel);
        let hub = Arc::downgrade(self);
        actix::spawn(async move {
            let mut every = tokio::time::interval(POLL_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                watcher.look(&station);
                if station.is_stopping() {
                    break;
                }
            }
            // Subscribers see the end of the station's channel.
            if let Some(hub) = hub.upgrade() {
                let mut stations = hub.stations.write().unwrap_or_else(PoisonError::into_inner);
                if stations
                    .get(station.id())
                    .is_some_and(|channel| channel.events.same_channel(&watcher.events))
                {
                    stations.remove(station.id());
                }
            }
        });
    }

    /// The snapshot and the changes of station `id`, or `None` for an unknown station.
    pub fn subscribe(&self, id: &str) -> Option<Subscription> {
        let stations = self.stations.read().unwrap_or_else(PoisonError::into_inner);
        let channel = stations.get(id)?;
        // Subscribed before the snapshot is read, so that no change falls between them.
        let events = channel.events.subscribe();
        Some(Subscription {
            snapshot: channel.snapshot.clone(),
            events,
        })
    }

    /// The changes of every station.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<StationEvent>> {
        self.all.subscribe()
    }
}

/// The state of one station's watcher.
#[derive(Debug)]
struct Watcher {
    station: Arc<str>,
    events: broadcast::Sender<Arc<StationEvent>>,
    all: broadcast::Sender<Arc<StationEvent>>,
    snapshot: watch::Sender<Arc<StationSnapshot>>,
    seq: u64,
    state: StationState,
    epoch: Option<u32>,
    now_playing: Option<NowPlaying>,
    listeners: i64,
    listeners_sent_at: Option<Instant>,
}

impl Watcher {
    fn new(station: &Station, all: broadcast::Sender<Arc<StationEvent>>) -> Self {
        let snapshot = StationSnapshot {
            seq: 0,
            state: StationState::Starting,
            now_playing: None,
            listeners: 0,
        };
        Self {
            station: Arc::from(station.id()),
            events: broadcast::channel(CHANNEL_CAPACITY).0,
            all,
            snapshot: watch::channel(Arc::new(snapshot)).0,
            seq: 0,
            state: StationState::Starting,
            epoch: None,
            now_playing: None,
            listeners: 0,
            listeners_sent_at: None,
        }
    }

    /// Publishes whatever changed since the last look.
    fn look(&mut self, station: &Station) {
        let state = self.state_of(station);
        if state != self.state {
            let previous = std::mem::replace(&mut self.state, state);
            self.publish(StationChange::State { state, previous });
        }
        let epoch = station.board.on_air_epoch();
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            let now_playing = station.now_playing();
            if now_playing != self.now_playing {
                self.now_playing.clone_from(&now_playing);
                self.publish(StationChange::TrackChange {
                    now_playing: now_playing.map(Box::new),
                });
            }
        }
        let listeners = station.listener_count();
        let may_send = self
            .listeners_sent_at
            .is_none_or(|sent| sent.elapsed() >= LISTENERS_AT_MOST_EVERY);
        if listeners != self.listeners && may_send {
            self.listeners = listeners;
            self.listeners_sent_at = Some(Instant::now());
            self.publish(StationChange::Listeners { listeners });
        }
    }

    fn state_of(&self, station: &Station) -> StationState {
        if station.is_stopping() {
            StationState::Down
        } else if station.is_degraded() {
            StationState::Degraded
        } else if station.is_audio_flowing() {
            StationState::Up
        } else if self.state == StationState::Starting {
            StationState::Starting
        } else {
            StationState::Down
        }
    }

    fn publish(&mut self, change: StationChange) {
        self.seq += 1;
        let event = Arc::new(StationEvent {
            station: Arc::clone(&self.station),
            seq: self.seq,
            unix_ms: unix_ms_now(),
            change,
        });
        self.snapshot.send_replace(Arc::new(StationSnapshot {
            seq: self.seq,
            state: self.state,
            now_playing: self.now_playing.clone(),
            listeners: self.listeners,
        }));
        // No subscriber is not an error; a full channel drops its oldest event.
        let _ = self.events.send(Arc::clone(&event));
        let _ = self.all.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_serialize_as_their_payloads() {
        let change = StationChange::State {
            state: StationState::Up,
            previous: StationState::Starting,
        };
        assert_eq!(change.name(), "station");
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            serde_json::json!({ "state": "up", "previous": "starting" })
        );
        let event = StationEvent {
            station: Arc::from("main"),
            seq: 3,
            unix_ms: 1000,
            change: StationChange::Listeners { listeners: 2 },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({ "station": "main", "seq": 3, "unix_ms": 1000, "listeners": 2 })
        );
        let track = StationChange::TrackChange { now_playing: None };
        assert_eq!(track.name(), "track_change");
        assert_eq!(
            serde_json::to_value(&track).unwrap(),
            serde_json::json!({ "now_playing": null })
        );
    }

    #[test]
    fn a_snapshot_reads_as_the_changes_that_lead_to_it() {
        let snapshot = StationSnapshot {
            seq: 9,
            state: StationState::Degraded,
            now_playing: None,
            listeners: 4,
        };
        let names: Vec<_> = snapshot.as_changes().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["station", "track_change", "listeners"]);
    }
}
