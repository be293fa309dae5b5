//! Restart intensity: how many restarts a supervisor allows within a time window
//! before it escalates (Erlang/OTP's `intensity` and `period`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `max_restarts` restarts within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartIntensity {
    pub max_restarts: u32,
    pub within: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within: Duration::from_secs(30),
        }
    }
}

/// The restarts a supervisor made within its window.
#[derive(Debug, Clone)]
pub struct RestartLog {
    intensity: RestartIntensity,
    restarts: VecDeque<Instant>,
}

impl RestartLog {
    pub fn new(intensity: RestartIntensity) -> Self {
        Self {
            intensity,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; `false` when it is one more than the intensity allows.
    pub fn record(&mut self, now: Instant) -> bool {
        self.forget_older_than_window(now);
        self.restarts.push_back(now);
        self.restarts.len() <= self.intensity.max_restarts as usize
    }

    /// Restarts within the window that ends at `now`.
    pub fn recent(&mut self, now: Instant) -> usize {
        self.forget_older_than_window(now);
        self.restarts.len()
    }

    /// Forgets every restart: the slate is clean after an escalation.
    pub fn clear(&mut self) {
        self.restarts.clear();
    }

    fn forget_older_than_window(&mut self, now: Instant) {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) < self.intensity.within {
                break;
            }
            self.restarts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_restarts: u32, within_secs: u64) -> RestartLog {
        RestartLog::new(RestartIntensity {
            max_restarts,
            within: Duration::from_secs(within_secs),
        })
    }

    #[test]
    fn restarts_up_to_the_intensity_are_allowed_and_one_more_is_not() {
        let mut log = log(5, 30);
        let start = Instant::now();
        for i in 0..5 {
            assert!(log.record(start + Duration::from_secs(i)), "restart {i}");
        }
        assert!(!log.record(start + Duration::from_secs(5)));
    }

    #[test]
    fn restarts_older_than_the_window_no_longer_count() {
        let mut log = log(2, 10);
        let start = Instant::now();
        assert!(log.record(start));
        assert!(log.record(start + Duration::from_secs(1)));
        // The first restart left the window at start + 10 s.
        assert!(log.record(start + Duration::from_secs(10)));
        assert_eq!(log.recent(start + Duration::from_secs(10)), 2);
        assert_eq!(log.recent(start + Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_cleared_log_allows_the_full_intensity_again() {
        let mut log = log(1, 30);
        let start = Instant::now();
        assert!(log.record(start));
        assert!(!log.record(start));
        log.clear();
        assert!(log.record(start));
    }
}
