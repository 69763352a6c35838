//! Spending, adjusting and expiring points. Points past their expiry date are never spendable,
//! even before the expiry job ran: a redemption or an adjustment first expires them, in the same
//! append.

use chrono::{DateTime, Utc};

use super::checks::{add_days, check_id, enrolled};
use crate::member::commands::{Adjustment, Expiry, Redemption};
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::limits::{MAX_ADJUSTMENT, MAX_REASON};
use crate::member::state::Member;

pub(super) fn redeem_reward(member: &Member, command: Redemption) -> Result<Vec<MemberEvent>, MemberError> {
    let Redemption {
        redemption_id,
        reward_id,
        reward,
        at,
    } = command;
    enrolled(member)?;
    check_id("redemption_id", &redemption_id)?;
    check_id("reward_id", &reward_id)?;
    if let Some(existing) = member.redemptions.get(&redemption_id) {
        return if *existing == reward_id {
            Ok(Vec::new())
        } else {
            Err(MemberError::RedemptionIdReused(redemption_id))
        };
    }
    let reward = reward
        .filter(|r| r.reward_id == reward_id)
        .ok_or_else(|| MemberError::UnknownReward(reward_id.clone()))?;
    if !reward.active {
        return Err(MemberError::RewardInactive(reward_id));
    }
    let due = member.expirable_points(at);
    let spendable = member.points.balance - due;
    if spendable < 0 {
        return Err(MemberError::NegativeBalance { balance: spendable });
    }
    if spendable < reward.points_cost {
        return Err(MemberError::InsufficientPoints {
            balance: spendable,
            required: reward.points_cost,
        });
    }
    let mut events: Vec<_> = expiry_due(member, at).into_iter().collect();
    events.push(MemberEvent::RewardRedeemed {
        redemption_id,
        reward_id,
        reward_name: reward.name,
        points_cost: reward.points_cost,
        balance_after: spendable - reward.points_cost,
        occurred_at: at,
    });
    Ok(events)
}

pub(super) fn adjust_points(member: &Member, command: Adjustment) -> Result<Vec<MemberEvent>, MemberError> {
    let Adjustment {
        adjustment_id,
        delta,
        reason,
        expiry_days,
        at,
    } = command;
    enrolled(member)?;
    check_id("adjustment_id", &adjustment_id)?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(MemberError::ReasonRequired);
    }
    if delta == 0 || delta.unsigned_abs() > MAX_ADJUSTMENT.unsigned_abs() {
        return Err(MemberError::InvalidDelta);
    }
    if let Some((existing_delta, existing_reason)) = member.adjustments.get(&adjustment_id) {
        return if *existing_delta == delta && *existing_reason == reason {
            Ok(Vec::new())
        } else {
            Err(MemberError::AdjustmentIdReused(adjustment_id))
        };
    }
    let spendable = member.points.balance - member.expirable_points(at);
    let balance_after = spendable
        .checked_add(delta)
        .ok_or(MemberError::Overflow { field: "delta" })?;
    // Only a clawback may take a balance below zero.
    if delta < 0 && balance_after < 0 {
        return Err(MemberError::InsufficientPoints {
            balance: spendable,
            required: -delta,
        });
    }
    let expires_at = if delta > 0 {
        add_days(at, expiry_days, "delta")?
    } else {
        None
    };
    let mut events: Vec<_> = expiry_due(member, at).into_iter().collect();
    events.push(MemberEvent::PointsAdjusted {
        adjustment_id,
        delta,
        reason,
        expires_at,
        balance_after,
        occurred_at: at,
    });
    Ok(events)
}

pub(super) fn expire_points(member: &Member, command: Expiry) -> Result<Vec<MemberEvent>, MemberError> {
    enrolled(member)?;
    // Idempotent by construction: a second run for the same as_of finds nothing left.
    Ok(expiry_due(member, command.as_of).into_iter().collect())
}

/// `PointsExpired` for every lot due at `as_of`, if any.
fn expiry_due(member: &Member, as_of: DateTime<Utc>) -> Option<MemberEvent> {
    let points = member.expirable_points(as_of);
    (points > 0).then(|| MemberEvent::PointsExpired {
        as_of,
        points,
        balance_after: member.points.balance - points,
    })
}
