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
    let sum = match side {
        Side::Actual => &mut entry.0,
        Side::Draft => &mut entry.1,
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
        let (actual, draft) = self.by_week.entry(week).or_default();
        let sum = match side {
            Side::Actual => actual,
            Side::Draft => draft,
        };
        *sum = sum.saturating_add(breakdown.total);
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
        fn list<K>(map: &BTreeMap<String, (i64, i64)>, key: impl Fn(String) -> K) -> Vec<Comparison<K>> {
            map.iter()
                .map(|(k, &(actual_points, draft_points))| Comparison {
                    key: key(k.clone()),
                    actual_points,
                    draft_points,
                })
                .collect()
        }
        Report {
            by_promotion: list(&self.by_promotion, |promotion_id| PromotionKey { promotion_id }),
            by_tier: list(&self.by_tier, |tier| TierKey { tier }),
            by_location: list(&self.by_location, |location_id| LocationKey { location_id }),
            by_week: self
                .by_week
                .iter()
                .map(|(&week, &(actual_points, draft_points))| Comparison {
                    key: WeekKey {
                        week: week_name(week),
                    },
                    actual_points,
                    draft_points,
                })
                .collect(),
            ..self.report.clone()
        }
    }
}
