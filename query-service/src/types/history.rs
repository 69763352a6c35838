//! A member's history: one entry per stored event.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use domain::MemberEvent;

use super::PurchaseBreakdown;
use crate::db::EventRow;

/// One event of a member's history.
#[derive(SimpleObject)]
pub struct HistoryEntry {
    /// Position in the member's event log.
    pub sequence: i64,
    /// `PurchaseRecorded`, `PurchaseRefunded`, `RewardRedeemed`, `PointsAdjusted`,
    /// `PointsExpired`, `TierUpgraded`, `StampCollected`, ...
    pub event_type: String,
    /// When it happened in business time (the receipt's time for a purchase).
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub committed_at: DateTime<Utc>,
    /// Points it moved: positive earned or granted, negative redeemed, expired or clawed back.
    pub points_delta: i64,
    /// The balance right after it, for events that move points.
    pub balance_after: Option<i64>,
    /// The POS transaction of a purchase, refund or stamp.
    pub transaction_id: Option<String>,
    pub location_id: Option<String>,
    /// Amount of a purchase or refund, in minor units.
    pub amount_minor: Option<i64>,
    pub reward_id: Option<String>,
    /// The reason of a manual adjustment.
    pub reason: Option<String>,
    /// The tier after a tier event.
    pub tier: Option<String>,
    /// How a purchase's points were made up: base, tier points, promotions, the cap's cut.
    pub breakdown: Option<PurchaseBreakdown>,
    /// The achievement an `AchievementUnlocked` unlocked, and its badge.
    pub achievement_id: Option<String>,
    pub badge: Option<String>,
}

impl From<EventRow> for HistoryEntry {
    fn from(row: EventRow) -> Self {
        let mut entry = HistoryEntry {
            sequence: row.sequence,
            event_type: row.event_type,
            occurred_at: occurred_at(&row.event).unwrap_or(row.committed_at),
            committed_at: row.committed_at,
            points_delta: domain::ledger::points_delta(&row.event),
            balance_after: balance_after(&row.event),
            transaction_id: None,
            location_id: None,
            amount_minor: None,
            reward_id: None,
            reason: None,
            tier: None,
            breakdown: None,
            achievement_id: None,
            badge: None,
        };
        match row.event {
            MemberEvent::MemberEnrolled { tier, .. } => entry.tier = Some(tier),
            MemberEvent::PurchaseRecorded {
                transaction_id,
                location_id,
                amount_minor,
                breakdown,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.location_id = Some(location_id);
                entry.amount_minor = Some(amount_minor);
                entry.breakdown = Some(PurchaseBreakdown::from(&breakdown));
            }
            MemberEvent::PurchaseRefunded {
                transaction_id,
                location_id,
                amount_minor,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.location_id = Some(location_id);
                entry.amount_minor = Some(amount_minor);
            }
            MemberEvent::StampCollected { transaction_id, .. } => entry.transaction_id = Some(transaction_id),
            MemberEvent::StampCardCompleted {
                transaction_id,
                reward_id,
                ..
            } => {
                entry.transaction_id = Some(transaction_id);
                entry.reward_id = Some(reward_id);
            }
            MemberEvent::RewardRedeemed { reward_id, .. } => entry.reward_id = Some(reward_id),
            MemberEvent::PointsAdjusted { reason, .. } => entry.reason = Some(reason),
            MemberEvent::TierUpgraded { to, .. } | MemberEvent::TierDowngraded { to, .. } => {
                entry.tier = Some(to)
            }
            MemberEvent::TierGracePeriodStarted { tier, .. }
            | MemberEvent::TierGracePeriodCleared { tier, .. } => entry.tier = Some(tier),
            MemberEvent::AchievementUnlocked {
                achievement_id,
                badge,
                transaction_id,
                ..
            } => {
                entry.achievement_id = Some(achievement_id);
                entry.badge = Some(badge);
                entry.transaction_id = Some(transaction_id);
            }
            MemberEvent::PointsExpired { .. } | MemberEvent::AchievementProgressed { .. } => {}
        }
        entry
    }
}

/// Business time of an event.
fn occurred_at(event: &MemberEvent) -> Option<DateTime<Utc>> {
    Some(match event {
        MemberEvent::MemberEnrolled { enrolled_at, .. } => *enrolled_at,
        MemberEvent::PurchaseRecorded { occurred_at, .. }
        | MemberEvent::StampCollected { occurred_at, .. }
        | MemberEvent::StampCardCompleted { occurred_at, .. }
        | MemberEvent::TierUpgraded { occurred_at, .. }
        | MemberEvent::PurchaseRefunded { occurred_at, .. }
        | MemberEvent::RewardRedeemed { occurred_at, .. }
        | MemberEvent::PointsAdjusted { occurred_at, .. }
        | MemberEvent::AchievementProgressed { occurred_at, .. }
        | MemberEvent::AchievementUnlocked { occurred_at, .. } => *occurred_at,
        MemberEvent::TierGracePeriodStarted { as_of, .. }
        | MemberEvent::TierGracePeriodCleared { as_of, .. }
        | MemberEvent::TierDowngraded { as_of, .. }
        | MemberEvent::PointsExpired { as_of, .. } => *as_of,
    })
}

/// The balance an event leaves, for events that move points.
pub fn balance_after(event: &MemberEvent) -> Option<i64> {
    match event {
        MemberEvent::PurchaseRecorded { balance_after, .. }
        | MemberEvent::PurchaseRefunded { balance_after, .. }
        | MemberEvent::RewardRedeemed { balance_after, .. }
        | MemberEvent::PointsAdjusted { balance_after, .. }
        | MemberEvent::PointsExpired { balance_after, .. }
        | MemberEvent::AchievementUnlocked { balance_after, .. } => Some(*balance_after),
        _ => None,
    }
}
