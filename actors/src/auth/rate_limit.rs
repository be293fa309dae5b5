//! Connection attempts per client address: a token bucket per address.
//!
//! Buckets live in two generations of maps. Lookups take a bucket from the current
//! generation, or move it there from the previous one. The current generation becomes
//! the previous one (and the old previous one is dropped) when it has been current for
//! the time a bucket takes to refill, or when it holds half the tracked addresses. So
//! memory stays bounded under a flood of addresses, and a bucket is forgotten only
//! after a generation without attempts: normally full again by then, under a flood
//! possibly early (the flooding addresses then start again from a full burst).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; the next attempt is allowed after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

#[derive(Debug)]
struct Generations {
    current: HashMap<IpAddr, Bucket>,
    previous: HashMap<IpAddr, Bucket>,
    current_since: Instant,
}

/// Token buckets of `rate` attempts per second and `burst` at once, per address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Addresses one generation holds at most.
    generation_capacity: usize,
    /// Time an empty bucket takes to refill.
    refill_time: Duration,
    generations: Mutex<Generations>,
}

impl RateLimiter {
    /// `rate` attempts per second (at least 1), `burst` at once (at least 1), at most
    /// `tracked` addresses remembered (at least 2).
    pub fn new(rate: u32, burst: u32, tracked: usize) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            generation_capacity: (tracked / 2).max(1),
            refill_time: Duration::from_secs_f64((burst / rate).max(1.0)),
            generations: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
                current_since: Instant::now(),
            }),
        }
    }

    /// Takes one attempt from `address`'s bucket at `now`.
    pub fn check(&self, address: IpAddr, now: Instant) -> RateDecision {
        let mut generations = self
            .generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generations = &mut *generations;
        if !generations.current.contains_key(&address) {
            let carried = generations.previous.remove(&address);
            if generations.current.len() >= self.generation_capacity
                || now.saturating_duration_since(generations.current_since) >= self.refill_time
            {
                generations.previous = std::mem::take(&mut generations.current);
                generations.current_since = now;
            }
            if let Some(bucket) = carried {
                generations.current.insert(address, bucket);
            }
        }
        let bucket = generations.current.entry(address).or_insert(Bucket {
            tokens: self.burst,
            refilled_at: now,
        });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            RateDecision::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            RateDecision::Limited {
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }

    /// Addresses remembered now (both generations).
    pub fn tracked(&self) -> usize {
        let generations = self
            .generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        generations.current.len() + generations.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn burst_is_allowed_then_limited_with_a_retry_time() {
        let limiter = RateLimiter::new(10, 5, 1000);
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(address(1), now), RateDecision::Allowed);
        }
        let RateDecision::Limited { retry_after } = limiter.check(address(1), now) else {
            panic!("the sixth attempt at once must be limited");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // Other addresses have their own bucket.
        assert_eq!(limiter.check(address(2), now), RateDecision::Allowed);
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let limiter = RateLimiter::new(10, 2, 1000);
        let start = Instant::now();
        assert_eq!(limiter.check(address(1), start), RateDecision::Allowed);
        assert_eq!(limiter.check(address(1), start), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(address(1), start),
            RateDecision::Limited { .. }
        ));
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check(address(1), later), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(address(1), later),
            RateDecision::Limited { .. }
        ));
        // Never more than the burst, however long the wait.
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(limiter.check(address(1), much_later), RateDecision::Allowed);
        assert_eq!(limiter.check(address(1), much_later), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(address(1), much_later),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let limiter = RateLimiter::new(5, 5, 1000);
        let now = Instant::now();
        for n in 0..100_000 {
            limiter.check(address(n), now);
            assert!(limiter.tracked() <= 1000);
        }
    }

    #[test]
    fn busy_address_keeps_its_bucket_across_generations() {
        let limiter = RateLimiter::new(1, 3, 100);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(address(7), now), RateDecision::Allowed);
        }
        // Other addresses fill the current generation, which rotates; the busy
        // address is found in the previous one and stays limited.
        for n in 100..150 {
            limiter.check(address(n), now);
        }
        assert!(matches!(
            limiter.check(address(7), now),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let limiter = RateLimiter::new(10, 10, 1000);
        let start = Instant::now();
        for n in 0..50 {
            limiter.check(address(n), start);
        }
        let later = start + Duration::from_secs(5);
        limiter.check(address(1000), later);
        let even_later = later + Duration::from_secs(5);
        limiter.check(address(1001), even_later);
        assert_eq!(limiter.tracked(), 2);
    }
}
