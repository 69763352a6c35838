//! The report of a what-if simulation (SPEC §9, §11): points actually awarded against points
//! under the draft, in total and per promotion, tier, location and week; members whose tier
//! would differ; the change in liability.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, IsoWeek, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::{Period, TimeZone};
use crate::member::earn::Breakdown;

/// Most tier changes a report lists (`tier_changes_total` counts them all).
pub const MAX_TIER_CHANGES: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison<K> {
    #[serde(flatten)]
    pub key: K,
    pub actual_points: i64,
    pub draft_points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionKey {
    pub promotion_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierKey {
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationKey {
    pub location_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekKey {
    /// ISO week `YYYY-Www` of the purchase's `occurred_at`, in the program's time zone.
    pub week: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    pub member_id: Uuid,
    pub actual_tier: String,
    pub draft_tier: String,
}

/// What a simulation found. Points are sums of purchase `total`s in the window, gross of later
/// clawbacks; achievement rewards are reported apart (SPEC §9 exact readings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Purchases recorded in the window, replayed under the draft.
    pub purchases: u64,
    pub actual_points: i64,
    pub draft_points: i64,
    /// Purchases whose points under the draft differ from what they were awarded.
    pub purchases_changed: u64,
    pub actual_reward_points: i64,
    pub draft_reward_points: i64,
    pub by_promotion: Vec<Comparison<PromotionKey>>,
    pub by_tier: Vec<Comparison<TierKey>>,
    pub by_location: Vec<Comparison<LocationKey>>,
    pub by_week: Vec<Comparison<WeekKey>>,
    /// Members whose tier at `to` would differ (at most [`MAX_TIER_CHANGES`], by member id).
    pub tier_changes: Vec<TierChange>,
    pub tier_changes_total: u64,
    /// Draft liability at `to` minus actual liability at `to` (Σ of member balances).
    pub liability_delta: i64,
    /// Commands of the window the draft would have refused (e.g. a redemption the draft
    /// balance could not pay); their actual effects are not replayed.
    pub commands_refused: u64,
    /// Member events read from the log, and members seen.
    pub events_read: u64,
    pub members: u64,
}

/// Running sums, per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Actual,
    Draft,
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub report: Report,
    by_promotion: BTreeMap<String, (i64, i64)>,
    by_tier: BTreeMap<String, (i64, i64)>,
    by_location: BTreeMap<String, (i64, i64)>,
    /// Keyed by the week itself, named only in the report (a name per purchase was an
    /// allocation per purchase).
    by_week: BTreeMap<IsoWeek, (i64, i64)>,
}

fn add(map: &mut BTreeMap<String, (i64, i64)>, key: &str, side: Side, points: i64) {
    let entry = match map.get_mut(key) {
        Some(entry) => entry,
        None => map.entry(key.to_owned()).or_default(),
    };
    add_to(entry, side, points);
}

/// Adds `points` to the `side` of an `(actual, draft)` pair.
fn add_to(sums: &mut (i64, i64), side: Side, points: i64) {
    let sum = match side {
        Side::Actual => &mut sums.0,
        Side::Draft => &mut sums.1,
    };
    *sum = sum.saturating_add(points);
}

/// The local ISO week of `at`.
pub(super) fn iso_week(time_zone: TimeZone, at: DateTime<Utc>) -> IsoWeek {
    time_zone.period_start(Period::Week, at).iso_week()
}

/// `YYYY-Www`.
fn week_name(week: IsoWeek) -> String {
    format!("{}-W{:02}", week.year(), week.week())
}

impl Tally {
    /// Counts one purchase's awarded points on `side`.
    pub fn purchase(
        &mut self,
        side: Side,
        tier: &str,
        location_id: &str,
        week: IsoWeek,
        breakdown: &Breakdown,
    ) {
        let total = match side {
            Side::Actual => &mut self.report.actual_points,
            Side::Draft => &mut self.report.draft_points,
        };
        *total = total.saturating_add(breakdown.total);
        for applied in &breakdown.promotions {
            add(
                &mut self.by_promotion,
                &applied.promotion_id,
                side,
                applied.points,
            );
        }
        add(&mut self.by_tier, tier, side, breakdown.total);
        add(&mut self.by_location, location_id, side, breakdown.total);
        add_to(self.by_week.entry(week).or_default(), side, breakdown.total);
    }

    pub fn reward(&mut self, side: Side, points: i64) {
        let total = match side {
            Side::Actual => &mut self.report.actual_reward_points,
            Side::Draft => &mut self.report.draft_reward_points,
        };
        *total = total.saturating_add(points);
    }

    /// The report so far, with its breakdowns sorted by key.
    pub fn report(&self) -> Report {
        fn list<M, K>(map: &BTreeMap<M, (i64, i64)>, key: impl Fn(&M) -> K) -> Vec<Comparison<K>> {
            map.iter()
                .map(|(k, &(actual_points, draft_points))| Comparison {
                    key: key(k),
                    actual_points,
                    draft_points,
                })
                .collect()
        }
        Report {
            by_promotion: list(&self.by_promotion, |id| PromotionKey {
                promotion_id: id.clone(),
            }),
            by_tier: list(&self.by_tier, |tier| TierKey { tier: tier.clone() }),
            by_location: list(&self.by_location, |id| LocationKey {
                location_id: id.clone(),
            }),
            by_week: list(&self.by_week, |&week| WeekKey {
                week: week_name(week),
            }),
            ..self.report.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(tally: &mut Tally, side: Side, at: &str, total: i64) {
        let at: DateTime<Utc> = at.parse().unwrap();
        let breakdown = Breakdown {
            total,
            ..Breakdown::default()
        };
        let zone: TimeZone = "Europe/Paris".parse().unwrap();
        tally.purchase(side, "Bronze", "store-1", iso_week(zone, at), &breakdown);
    }

    #[test]
    fn points_are_reported_per_local_iso_week_in_week_order() {
        let mut tally = Tally::default();
        // Sunday 23:30 UTC is already Monday in Paris: the next ISO week there.
        purchase(&mut tally, Side::Actual, "2026-01-04T23:30:00Z", 10);
        purchase(&mut tally, Side::Draft, "2026-01-04T23:30:00Z", 15);
        // ISO week 1 of 2026 starts on Monday 2025-12-29.
        purchase(&mut tally, Side::Actual, "2025-12-30T12:00:00Z", 7);
        purchase(&mut tally, Side::Actual, "2025-12-28T12:00:00Z", 3);
        let weeks: Vec<_> = tally
            .report()
            .by_week
            .into_iter()
            .map(|c| (c.key.week, c.actual_points, c.draft_points))
            .collect();
        assert_eq!(
            weeks,
            vec![
                ("2025-W52".to_owned(), 3, 0),
                ("2026-W01".to_owned(), 7, 0),
                ("2026-W02".to_owned(), 10, 15),
            ]
        );
    }
}
