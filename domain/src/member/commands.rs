//! What can be asked of a member. Each command carries, next to the request's own fields, the
//! facts from the outside world its decision needs (the program in force, the server clock, the
//! reward's catalogue entry), so that deciding is a pure function of the member and the command.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::earn::Line;

use crate::program::{ProgramSnapshot, RewardDef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberCommand {
    Enroll(NewMember),
    RecordPurchase(Purchase),
    RefundPurchase(Refund),
    RedeemReward(Redemption),
    AdjustPoints(Adjustment),
    ExpirePoints(Expiry),
    ReevaluateTier(TierReview),
}

impl MemberCommand {
    /// Stable name, for tracing and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MemberCommand::Enroll(_) => "EnrollMember",
            MemberCommand::RecordPurchase(_) => "RecordPurchase",
            MemberCommand::RefundPurchase(_) => "RefundPurchase",
            MemberCommand::RedeemReward(_) => "RedeemReward",
            MemberCommand::AdjustPoints(_) => "AdjustPoints",
            MemberCommand::ExpirePoints(_) => "ExpirePoints",
            MemberCommand::ReevaluateTier(_) => "ReevaluateTier",
        }
    }
}

/// Enrols the member in the org's program, at its first tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub org_id: String,
    pub member_id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub program: ProgramSnapshot,
    pub at: DateTime<Utc>,
}

/// What a till sends for a purchase: the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub transaction_id: String,
    pub location_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Business time on the receipt (may be hours old for an offline terminal).
    pub occurred_at: DateTime<Utc>,
    /// The basket lines (SPEC §9); without them the purchase is one line with no sku and no
    /// category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Line>>,
}

/// Records a purchase: earns points, collects stamps, may upgrade the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub receipt: Receipt,
    pub program: ProgramSnapshot,
    /// The server clock when the command was received.
    pub recorded_at: DateTime<Utc>,
    /// What is left of each budgeted promotion's budget (promotion_id → points), as read by
    /// the command service; a budgeted promotion missing here has nothing left.
    pub budgets_left: BTreeMap<String, i64>,
}

/// Refunds (part of) a purchase: claws back its points in proportion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_id: String,
    pub transaction_id: String,
    pub amount_minor: i64,
    pub program: ProgramSnapshot,
    pub at: DateTime<Utc>,
}

/// Spends points on a reward of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub redemption_id: String,
    pub reward_id: String,
    /// The catalogue entry in force, `None` if the catalogue has no such reward.
    pub reward: Option<RewardDef>,
    pub at: DateTime<Utc>,
}

/// An admin's credit or debit of points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub adjustment_id: String,
    pub delta: i64,
    pub reason: String,
    /// Expiry policy in force, for a positive adjustment's lot.
    pub expiry_days: Option<u32>,
    pub at: DateTime<Utc>,
}

/// Expires every lot due at `as_of` (the system job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub as_of: DateTime<Utc>,
}

/// Re-evaluates the tier at `as_of` (the system job): upgrade, grace, or downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierReview {
    pub as_of: DateTime<Utc>,
    pub program: ProgramSnapshot,
}
