//! Overload is shed, not queued (SPEC §7): each process bounds the requests it works on at once,
//! and each API key may be held to a rate. A request beyond either limit is answered at once
//! (503 or 429 with `Retry-After`) instead of waiting in a queue that only grows: a POS terminal
//! that is told to come back in a second does better than one whose request times out after
//! ten, and the requests that are accepted stay fast.
//!
//! Both services use the same two pieces; each maps a refusal to its own error body.
//! Metrics: `<service>_requests_in_flight` and `<service>_requests_in_flight_bound` (gauges),
//! `<service>_requests_shed_total{reason}` with reason `in_flight` or `rate_limit`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// What a shed request is told to wait before retrying, at least.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The bound on requests in flight in one process: a fixed count, or one that follows latency.
///
/// With a latency target the bound works like TCP's congestion window (AIMD): a request that
/// took longer than the target cuts the bound by a quarter, at most once for the requests
/// admitted under the same bound (those admitted before the cut say nothing about the new
/// one), and every request answered in time raises it by `1 / bound`, up to the configured
/// count (so a quiet spell after a storm restores it too, before the next burst). Requests
/// beyond the bound would wait inside the process (for a database connection, a lock, a CPU);
/// fewer of them at once answer sooner, so on a slow or noisy machine the accepted ones stay
/// near the target instead of queueing, and the bound climbs back when the machine recovers.
/// In equilibrium about one request in `bound² / 4` is slower than the target: the target
/// sits near the p99.
#[derive(Clone)]
pub struct InFlight {
    shared: Arc<Shared>,
}

struct Shared {
    service: &'static str,
    in_flight_gauge: metrics::Gauge,
    bound_gauge: metrics::Gauge,
    /// Requests being worked on.
    busy: AtomicUsize,
    /// The bound they are admitted under (`usize::MAX`: none).
    bound: AtomicUsize,
    /// Bumped by every cut: a request remembers the one it was admitted in.
    generation: AtomicU64,
    aimd: Option<Mutex<Aimd>>,
}

/// A request's place among those in flight; dropping it frees the place and, under a latency
/// target, tells the bound how long the request took.
pub struct Admitted {
    shared: Arc<Shared>,
    started: Instant,
    generation: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.busy.fetch_sub(1, Ordering::AcqRel);
        shared.in_flight_gauge.decrement(1.0);
        let Some(aimd) = &shared.aimd else {
            return;
        };
        let mut aimd = aimd.lock().unwrap_or_else(PoisonError::into_inner);
        let current = shared.generation.load(Ordering::Acquire);
        let cut = aimd.observe(self.started.elapsed(), self.generation == current);
        if cut {
            shared.generation.fetch_add(1, Ordering::AcqRel);
        }
        let bound = aimd.bound();
        shared.bound.store(bound, Ordering::Release);
        shared.bound_gauge.set(bound as f64);
    }
}

impl InFlight {
    /// At most `limit` requests at once (`0`: no bound); with `latency_target`, fewer while
    /// requests take longer than it (see the type). `service` prefixes the metric names.
    pub fn new(limit: usize, latency_target: Option<Duration>, service: &'static str) -> Self {
        let aimd = match (limit, latency_target) {
            (0, _) | (_, None) => None,
            (limit, Some(target)) => Some(Mutex::new(Aimd::new(limit, target))),
        };
        let bound = if limit == 0 { usize::MAX } else { limit };
        // The handles are taken once, from the installed recorder (they would be no-ops if taken
        // before it), not formatted and looked up again on every request.
        crate::metrics::handle();
        let bound_gauge = metrics::gauge!(format!("{service}_requests_in_flight_bound"));
        bound_gauge.set(bound as f64);
        Self {
            shared: Arc::new(Shared {
                service,
                in_flight_gauge: metrics::gauge!(format!("{service}_requests_in_flight")),
                bound_gauge,
                busy: AtomicUsize::new(0),
                bound: AtomicUsize::new(bound),
                generation: AtomicU64::new(0),
                aimd,
            }),
        }
    }

    /// The bound now.
    pub fn limit(&self) -> usize {
        self.shared.bound.load(Ordering::Acquire)
    }

    /// A place for one more request, or `None` when every place is taken (counted as shed).
    pub fn try_admit(&self) -> Option<Admitted> {
        let shared = &self.shared;
        let generation = shared.generation.load(Ordering::Acquire);
        let bound = shared.bound.load(Ordering::Acquire);
        let busy = shared.busy.fetch_add(1, Ordering::AcqRel);
        if busy >= bound {
            shared.busy.fetch_sub(1, Ordering::AcqRel);
            shed(shared.service, "in_flight");
            return None;
        }
        shared.in_flight_gauge.increment(1.0);
        Some(Admitted {
            shared: Arc::clone(shared),
            started: Instant::now(),
            generation,
        })
    }
}

/// The arithmetic of the latency-following bound, apart from clocks and atomics. The bound is
/// kept in thousandths of a place, so that the additive increase of `1 / bound` adds up.
#[derive(Debug)]
struct Aimd {
    milli: u64,
    min: u64,
    max: u64,
    target: Duration,
}

impl Aimd {
    fn new(max: usize, target: Duration) -> Self {
        let max = u64::try_from(max).unwrap_or(u64::MAX / 1_000_000) * 1_000;
        Self {
            milli: max,
            // Never fewer than the cores' worth of work, so a burst of slow requests cannot
            // starve the process.
            min: max.min(4_000),
            max,
            target,
        }
    }

    /// One answered request: it took `elapsed` and was admitted under the bound in force now
    /// (`current`). `true` if the bound was cut (to three quarters).
    fn observe(&mut self, elapsed: Duration, current: bool) -> bool {
        if elapsed > self.target {
            if current && self.milli > self.min {
                self.milli = (self.milli * 3 / 4).max(self.min);
                return true;
            }
        } else {
            self.milli = (self.milli + 1_000_000 / self.milli).min(self.max);
        }
        false
    }

    fn bound(&self) -> usize {
        usize::try_from(self.milli / 1_000).unwrap_or(usize::MAX)
    }
}

/// A rate per API key, with a burst of one second's worth.
pub struct KeyRate {
    limiter: Option<DefaultKeyedRateLimiter<Uuid>>,
    service: &'static str,
}

impl KeyRate {
    /// `per_second` requests per key and second (`0`: no limit).
    pub fn new(per_second: u32, service: &'static str) -> Self {
        Self {
            limiter: NonZeroU32::new(per_second).map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
            service,
        }
    }

    /// `Ok` if `key` may make one more request now; else how long until it may (counted as
    /// shed).
    pub fn check(&self, key: Uuid) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key).map_err(|not_until| {
            shed(self.service, "rate_limit");
            not_until.wait_time_from(DefaultClock::default().now())
        })?;
        // Keys that have not been seen for a while cost nothing to forget.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}

/// Whole seconds for a `Retry-After` header: at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.max(RETRY_AFTER).as_secs_f64().ceil() as u64
}

fn shed(service: &'static str, reason: &'static str) {
    metrics::counter!(format!("{service}_requests_shed_total"), "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let in_flight = InFlight::new(2, None, "test");
        let a = in_flight.try_admit().expect("first place");
        let _b = in_flight.try_admit().expect("second place");
        assert!(in_flight.try_admit().is_none(), "a third request is shed");
        drop(a);
        assert!(in_flight.try_admit().is_some(), "a freed place is taken again");
    }

    const TARGET: Duration = Duration::from_millis(100);
    const SLOW: Duration = Duration::from_millis(150);
    const FAST: Duration = Duration::from_millis(20);

    #[test]
    fn answers_within_the_target_keep_the_configured_bound() {
        let mut aimd = Aimd::new(32, TARGET);
        for _ in 0..1_000 {
            assert!(!aimd.observe(FAST, true));
        }
        assert_eq!(aimd.bound(), 32, "never above the configured count");
    }

    #[test]
    fn a_slow_answer_cuts_the_bound_once_for_the_requests_admitted_under_it() {
        let mut aimd = Aimd::new(32, TARGET);
        assert!(aimd.observe(SLOW, true), "the first slow answer cuts");
        assert_eq!(aimd.bound(), 24);
        // The other requests admitted under 32 come back slow too: they say nothing about 24.
        for _ in 0..31 {
            assert!(!aimd.observe(SLOW, false));
        }
        assert_eq!(aimd.bound(), 24);
        assert!(aimd.observe(SLOW, true), "one admitted under 24 cuts again");
        assert_eq!(aimd.bound(), 18);
    }

    #[test]
    fn the_bound_never_falls_below_its_floor_and_climbs_back_when_answers_are_fast_again() {
        let mut aimd = Aimd::new(32, TARGET);
        for _ in 0..20 {
            aimd.observe(SLOW, true);
        }
        assert_eq!(aimd.bound(), 4, "the floor");
        let answers = (1..)
            .find(|_| {
                aimd.observe(FAST, true);
                aimd.bound() == 32
            })
            .unwrap();
        // Additive: about (32² − 4²) / 2 answers, a second of full load.
        assert!(
            (400..=600).contains(&answers),
            "back to 32 after {answers} answers"
        );
    }

    #[test]
    fn a_slow_request_makes_room_for_fewer() {
        let in_flight = InFlight::new(8, Some(Duration::from_millis(1)), "test");
        let slow = in_flight.try_admit().expect("a place");
        std::thread::sleep(Duration::from_millis(5));
        drop(slow);
        assert_eq!(in_flight.limit(), 6);
        let held: Vec<_> = (0..8).map(|_| in_flight.try_admit()).collect();
        assert_eq!(held.iter().filter(|admitted| admitted.is_some()).count(), 6);
    }

    #[test]
    fn zero_means_unbounded() {
        let in_flight = InFlight::new(0, None, "test");
        let held: Vec<_> = (0..1_000).map(|_| in_flight.try_admit()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(KeyRate::new(0, "test").check(Uuid::new_v4()).is_ok());
    }

    #[test]
    fn a_key_over_its_rate_is_told_when_to_come_back_and_others_are_not_affected() {
        let rate = KeyRate::new(5, "test");
        let busy = Uuid::new_v4();
        for _ in 0..5 {
            assert!(rate.check(busy).is_ok(), "a second's burst is allowed");
        }
        let wait = rate
            .check(busy)
            .expect_err("the sixth request in the same instant is refused");
        assert!(
            wait <= Duration::from_millis(200),
            "one more request in 1/5 s: {wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        assert!(rate.check(Uuid::new_v4()).is_ok(), "another key has its own rate");
    }
}
