//! A member's account as rebuilt from its events, and the questions the rules ask of it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::achievements::AchievementState;
use super::earn::{EarnHistory, Line};
use super::lots::Lots;
use super::qualifying::QualifyingIndex;
use crate::points::PointCounters;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    pub org_id: String,
    pub member_id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRecord {
    pub location_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    pub points_earned: i64,
    pub refunded_minor: i64,
    pub clawed_back: i64,
    /// The basket lines the receipt carried (a re-sent receipt must carry the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Line>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub transaction_id: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grace {
    pub started_at: DateTime<Utc>,
    pub downgrade_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    pub name: String,
    pub multiplier_bps: u32,
    pub grace: Option<Grace>,
    /// The latest `as_of` of a re-evaluation that changed something; older or equal `as_of`
    /// re-evaluations are no-ops (idempotence of the system job).
    pub last_reevaluation: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardProgress {
    pub stamps: u32,
    pub completed: u32,
    pub stamped_days: BTreeSet<NaiveDate>,
}

/// A member's account as rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub enrolment: Option<Enrolment>,
    /// Balance and running totals.
    #[serde(flatten)]
    pub points: PointCounters,
    /// Positive-remaining lots only; their sum equals the balance whenever it is ≥ 0.
    pub lots: Lots,
    pub purchases: BTreeMap<String, PurchaseRecord>,
    pub refunds: BTreeMap<String, RefundRecord>,
    /// redemption_id → reward_id
    pub redemptions: BTreeMap<String, String>,
    /// adjustment_id → (delta, reason)
    pub adjustments: BTreeMap<String, (i64, String)>,
    pub tier: TierState,
    pub stamp_cards: BTreeMap<String, CardProgress>,
    /// What promotions and the earn cap need of the member's purchases (SPEC §9).
    #[serde(default)]
    pub earn_history: EarnHistory,
    /// The points of `purchases` in time order, for the qualification window.
    #[serde(default)]
    pub qualifying: QualifyingIndex,
    /// Progress toward each achievement and when it was unlocked (SPEC §9).
    #[serde(default)]
    pub achievements: BTreeMap<String, AchievementState>,
}

/// `true` when `occurred_at` lies in the qualification window `(as_of − window_days, as_of]`.
pub(crate) fn in_window(occurred_at: DateTime<Utc>, as_of: DateTime<Utc>, window_days: u32) -> bool {
    window(as_of, window_days)(occurred_at)
}

/// The qualification window `(as_of − window_days, as_of]` as a test, its start computed once
/// for the whole history it is applied to.
pub(crate) fn window(as_of: DateTime<Utc>, window_days: u32) -> impl Fn(DateTime<Utc>) -> bool {
    let start = window_start(as_of, window_days);
    move |occurred_at| start.is_none_or(|start| occurred_at > start) && occurred_at <= as_of
}

/// The excluded start of the window `(as_of − window_days, as_of]`; `None` when it would reach
/// back before the calendar's start, which includes everything up to `as_of`.
fn window_start(as_of: DateTime<Utc>, window_days: u32) -> Option<DateTime<Utc>> {
    as_of.checked_sub_signed(Duration::days(i64::from(window_days)))
}

impl Member {
    pub fn is_enrolled(&self) -> bool {
        self.enrolment.is_some()
    }

    /// Points earned by purchases (net of their clawbacks) with `occurred_at` in the window
    /// `(as_of − window_days, as_of]`.
    pub fn qualifying_points(&self, as_of: DateTime<Utc>, window_days: u32) -> i64 {
        self.qualifying.sum(window_start(as_of, window_days), as_of)
    }

    /// Points that `ExpirePoints { as_of }` would expire.
    pub fn expirable_points(&self, as_of: DateTime<Utc>) -> i64 {
        self.lots.due(as_of)
    }

    /// The lot that expires next: `(points, expires_at)`.
    pub fn next_expiry(&self) -> Option<(i64, DateTime<Utc>)> {
        self.lots.next_expiry(None)
    }
}
