//! The points a member's purchases count toward a tier, kept in time order with running
//! totals, so that a qualification window is summed without walking a long history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Net purchase points (earned minus clawed back) by the purchase's `occurred_at`, in time
/// order, each with the running total up to it: a window is the difference of two running
/// totals found by binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualifyingIndex {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    at: DateTime<Utc>,
    points: i64,
    /// Σ points of this entry and every earlier one.
    through: i64,
}

impl QualifyingIndex {
    /// Adds `points` (negative for a clawback) to the purchase that occurred at `occurred_at`.
    /// A new purchase is normally the latest (an append); a backdated one or a clawback of an
    /// old one moves the running totals after it.
    pub fn add(&mut self, occurred_at: DateTime<Utc>, points: i64) {
        let after = self.entries.partition_point(|entry| entry.at <= occurred_at);
        let from = match after
            .checked_sub(1)
            .filter(|&last| self.entries[last].at == occurred_at)
        {
            Some(same) => {
                self.entries[same].points += points;
                same
            }
            None => {
                // Its running total starts at its predecessor's; the loop below adds its own.
                let through = self.through_index(after);
                self.entries.insert(
                    after,
                    Entry {
                        at: occurred_at,
                        points,
                        through,
                    },
                );
                after
            }
        };
        for entry in &mut self.entries[from..] {
            entry.through += points;
        }
    }

    /// The points of the purchases that occurred in `(start, end]` (`start` `None`: from the
    /// beginning).
    pub fn sum(&self, start: Option<DateTime<Utc>>, end: DateTime<Utc>) -> i64 {
        match start {
            Some(start) if start >= end => 0,
            Some(start) => self.through(end) - self.through(start),
            None => self.through(end),
        }
    }

    /// Σ points of the purchases that occurred at or before `at`.
    fn through(&self, at: DateTime<Utc>) -> i64 {
        self.through_index(self.entries.partition_point(|entry| entry.at <= at))
    }

    /// Σ points of the first `count` entries.
    fn through_index(&self, count: usize) -> i64 {
        count.checked_sub(1).map_or(0, |last| self.entries[last].through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    proptest! {
        /// The index sums any window exactly as walking every purchase does.
        #[test]
        fn a_window_sums_what_its_purchases_add_up_to(
            purchases in proptest::collection::vec((0_i64..10_000, -50_i64..500), 0..60),
            start in proptest::option::of(-100_i64..10_100),
            length in 0_i64..10_000,
        ) {
            let mut index = QualifyingIndex::default();
            for (minute, points) in &purchases {
                index.add(at(*minute), *points);
            }
            let end = at(start.unwrap_or(0) + length);
            let start = start.map(at);
            let expected: i64 = purchases
                .iter()
                .filter(|(minute, _)| start.is_none_or(|start| at(*minute) > start) && at(*minute) <= end)
                .map(|(_, points)| points)
                .sum();
            prop_assert_eq!(index.sum(start, end), expected);
        }
    }
}
