//! Putting what listeners heard down to the kills that caused it.
//!
//! A glitch belongs to the most recent kill made at most [`ATTRIBUTION_WINDOW`] before
//! its packet arrived; a glitch with no such kill is a failure of its own. A listener
//! session that ended belongs to the listener kill that named it (or, when the engine
//! named no session, to the first unclaimed ending within the window after the kill);
//! every other ending before the run's end is an unexpected disconnect.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::schedule::ActorKind;
use super::track::{Glitch, GlitchKind};

/// How long after a kill its effects may show.
pub const ATTRIBUTION_WINDOW: Duration = Duration::from_secs(2);
/// Longest gap a mixer or encoder kill may cost a listener.
pub const MAX_SKIP_MS: f64 = 100.0;

/// A kill the engine accepted, and when the request for it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillTime {
    pub index: usize,
    pub actor: ActorKind,
    pub at: Instant,
}

/// The kill `at` belongs to: the latest of `kills` (sorted by time) made at or before
/// `at`, and no more than [`ATTRIBUTION_WINDOW`] before it.
pub fn attribute(kills: &[KillTime], at: Instant) -> Option<&KillTime> {
    let made_before = kills.partition_point(|kill| kill.at <= at);
    let kill = kills.get(made_before.checked_sub(1)?)?;
    (at.duration_since(kill.at) <= ATTRIBUTION_WINDOW).then_some(kill)
}

/// Glitches of one kind of kill (or of none).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Forward timestamp jumps, flagged or not.
    pub gaps: u64,
    pub unflagged_gaps: u64,
    pub largest_gap_ms: f64,
    /// Packets with the discontinuity flag: flagged gaps and flags without a gap.
    pub flags: u64,
    pub flags_without_gap: u64,
    pub backwards: u64,
    pub silence_runs: u64,
    pub longest_silence_ms: f64,
    /// Kills that at least one listener heard (a gap, flag or silence).
    pub kills_heard: u64,
    #[serde(skip)]
    heard: BTreeSet<usize>,
}

impl Tally {
    fn add(&mut self, kind: GlitchKind, kill: Option<usize>) {
        match kind {
            GlitchKind::Gap { ms, flagged } => {
                self.gaps += 1;
                self.largest_gap_ms = self.largest_gap_ms.max(ms);
                if flagged {
                    self.flags += 1;
                } else {
                    self.unflagged_gaps += 1;
                }
            }
            GlitchKind::FlagWithoutGap => {
                self.flags += 1;
                self.flags_without_gap += 1;
            }
            GlitchKind::Backwards { .. } => self.backwards += 1,
            GlitchKind::Silence { ms } => {
                self.silence_runs += 1;
                self.longest_silence_ms = self.longest_silence_ms.max(ms);
            }
        }
        if let Some(kill) = kill
            && self.heard.insert(kill)
        {
            self.kills_heard += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gaps + self.flags + self.backwards + self.silence_runs == 0
    }

    /// What in this tally breaks the rules for kills of `kind`: no kill may cost a gap
    /// without the flag, a flag without a gap, a repeated timestamp or more than 100 ms
    /// of silence; only mixer and encoder kills may cost a flagged gap, of at most 100 ms.
    pub fn violations(&self, kind: ActorKind) -> Vec<String> {
        let mut found = Vec::new();
        if kind.may_skip_audio() {
            if self.largest_gap_ms > MAX_SKIP_MS {
                found.push(format!(
                    "a gap of {:.0} ms (at most {MAX_SKIP_MS:.0} allowed)",
                    self.largest_gap_ms
                ));
            }
        } else if self.gaps > 0 {
            found.push(format!(
                "{} gaps (largest {:.0} ms)",
                self.gaps, self.largest_gap_ms
            ));
        }
        if self.unflagged_gaps > 0 {
            found.push(format!("{} gaps without the flag", self.unflagged_gaps));
        }
        if self.flags_without_gap > 0 {
            found.push(format!("{} flags without a gap", self.flags_without_gap));
        }
        if self.backwards > 0 {
            found.push(format!(
                "{} repeated or backward timestamps",
                self.backwards
            ));
        }
        if self.silence_runs > 0 {
            found.push(format!(
                "{} silence runs over 100 ms (longest {:.0} ms)",
                self.silence_runs, self.longest_silence_ms
            ));
        }
        found
    }
}

/// Every glitch of the run, by the kind of kill it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    pub per_kind: BTreeMap<ActorKind, Tally>,
    pub unattributed: Tally,
}

impl Attribution {
    pub fn record(&mut self, kills: &[KillTime], glitch: &Glitch) {
        match attribute(kills, glitch.at) {
            Some(kill) => self
                .per_kind
                .entry(kill.actor)
                .or_default()
                .add(glitch.kind, Some(kill.index)),
            None => self.unattributed.add(glitch.kind, None),
        }
    }
}

/// A listener kill the engine accepted: when it was asked for and which session it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerKill {
    pub at: Instant,
    pub session: Option<u64>,
}

/// A connection that ended before the run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub slot: u32,
    pub session: Option<u64>,
    pub at: Instant,
    /// The ending's label (see [`crate::listener::EndReason::label`]).
    pub reason: String,
    /// What went wrong, for protocol errors.
    pub detail: Option<String>,
}

/// Endings sorted out: the ones listener kills explain, and the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnects {
    /// Endings a listener kill explains.
    pub killed: u64,
    /// Endings nothing explains, with their reasons.
    pub unexpected: Vec<Ending>,
    /// Listener kills whose session none of this driver's connections saw end.
    pub kills_without_ending: u64,
}

/// Matches endings to listener kills: by session id where the engine named one, else
/// the first unclaimed ending within the window after the kill.
pub fn sort_disconnects(endings: &[Ending], kills: &[ListenerKill]) -> Disconnects {
    let mut claimed = vec![false; endings.len()];
    let mut result = Disconnects::default();
    let mut by_time = Vec::new();
    for kill in kills {
        match kill.session {
            Some(session) => {
                let found = endings
                    .iter()
                    .enumerate()
                    .find(|(i, ending)| !claimed[*i] && ending.session == Some(session));
                match found {
                    Some((i, _)) => {
                        claimed[i] = true;
                        result.killed += 1;
                    }
                    None => result.kills_without_ending += 1,
                }
            }
            None => by_time.push(kill.at),
        }
    }
    by_time.sort_unstable();
    for kill_at in by_time {
        let found = endings
            .iter()
            .enumerate()
            .filter(|(i, ending)| {
                !claimed[*i]
                    && ending.at >= kill_at
                    && ending.at.duration_since(kill_at) <= ATTRIBUTION_WINDOW
            })
            .min_by_key(|(_, ending)| ending.at);
        match found {
            Some((i, _)) => {
                claimed[i] = true;
                result.killed += 1;
            }
            None => result.kills_without_ending += 1,
        }
    }
    result.unexpected = endings
        .iter()
        .zip(claimed)
        .filter(|(_, claimed)| !claimed)
        .map(|(ending, _)| ending.clone())
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn kills(start: Instant) -> Vec<KillTime> {
        vec![
            KillTime {
                index: 0,
                actor: ActorKind::Mixer,
                at: ms(start, 1_000),
            },
            KillTime {
                index: 1,
                actor: ActorKind::Generator,
                at: ms(start, 1_500),
            },
            KillTime {
                index: 2,
                actor: ActorKind::Encoder,
                at: ms(start, 10_000),
            },
        ]
    }

    #[test]
    fn a_glitch_belongs_to_the_most_recent_kill_within_two_seconds() {
        let start = Instant::now();
        let kills = kills(start);
        let actor = |at| attribute(&kills, ms(start, at)).map(|kill| kill.actor);
        assert_eq!(actor(999), None);
        assert_eq!(actor(1_000), Some(ActorKind::Mixer));
        assert_eq!(actor(1_499), Some(ActorKind::Mixer));
        // The generator kill is more recent, so it takes the blame.
        assert_eq!(actor(1_600), Some(ActorKind::Generator));
        assert_eq!(actor(3_500), Some(ActorKind::Generator));
        assert_eq!(actor(3_501), None);
        assert_eq!(actor(11_000), Some(ActorKind::Encoder));
        assert_eq!(attribute(&[], start), None);
    }

    #[test]
    fn glitches_far_from_any_kill_are_unattributed() {
        let start = Instant::now();
        let kills = kills(start);
        let mut attribution = Attribution::default();
        let gap = GlitchKind::Gap {
            ms: 40.0,
            flagged: true,
        };
        for (at, kind) in [
            (200, gap),
            (1_100, gap),
            (1_120, gap),
            (5_000, GlitchKind::Silence { ms: 300.0 }),
        ] {
            attribution.record(
                &kills,
                &Glitch {
                    at: ms(start, at),
                    kind,
                },
            );
        }
        let mixer = &attribution.per_kind[&ActorKind::Mixer];
        assert_eq!((mixer.gaps, mixer.flags, mixer.kills_heard), (2, 2, 1));
        assert_eq!(attribution.unattributed.gaps, 1);
        assert_eq!(attribution.unattributed.silence_runs, 1);
        assert!(!attribution.unattributed.is_empty());
    }

    fn tally_of(kinds: &[GlitchKind]) -> Tally {
        let mut tally = Tally::default();
        for (kill, kind) in kinds.iter().enumerate() {
            tally.add(*kind, Some(kill));
        }
        tally
    }

    #[test]
    fn mixer_and_encoder_kills_may_cost_a_flagged_gap_of_at_most_100_ms() {
        let short = tally_of(&[
            GlitchKind::Gap {
                ms: 40.0,
                flagged: true,
            },
            GlitchKind::Gap {
                ms: 100.0,
                flagged: true,
            },
        ]);
        assert!(short.violations(ActorKind::Mixer).is_empty());
        assert!(short.violations(ActorKind::Encoder).is_empty());
        let long = tally_of(&[GlitchKind::Gap {
            ms: 120.0,
            flagged: true,
        }]);
        assert_eq!(
            long.violations(ActorKind::Encoder),
            ["a gap of 120 ms (at most 100 allowed)"]
        );
    }

    #[test]
    fn a_gap_without_the_flag_or_a_flag_without_a_gap_fails_every_kind() {
        let unflagged = tally_of(&[GlitchKind::Gap {
            ms: 20.0,
            flagged: false,
        }]);
        assert_eq!(
            unflagged.violations(ActorKind::Mixer),
            ["1 gaps without the flag"]
        );
        let stray_flag = tally_of(&[GlitchKind::FlagWithoutGap]);
        assert_eq!(
            stray_flag.violations(ActorKind::Encoder),
            ["1 flags without a gap"]
        );
        assert_eq!(stray_flag.violations(ActorKind::Scheduler).len(), 1);
    }

    #[test]
    fn other_kills_must_not_be_heard_at_all() {
        let flagged_gap = tally_of(&[GlitchKind::Gap {
            ms: 20.0,
            flagged: true,
        }]);
        for kind in [
            ActorKind::Scheduler,
            ActorKind::Generator,
            ActorKind::EventWriter,
            ActorKind::Listener,
        ] {
            assert_eq!(
                flagged_gap.violations(kind),
                ["1 gaps (largest 20 ms)"],
                "{kind:?}"
            );
        }
        let silence = tally_of(&[GlitchKind::Silence { ms: 250.0 }]);
        assert_eq!(
            silence.violations(ActorKind::Mixer),
            ["1 silence runs over 100 ms (longest 250 ms)"]
        );
        let repeat = tally_of(&[GlitchKind::Backwards { ms: 20.0 }]);
        assert_eq!(
            repeat.violations(ActorKind::Encoder),
            ["1 repeated or backward timestamps"]
        );
        assert!(Tally::default().violations(ActorKind::Generator).is_empty());
    }

    fn ending(slot: u32, session: Option<u64>, at: Instant) -> Ending {
        Ending {
            slot,
            session,
            at,
            reason: "server_eof".into(),
            detail: None,
        }
    }

    #[test]
    fn killed_sessions_are_matched_by_id_and_other_endings_are_unexpected() {
        let start = Instant::now();
        let endings = [
            ending(0, Some(11), ms(start, 1_010)),
            ending(1, Some(12), ms(start, 1_020)),
            ending(2, Some(13), ms(start, 5_000)),
        ];
        let kills = [
            ListenerKill {
                at: ms(start, 1_000),
                session: Some(12),
            },
            ListenerKill {
                at: ms(start, 4_990),
                session: Some(99),
            },
        ];
        let sorted = sort_disconnects(&endings, &kills);
        assert_eq!(sorted.killed, 1);
        assert_eq!(sorted.kills_without_ending, 1);
        let slots: Vec<u32> = sorted.unexpected.iter().map(|e| e.slot).collect();
        assert_eq!(slots, [0, 2]);
    }

    #[test]
    fn kills_naming_no_session_claim_the_first_ending_in_the_window() {
        let start = Instant::now();
        let endings = [
            ending(0, None, ms(start, 900)),
            ending(1, None, ms(start, 1_300)),
            ending(2, None, ms(start, 1_200)),
            ending(3, None, ms(start, 9_000)),
        ];
        let kills = [
            ListenerKill {
                at: ms(start, 1_000),
                session: None,
            },
            ListenerKill {
                at: ms(start, 6_000),
                session: None,
            },
        ];
        let sorted = sort_disconnects(&endings, &kills);
        assert_eq!((sorted.killed, sorted.kills_without_ending), (1, 1));
        let slots: Vec<u32> = sorted.unexpected.iter().map(|e| e.slot).collect();
        assert_eq!(slots, [0, 1, 3]);
    }
}
