//! Overload is shed, not queued (SPEC §7): each process bounds the requests it works on at once,
//! and each API key may be held to a rate. A request beyond either limit is answered at once
//! (503 or 429 with `Retry-After`) instead of waiting in a queue that only grows: a POS terminal
//! that is told to come back in a second does better than one whose request times out after
//! ten, and the requests that are accepted stay fast.
//!
//! Both services use the same two pieces; each maps a refusal to its own error body.
//! Metrics: `<service>_requests_in_flight` (gauge), `<service>_requests_shed_total{reason}`
//! with reason `in_flight` or `rate_limit`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// What a shed request is told to wait before retrying, at least.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The bound on requests in flight in one process.
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
    service: &'static str,
}

/// A request's place among those in flight; dropping it frees the place.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    gauge: metrics::Gauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl InFlight {
    /// At most `limit` requests at once (`0`: no bound); `service` prefixes the metric names.
    pub fn new(limit: usize, service: &'static str) -> Self {
        let limit = if limit == 0 { Semaphore::MAX_PERMITS } else { limit };
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            service,
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A place for one more request, or `None` when every place is taken (counted as shed).
    pub fn try_admit(&self) -> Option<Admitted> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                let gauge = metrics::gauge!(format!("{}_requests_in_flight", self.service));
                gauge.increment(1.0);
                Some(Admitted {
                    _permit: permit,
                    gauge,
                })
            }
            Err(_) => {
                shed(self.service, "in_flight");
                None
            }
        }
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
        let in_flight = InFlight::new(2, "test");
        let a = in_flight.try_admit().expect("first place");
        let _b = in_flight.try_admit().expect("second place");
        assert!(in_flight.try_admit().is_none(), "a third request is shed");
        drop(a);
        assert!(in_flight.try_admit().is_some(), "a freed place is taken again");
    }

    #[test]
    fn zero_means_unbounded() {
        let in_flight = InFlight::new(0, "test");
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
