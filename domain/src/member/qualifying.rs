//! The points a member's purchases count toward a tier, indexed by day, so that a
//! qualification window is summed without walking every purchase of a long history.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Net purchase points (earned minus clawed back) by the purchase's `occurred_at`, grouped by
/// UTC day with each day's total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualifyingIndex {
    days: BTreeMap<NaiveDate, Day>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Day {
    total: i64,
    at: BTreeMap<DateTime<Utc>, i64>,
}

impl QualifyingIndex {
    /// Adds `points` (negative for a clawback) to the purchase that occurred at `occurred_at`.
    pub fn add(&mut self, occurred_at: DateTime<Utc>, points: i64) {
        let day = self.days.entry(occurred_at.date_naive()).or_default();
        day.total += points;
        *day.at.entry(occurred_at).or_default() += points;
    }

    /// The points of the purchases that occurred in `(start, end]` (`start` `None`: from the
    /// beginning). Whole days inside the window count by their totals: the cost is the number
    /// of days with purchases in the window, plus the purchases of the window's first day
    /// after `start` and those after `end` (normally none).
    pub fn sum(&self, start: Option<DateTime<Utc>>, end: DateTime<Utc>) -> i64 {
        let end_day = end.date_naive();
        let start_day = start.map(|start| start.date_naive());
        if start_day.is_some_and(|start_day| start_day >= end_day) {
            // A window within one day: its purchases one by one.
            let Some(day) = self.days.get(&end_day) else {
                return 0;
            };
            let from = start.map_or(Unbounded, Excluded);
            return day
                .at
                .range((from, Included(end)))
                .map(|(_, points)| points)
                .sum();
        }
        let from = start_day.map_or(Unbounded, Included);
        self.days
            .range((from, Included(end_day)))
            .map(|(date, day)| {
                if start_day == Some(*date) {
                    let start = start.expect("a start day has a start");
                    day.at
                        .range((Excluded(start), Unbounded))
                        .map(|(_, points)| points)
                        .sum()
                } else if *date == end_day {
                    day.total
                        - day
                            .at
                            .range((Excluded(end), Unbounded))
                            .map(|(_, points)| points)
                            .sum::<i64>()
                } else {
                    day.total
                }
            })
            .sum()
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
