//! The command a logged event was appended by, rebuilt from the event so that it can be decided
//! again under another program. Only the first event of a command (its *head*) names the
//! command; the rest (stamps, unlocks, upgrades, progress, the expiry a redemption makes
//! first) are its consequences, which the decision produces again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::member::{
    Adjustment, Expiry, MemberCommand, MemberEvent, NewMember, Purchase, Receipt, Redemption, Refund,
    TierReview,
};
use crate::program::{ProgramSnapshot, RewardDef};

/// What a rebuilt command needs besides the event.
pub(super) struct Facts<'a> {
    pub org_id: &'a str,
    pub program: ProgramSnapshot,
    /// The server clock when the command was received.
    pub recorded_at: DateTime<Utc>,
    pub budgets_left: BTreeMap<String, i64>,
}

/// Whether `event` can only be the first event of a command.
pub(super) fn is_head(event: &MemberEvent) -> bool {
    matches!(
        event,
        MemberEvent::MemberEnrolled { .. }
            | MemberEvent::PurchaseRecorded { .. }
            | MemberEvent::PurchaseRefunded { .. }
            | MemberEvent::RewardRedeemed { .. }
            | MemberEvent::PointsAdjusted { .. }
            | MemberEvent::PointsExpired { .. }
    )
}

/// Whether `event` is the one that names its command, `command` being the command's name
/// (first word): the purchase, refund, redemption or adjustment itself, and expirations and
/// tier changes only when a system job made them (other commands make them as consequences).
pub(super) fn names_command(event: &MemberEvent, command: &str) -> bool {
    let by_member_command = matches!(
        command.split_whitespace().next(),
        Some("EnrollMember" | "RecordPurchase" | "RefundPurchase" | "RedeemReward" | "AdjustPoints")
    );
    match event {
        MemberEvent::MemberEnrolled { .. }
        | MemberEvent::PurchaseRecorded { .. }
        | MemberEvent::PurchaseRefunded { .. }
        | MemberEvent::RewardRedeemed { .. }
        | MemberEvent::PointsAdjusted { .. } => true,
        MemberEvent::PointsExpired { .. }
        | MemberEvent::TierUpgraded { .. }
        | MemberEvent::TierDowngraded { .. }
        | MemberEvent::TierGracePeriodStarted { .. }
        | MemberEvent::TierGracePeriodCleared { .. } => !by_member_command,
        MemberEvent::StampCollected { .. }
        | MemberEvent::StampCardCompleted { .. }
        | MemberEvent::AchievementProgressed { .. }
        | MemberEvent::AchievementUnlocked { .. } => false,
    }
}

/// The command whose first event is `event`; `None` for an event no command starts with.
pub(super) fn command_for(
    event: &MemberEvent,
    member_id: uuid::Uuid,
    facts: Facts<'_>,
) -> Option<MemberCommand> {
    let Facts {
        org_id,
        program,
        recorded_at,
        budgets_left,
    } = facts;
    let command = match event {
        MemberEvent::MemberEnrolled {
            external_id,
            display_name,
            enrolled_at,
            ..
        } => MemberCommand::Enroll(NewMember {
            org_id: org_id.to_owned(),
            member_id,
            external_id: external_id.clone(),
            display_name: display_name.clone(),
            program,
            at: *enrolled_at,
        }),
        MemberEvent::PurchaseRecorded {
            transaction_id,
            location_id,
            amount_minor,
            currency,
            occurred_at,
            items,
            ..
        } => MemberCommand::RecordPurchase(Purchase {
            receipt: Receipt {
                transaction_id: transaction_id.clone(),
                location_id: location_id.clone(),
                amount_minor: *amount_minor,
                currency: currency.clone(),
                occurred_at: *occurred_at,
                items: items.clone(),
            },
            program,
            recorded_at,
            budgets_left,
        }),
        MemberEvent::PurchaseRefunded {
            refund_id,
            transaction_id,
            amount_minor,
            occurred_at,
            ..
        } => MemberCommand::RefundPurchase(Refund {
            refund_id: refund_id.clone(),
            transaction_id: transaction_id.clone(),
            amount_minor: *amount_minor,
            program,
            at: *occurred_at,
        }),
        // The redemption really happened at the catalogue entry of its time.
        MemberEvent::RewardRedeemed {
            redemption_id,
            reward_id,
            reward_name,
            points_cost,
            occurred_at,
            ..
        } => MemberCommand::RedeemReward(Redemption {
            redemption_id: redemption_id.clone(),
            reward_id: reward_id.clone(),
            reward: Some(RewardDef {
                reward_id: reward_id.clone(),
                name: reward_name.clone(),
                points_cost: *points_cost,
                active: true,
            }),
            at: *occurred_at,
        }),
        MemberEvent::PointsAdjusted {
            adjustment_id,
            delta,
            reason,
            occurred_at,
            ..
        } => MemberCommand::AdjustPoints(Adjustment {
            adjustment_id: adjustment_id.clone(),
            delta: *delta,
            reason: reason.clone(),
            expiry_days: program.config.expiry_days,
            at: *occurred_at,
        }),
        MemberEvent::PointsExpired { as_of, .. } => MemberCommand::ExpirePoints(Expiry { as_of: *as_of }),
        // A tier event that starts a command is the system job's re-evaluation.
        MemberEvent::TierGracePeriodStarted { as_of, .. }
        | MemberEvent::TierGracePeriodCleared { as_of, .. }
        | MemberEvent::TierDowngraded { as_of, .. } => MemberCommand::ReevaluateTier(TierReview {
            as_of: *as_of,
            program,
        }),
        MemberEvent::TierUpgraded { occurred_at, .. } => MemberCommand::ReevaluateTier(TierReview {
            as_of: *occurred_at,
            program,
        }),
        MemberEvent::StampCollected { .. }
        | MemberEvent::StampCardCompleted { .. }
        | MemberEvent::AchievementProgressed { .. }
        | MemberEvent::AchievementUnlocked { .. } => return None,
    };
    Some(command)
}
