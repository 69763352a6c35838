//! Double-entry bookkeeping of points (SPEC §4 "Financial integrity").
//!
//! Every points movement is one journal entry of two postings: the member's points account and
//! the org's points-liability account, summing to zero. The liability the org owes its members
//! is the negated balance of its liability account, so at every point of the log
//! Σ member balances = liability.

use serde::{Deserialize, Serialize};

use crate::member::MemberEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Account {
    /// The member's points account (the member named by the event's aggregate).
    MemberPoints,
    /// The org's points-liability account.
    OrgLiability,
}

impl Account {
    pub fn as_str(self) -> &'static str {
        match self {
            Account::MemberPoints => "member_points",
            Account::OrgLiability => "org_liability",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    /// Positive increases the account's balance.
    pub delta: i64,
}

/// How much `event` moves the member's balance (positive: credit).
pub fn points_delta(event: &MemberEvent) -> i64 {
    match event {
        MemberEvent::PurchaseRecorded { points_earned, .. } => *points_earned,
        MemberEvent::PurchaseRefunded {
            points_clawed_back, ..
        } => -points_clawed_back,
        MemberEvent::RewardRedeemed { points_cost, .. } => -points_cost,
        MemberEvent::PointsAdjusted { delta, .. } => *delta,
        MemberEvent::PointsExpired { points, .. } => -points,
        MemberEvent::AchievementUnlocked { reward_points, .. } => *reward_points,
        MemberEvent::AchievementProgressed { .. }
        | MemberEvent::MemberEnrolled { .. }
        | MemberEvent::StampCollected { .. }
        | MemberEvent::StampCardCompleted { .. }
        | MemberEvent::TierUpgraded { .. }
        | MemberEvent::TierGracePeriodStarted { .. }
        | MemberEvent::TierGracePeriodCleared { .. }
        | MemberEvent::TierDowngraded { .. } => 0,
    }
}

/// The journal entry of `event`: empty when it moves no points, else two postings summing to 0.
pub fn postings(event: &MemberEvent) -> Vec<Posting> {
    match points_delta(event) {
        0 => Vec::new(),
        delta => vec![
            Posting {
                account: Account::MemberPoints,
                delta,
            },
            Posting {
                account: Account::OrgLiability,
                delta: -delta,
            },
        ],
    }
}
