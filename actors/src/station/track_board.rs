//! What is on air and what comes next, keyed by the epoch the mixer reports.
//!
//! The scheduler posts a track here when it queues it; the mixer only reports
//! epochs (integers) so that it never touches this board. Listener sessions and the
//! API read it when the epoch they see changes: off the real-time path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use sonicforge_engine::generate::Track;

/// How many tracks the board remembers (queued ones and recent ones).
const BOARD_TRACKS: usize = 32;

/// What listeners are told about a track.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrackInfo {
    pub track_id: String,
    pub title: String,
    pub prompt: String,
    pub generator: String,
    pub genre: String,
    pub bpm: f32,
    pub key: String,
    pub duration_ms: u64,
    /// What mastering did to the track before it went on air.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mastering: Option<sonicforge_engine::events::MasteringStats>,
    /// The media library id of a track played from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The artist, from a file's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    /// The playlist the track was scheduled from; `None` for requests and jingles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playlist: Option<String>,
    /// Why it plays: "rotation", "request" or "jingle".
    pub scheduled_as: &'static str,
}

impl TrackInfo {
    /// A track's information with the statistics of its mastering.
    pub fn mastered(track: &Track, stats: &sonicforge_engine::master::MasteringStats) -> Self {
        Self {
            mastering: Some(stats.into()),
            ..Self::of(track)
        }
    }

    pub fn of(track: &Track) -> Self {
        Self {
            track_id: track.id.clone(),
            title: track.title.clone(),
            prompt: track.prompt.clone(),
            generator: track.generator.to_string(),
            genre: track.style.genre.name().to_string(),
            bpm: track.style.bpm,
            key: track.style.key.to_string(),
            duration_ms: track.duration().as_millis() as u64,
            mastering: None,
            file: None,
            artist: None,
            playlist: None,
            scheduled_as: "rotation",
        }
    }
}

/// A track on air, with the sample timestamp at which it took over.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NowPlaying {
    #[serde(flatten)]
    pub track: TrackInfo,
    pub started_pts: u64,
}

/// Tracks by epoch, and the epoch on air.
#[derive(Debug, Default)]
pub struct TrackBoard {
    tracks: RwLock<VecDeque<(u32, Arc<TrackInfo>)>>,
    on_air_epoch: AtomicU32,
    on_air_since_pts: AtomicU64,
}

impl TrackBoard {
    /// Records a track queued for air under `epoch`.
    pub fn post(&self, epoch: u32, info: TrackInfo) {
        let mut tracks = self.tracks.write().unwrap_or_else(PoisonError::into_inner);
        if tracks.len() == BOARD_TRACKS {
            tracks.pop_front();
        }
        tracks.push_back((epoch, Arc::new(info)));
    }

    /// The track queued under `epoch`, if the board still holds it.
    pub fn get(&self, epoch: u32) -> Option<Arc<TrackInfo>> {
        let tracks = self.tracks.read().unwrap_or_else(PoisonError::into_inner);
        tracks
            .iter()
            .rev()
            .find(|(e, _)| *e == epoch)
            .map(|(_, info)| Arc::clone(info))
    }

    /// Called by the mixer's actor (off the frame loop) when the epoch on air changes.
    pub fn set_on_air(&self, epoch: u32, since_pts: u64) {
        self.on_air_since_pts.store(since_pts, Ordering::Relaxed);
        self.on_air_epoch.store(epoch, Ordering::Release);
    }

    pub fn on_air_epoch(&self) -> u32 {
        self.on_air_epoch.load(Ordering::Acquire)
    }

    /// Sample timestamp at which the epoch on air took over.
    pub fn on_air_since_pts(&self) -> u64 {
        self.on_air_since_pts.load(Ordering::Relaxed)
    }

    /// The track on air, or `None` while the fallback loop plays.
    pub fn now_playing(&self) -> Option<NowPlaying> {
        let epoch = self.on_air_epoch();
        let info = self.get(epoch)?;
        Some(NowPlaying {
            track: (*info).clone(),
            started_pts: self.on_air_since_pts.load(Ordering::Relaxed),
        })
    }

    /// Forgets tracks queued after the one on air with an epoch below `epoch`: the
    /// mixer drops them unplayed.
    pub fn forget_queued_before(&self, epoch: u32) {
        let on_air = self.on_air_epoch();
        let mut tracks = self.tracks.write().unwrap_or_else(PoisonError::into_inner);
        tracks.retain(|(e, _)| *e <= on_air || *e >= epoch);
    }

    /// Tracks queued after the one on air, in play order (requests first).
    pub fn up_next(&self) -> Vec<Arc<TrackInfo>> {
        let epoch = self.on_air_epoch();
        let tracks = self.tracks.read().unwrap_or_else(PoisonError::into_inner);
        let mut next: Vec<Arc<TrackInfo>> = tracks
            .iter()
            .filter(|(e, _)| *e > epoch)
            .map(|(_, info)| Arc::clone(info))
            .collect();
        next.sort_by_key(|info| info.scheduled_as != "request");
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> TrackInfo {
        TrackInfo {
            track_id: id.into(),
            title: id.into(),
            prompt: "lofi".into(),
            generator: "procedural".into(),
            genre: "lofi".into(),
            bpm: 80.0,
            key: "A minor".into(),
            duration_ms: 1000,
            mastering: None,
            file: None,
            artist: None,
            playlist: None,
            scheduled_as: "rotation",
        }
    }

    #[test]
    fn board_reports_on_air_and_up_next() {
        let board = TrackBoard::default();
        assert!(board.now_playing().is_none());
        board.post(1, info("a"));
        board.post(2, info("b"));
        board.post(3, info("c"));
        board.set_on_air(1, 960);
        let now = board.now_playing().unwrap();
        assert_eq!(now.track.track_id, "a");
        assert_eq!(now.started_pts, 960);
        let next: Vec<_> = board.up_next().iter().map(|t| t.track_id.clone()).collect();
        assert_eq!(next, vec!["b", "c"]);
        board.post(4, info("d"));
        board.forget_queued_before(4);
        let next: Vec<_> = board.up_next().iter().map(|t| t.track_id.clone()).collect();
        assert_eq!(next, vec!["d"]);
        assert!(board.now_playing().is_some());
    }

    #[test]
    fn board_forgets_the_oldest_tracks() {
        let board = TrackBoard::default();
        for epoch in 1..=(BOARD_TRACKS as u32 + 5) {
            board.post(epoch, info(&epoch.to_string()));
        }
        assert!(board.get(1).is_none());
        assert!(board.get(BOARD_TRACKS as u32 + 5).is_some());
    }
}
