//! Latency histograms and error counts.
//!
//! Latencies are kept in microseconds in HDR histograms (3 significant digits), so p99.9 of a
//! million samples costs a few kilobytes and no sorting.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records exactly (60 s); longer ones are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // Cannot fail: the bounds are constants that satisfy hdrhistogram's rules.
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Cannot fail: both histograms have the same bounds.
        self.0.add(&other.0).expect("histograms with equal bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Summary in milliseconds (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: round3(self.0.mean() / 1000.0),
            p50_ms: round3(ms(0.50)),
            p90_ms: round3(ms(0.90)),
            p99_ms: round3(ms(0.99)),
            p999_ms: round3(ms(0.999)),
            max_ms: round3(self.0.max() as f64 / 1000.0),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounded to one decimal, for rates.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Operations per second over `elapsed`.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        round1(count as f64 / secs)
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// Everything measured during the measured window of a run.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// All successful operations.
    pub all: Latencies,
    /// Successful operations per kind (`purchase`, `refund`, ...).
    pub by_kind: BTreeMap<&'static str, Latencies>,
    /// Failed operations per error kind (shed requests are not failures: see `shed`).
    pub errors: BTreeMap<String, u64>,
    /// Requests the platform refused because it was overloaded (503 `overloaded`) or the key
    /// was over its rate (429 `rate_limited`), per kind: answered at once and meant to be
    /// retried later, so counted apart from errors.
    pub shed: BTreeMap<String, u64>,
    /// How long the shed requests waited for their refusal.
    pub shed_latency: Latencies,
}

/// Whether an error kind (`HTTP 503 overloaded`, ...) is a refusal to take more load.
pub fn is_shed(error: &str) -> bool {
    error.starts_with("HTTP 503 overloaded") || error.starts_with("HTTP 429 rate_limited")
}

impl Recorder {
    pub fn ok(&mut self, kind: &'static str, latency: Duration) {
        self.all.record(latency);
        self.by_kind.entry(kind).or_default().record(latency);
    }

    pub fn error(&mut self, kind: &'static str, error: String) {
        *self.errors.entry(format!("{kind}: {error}")).or_default() += 1;
    }

    /// A failed operation after `latency`: shed or an error.
    pub fn failed(&mut self, kind: &'static str, error: String, latency: Duration) {
        if is_shed(&error) {
            self.shed_latency.record(latency);
            *self.shed.entry(format!("{kind}: {error}")).or_default() += 1;
        } else {
            self.error(kind, error);
        }
    }

    pub fn shed_count(&self) -> u64 {
        self.shed.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_report_quantiles_in_milliseconds() {
        let mut latencies = Latencies::default();
        for ms in 1..=1000u64 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99_ms - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_ms - 1000.0).abs() < 1.0, "{summary:?}");
        assert_eq!(Latencies::default().summary(), LatencySummary::default());
    }

    #[test]
    fn recorder_counts_errors_by_kind() {
        let mut recorder = Recorder::default();
        recorder.ok("purchase", Duration::from_millis(2));
        recorder.error("refund", "HTTP 422 refund_exceeds_purchase".into());
        recorder.error("refund", "HTTP 422 refund_exceeds_purchase".into());
        assert_eq!(recorder.all.count(), 1);
        assert_eq!(recorder.error_count(), 2);
        assert_eq!(recorder.errors["refund: HTTP 422 refund_exceeds_purchase"], 2);
        assert_eq!(rate(500, Duration::from_secs(2)), 250.0);
    }

    #[test]
    fn shed_requests_are_counted_apart_from_errors() {
        let mut recorder = Recorder::default();
        recorder.failed("purchase", "HTTP 503 overloaded".into(), Duration::from_millis(3));
        recorder.failed(
            "purchase",
            "HTTP 429 rate_limited".into(),
            Duration::from_millis(1),
        );
        recorder.failed("purchase", "HTTP 503 timeout".into(), Duration::from_secs(1));
        assert_eq!(recorder.shed_count(), 2);
        assert_eq!(recorder.shed_latency.count(), 2);
        assert_eq!(recorder.error_count(), 1, "a timeout is an error, not a refusal");
    }
}
