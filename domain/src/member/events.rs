//! Member events: the wire schema of the event store and the stream. Type names, field names
//! and the externally tagged JSON are stable; a change of shape gets a new version and an
//! upcaster (see [`crate::codec`]), never an edit.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::achievements::AchievementProgress;
use super::earn::{Breakdown, Line};

/// The version `PurchaseRecorded` is written at: 2 added `items` and `breakdown` (SPEC §9).
pub const PURCHASE_RECORDED_VERSION: &str = "2";
/// The version of every other member event.
pub const MEMBER_EVENT_VERSION: &str = "1";

/// What happened to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberEvent {
    MemberEnrolled {
        org_id: String,
        member_id: Uuid,
        external_id: Option<String>,
        display_name: Option<String>,
        enrolled_at: DateTime<Utc>,
        tier: String,
        multiplier_bps: u32,
        program_version: u64,
    },
    PurchaseRecorded {
        transaction_id: String,
        location_id: String,
        amount_minor: i64,
        currency: String,
        occurred_at: DateTime<Utc>,
        program_version: u64,
        /// `floor(amount × earn_rate / 10^digits)`, before the tier multiplier.
        base_points: i64,
        /// The tier the member held before this purchase, whose multiplier was used.
        tier: String,
        multiplier_bps: u32,
        /// What the purchase earned: `breakdown.total`.
        points_earned: i64,
        /// When this purchase's points expire (`None`: never).
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        /// Qualifying points in the window ending when the purchase was recorded (or at
        /// `occurred_at` if that is later), this purchase included if it lies in the window.
        qualifying_points: i64,
        /// The basket lines, when the receipt carried them (version 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<Vec<Line>>,
        /// Why the purchase earned `points_earned`: base, tier points, each applied
        /// promotion, the cap cut and the total (version 2; version 1 is upcast in
        /// [`crate::codec`]).
        breakdown: Breakdown,
    },
    StampCollected {
        card_id: String,
        transaction_id: String,
        /// The UTC calendar day of the stamp.
        day: NaiveDate,
        stamps: u32,
        stamps_required: u32,
        occurred_at: DateTime<Utc>,
    },
    StampCardCompleted {
        card_id: String,
        /// The reward issued for the full card.
        reward_id: String,
        transaction_id: String,
        cards_completed: u32,
        occurred_at: DateTime<Utc>,
    },
    TierUpgraded {
        from: String,
        to: String,
        multiplier_bps: u32,
        qualifying_points: i64,
        occurred_at: DateTime<Utc>,
        program_version: u64,
    },
    TierGracePeriodStarted {
        tier: String,
        threshold_points: i64,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
        downgrade_after: DateTime<Utc>,
    },
    TierGracePeriodCleared {
        tier: String,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
    },
    TierDowngraded {
        from: String,
        to: String,
        multiplier_bps: u32,
        qualifying_points: i64,
        as_of: DateTime<Utc>,
        program_version: u64,
    },
    PurchaseRefunded {
        refund_id: String,
        transaction_id: String,
        /// Of the original purchase, so projectors need not look it up.
        location_id: String,
        purchase_occurred_at: DateTime<Utc>,
        purchase_amount_minor: i64,
        purchase_points_earned: i64,
        amount_minor: i64,
        /// Sum of all refunds of the purchase, this one included.
        refunded_total_minor: i64,
        points_clawed_back: i64,
        balance_after: i64,
        qualifying_points: i64,
        occurred_at: DateTime<Utc>,
    },
    RewardRedeemed {
        redemption_id: String,
        reward_id: String,
        reward_name: String,
        points_cost: i64,
        balance_after: i64,
        occurred_at: DateTime<Utc>,
    },
    PointsAdjusted {
        adjustment_id: String,
        delta: i64,
        reason: String,
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        occurred_at: DateTime<Utc>,
    },
    PointsExpired {
        as_of: DateTime<Utc>,
        points: i64,
        balance_after: i64,
    },
    /// A purchase or refund moved the member's progress toward achievements not yet unlocked
    /// (SPEC §9): each one's progress as of `occurred_at`, in the criterion's unit.
    AchievementProgressed {
        progress: Vec<AchievementProgress>,
        /// The purchase's `occurred_at`, or when the refund was recorded.
        occurred_at: DateTime<Utc>,
    },
    /// A purchase unlocked an achievement: its badge, once, and its reward points through the
    /// ledger like any earn (not capped, not qualifying for tiers).
    AchievementUnlocked {
        achievement_id: String,
        name: String,
        badge: String,
        reward_points: i64,
        /// The purchase that unlocked it.
        transaction_id: String,
        /// When the reward points expire (`None`: never).
        expires_at: Option<DateTime<Utc>>,
        balance_after: i64,
        occurred_at: DateTime<Utc>,
        program_version: u64,
    },
}

impl DomainEvent for MemberEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            MemberEvent::PurchaseRecorded { .. } => PURCHASE_RECORDED_VERSION,
            _ => MEMBER_EVENT_VERSION,
        }
        .to_owned()
    }
}

impl MemberEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            MemberEvent::MemberEnrolled { .. } => "MemberEnrolled",
            MemberEvent::PurchaseRecorded { .. } => "PurchaseRecorded",
            MemberEvent::StampCollected { .. } => "StampCollected",
            MemberEvent::StampCardCompleted { .. } => "StampCardCompleted",
            MemberEvent::TierUpgraded { .. } => "TierUpgraded",
            MemberEvent::TierGracePeriodStarted { .. } => "TierGracePeriodStarted",
            MemberEvent::TierGracePeriodCleared { .. } => "TierGracePeriodCleared",
            MemberEvent::TierDowngraded { .. } => "TierDowngraded",
            MemberEvent::PurchaseRefunded { .. } => "PurchaseRefunded",
            MemberEvent::RewardRedeemed { .. } => "RewardRedeemed",
            MemberEvent::PointsAdjusted { .. } => "PointsAdjusted",
            MemberEvent::PointsExpired { .. } => "PointsExpired",
            MemberEvent::AchievementProgressed { .. } => "AchievementProgressed",
            MemberEvent::AchievementUnlocked { .. } => "AchievementUnlocked",
        }
    }

    /// Whether this is a purchase that drew on a promotion's budget: its append draws the
    /// points from the budget, a row every such purchase of the org writes.
    pub fn draws_on_a_budget(&self) -> bool {
        matches!(
            self,
            MemberEvent::PurchaseRecorded { breakdown, .. }
                if breakdown.promotions.iter().any(|applied| applied.budget_left.is_some())
        )
    }
}
