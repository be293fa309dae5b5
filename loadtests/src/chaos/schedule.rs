//! The kill schedule: which actor dies when, and how, drawn from the seed.
//!
//! Kills are spread at random over the faults phase, at least [`MIN_SPACING`] apart and
//! not in its first or last [`EDGE`]. The first twelve kills (or all of them, when
//! fewer) cover every actor kind, and the first two already cover both modes; with
//! twelve or more kills every kind dies at least once by each mode.

use std::time::Duration;

use serde::Serialize;

use super::rng::SplitMix64;

/// Shortest time between two kills.
pub const MIN_SPACING: Duration = Duration::from_millis(500);
/// No kill in the first or last this much of the faults phase.
pub const EDGE: Duration = Duration::from_millis(500);

/// The station actors the engine can kill, plus one listener session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Scheduler,
    Generator,
    Mixer,
    Encoder,
    EventWriter,
    Listener,
}

impl ActorKind {
    pub const ALL: [Self; 6] = [
        Self::Scheduler,
        Self::Generator,
        Self::Mixer,
        Self::Encoder,
        Self::EventWriter,
        Self::Listener,
    ];

    /// The name in the chaos request and in the `actor` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Generator => "generator",
            Self::Mixer => "mixer",
            Self::Encoder => "encoder",
            Self::EventWriter => "event_writer",
            Self::Listener => "listener",
        }
    }

    /// Whether a kill of this actor may cost listeners a short, flagged gap. The others
    /// must not be heard at all.
    pub fn may_skip_audio(self) -> bool {
        matches!(self, Self::Mixer | Self::Encoder)
    }
}

/// How the actor dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMode {
    Stop,
    Panic,
}

impl KillMode {
    pub const ALL: [Self; 2] = [Self::Stop, Self::Panic];

    pub fn name(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Panic => "panic",
        }
    }
}

/// One kill of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedKill {
    /// Position in the schedule, from 0.
    pub index: usize,
    /// Time from the start of the faults phase.
    #[serde(rename = "at_ms", serialize_with = "millis")]
    pub at: Duration,
    pub actor: ActorKind,
    pub mode: KillMode,
}

fn millis<S: serde::Serializer>(at: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(at.as_millis()).unwrap_or(u64::MAX))
}

/// Why no schedule fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{kills} kills do not fit in {duration_ms} ms at {spacing_ms} ms apart (at most {max} fit)"
    )]
    TooDense {
        kills: usize,
        duration_ms: u64,
        spacing_ms: u64,
        max: usize,
    },
}

/// Most kills that fit in a faults phase of `duration`.
pub fn max_kills(duration: Duration) -> usize {
    if duration < EDGE * 2 {
        return 0;
    }
    let usable = duration - EDGE * 2;
    (usable.as_millis() / MIN_SPACING.as_millis()) as usize + 1
}

/// The schedule for `seed`: `kills` kills over a faults phase of `duration`, in time order.
pub fn plan(
    seed: u64,
    kills: usize,
    duration: Duration,
) -> Result<Vec<PlannedKill>, ScheduleError> {
    let max = max_kills(duration);
    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let spacing_ms = MIN_SPACING.as_millis() as u64;
    if kills > max {
        return Err(ScheduleError::TooDense {
            kills,
            duration_ms,
            spacing_ms,
            max,
        });
    }
    if kills == 0 {
        return Ok(Vec::new());
    }
    let mut rng = SplitMix64::new(seed);
    // Draw the free time between kills, then lay the kills out with the spacing added.
    let edge_ms = EDGE.as_millis() as u64;
    let free_ms = duration_ms - 2 * edge_ms - (kills as u64 - 1) * spacing_ms;
    let mut offsets: Vec<u64> = (0..kills).map(|_| rng.below(free_ms + 1)).collect();
    offsets.sort_unstable();
    let mut victims = victims(&mut rng, kills);
    rng.shuffle(&mut victims);
    Ok(offsets
        .into_iter()
        .zip(victims)
        .enumerate()
        .map(|(index, (offset, (actor, mode)))| PlannedKill {
            index,
            at: Duration::from_millis(edge_ms + offset + index as u64 * spacing_ms),
            actor,
            mode,
        })
        .collect())
}

/// Which actor dies how, in no particular order yet: every kind once with alternating
/// modes, then every kind once more with the other mode, then random picks.
fn victims(rng: &mut SplitMix64, kills: usize) -> Vec<(ActorKind, KillMode)> {
    let mut kinds = ActorKind::ALL;
    rng.shuffle(&mut kinds);
    let first_mode = usize::from(rng.coin());
    let mut every: Vec<(ActorKind, KillMode)> = Vec::with_capacity(12);
    for round in 0..2 {
        for (position, kind) in kinds.iter().enumerate() {
            let mode = KillMode::ALL[(position + first_mode + round) % 2];
            every.push((*kind, mode));
        }
    }
    let mut victims: Vec<(ActorKind, KillMode)> = every.into_iter().take(kills).collect();
    while victims.len() < kills {
        let actor = ActorKind::ALL[rng.below(ActorKind::ALL.len() as u64) as usize];
        let mode = KillMode::ALL[usize::from(rng.coin())];
        victims.push((actor, mode));
    }
    victims
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn same_seed_gives_the_same_schedule() {
        let first = plan(1234, 100, FIVE_MINUTES).unwrap();
        let second = plan(1234, 100, FIVE_MINUTES).unwrap();
        assert_eq!(first, second);
        let other = plan(1235, 100, FIVE_MINUTES).unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn twelve_or_more_kills_cover_every_kind_in_both_modes() {
        for seed in 0..200 {
            for kills in [12, 13, 40, 100] {
                let schedule = plan(seed, kills, FIVE_MINUTES).unwrap();
                let pairs: BTreeSet<(ActorKind, KillMode)> = schedule
                    .iter()
                    .map(|kill| (kill.actor, kill.mode))
                    .collect();
                assert_eq!(pairs.len(), 12, "seed {seed}, {kills} kills: {pairs:?}");
            }
        }
    }

    #[test]
    fn fewer_kills_still_cover_as_many_kinds_and_both_modes_as_they_can() {
        for seed in 0..200 {
            for kills in 2..12 {
                let schedule = plan(seed, kills, FIVE_MINUTES).unwrap();
                let kinds: BTreeSet<ActorKind> = schedule.iter().map(|kill| kill.actor).collect();
                let modes: BTreeSet<KillMode> = schedule.iter().map(|kill| kill.mode).collect();
                assert_eq!(kinds.len(), kills.min(6), "seed {seed}, {kills} kills");
                assert_eq!(modes.len(), 2, "seed {seed}, {kills} kills");
            }
        }
    }

    #[test]
    fn kills_are_in_order_spaced_and_inside_the_phase() {
        for seed in 0..200 {
            let schedule = plan(seed, 100, FIVE_MINUTES).unwrap();
            assert_eq!(schedule.len(), 100);
            for (index, kill) in schedule.iter().enumerate() {
                assert_eq!(kill.index, index);
                assert!(
                    kill.at >= EDGE && kill.at <= FIVE_MINUTES - EDGE,
                    "{kill:?}"
                );
            }
            for pair in schedule.windows(2) {
                assert!(pair[1].at - pair[0].at >= MIN_SPACING, "{pair:?}");
            }
        }
    }

    #[test]
    fn the_densest_schedule_that_fits_is_evenly_spaced() {
        let duration = Duration::from_secs(10);
        let max = max_kills(duration);
        assert_eq!(max, 19);
        let schedule = plan(5, max, duration).unwrap();
        assert!(
            schedule
                .windows(2)
                .all(|pair| pair[1].at - pair[0].at == MIN_SPACING)
        );
        assert_eq!(
            plan(5, max + 1, duration),
            Err(ScheduleError::TooDense {
                kills: 20,
                duration_ms: 10_000,
                spacing_ms: 500,
                max: 19
            })
        );
    }

    #[test]
    fn no_kills_and_tiny_phases_are_handled() {
        assert_eq!(plan(1, 0, Duration::ZERO), Ok(Vec::new()));
        assert_eq!(max_kills(Duration::from_millis(999)), 0);
        assert_eq!(max_kills(Duration::from_secs(1)), 1);
        assert_eq!(plan(1, 1, Duration::from_secs(1)).unwrap()[0].at, EDGE);
    }

    #[test]
    fn names_match_the_chaos_request_and_metric_labels() {
        let names: Vec<&str> = ActorKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            [
                "scheduler",
                "generator",
                "mixer",
                "encoder",
                "event_writer",
                "listener"
            ]
        );
        assert_eq!(
            serde_json::to_string(&ActorKind::EventWriter).unwrap(),
            "\"event_writer\""
        );
        assert!(ActorKind::Mixer.may_skip_audio() && !ActorKind::Listener.may_skip_audio());
    }
}
