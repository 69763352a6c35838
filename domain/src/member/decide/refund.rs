//! Refunds: a purchase's points are clawed back in proportion to what is refunded.

use super::checks::{check_amount, check_id, enrolled};
use crate::member::achievements::{judge, Change};
use crate::member::commands::Refund;
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::state::{in_window, Member};
use crate::money::cumulative_clawback;

pub(super) fn refund_purchase(member: &Member, command: Refund) -> Result<Vec<MemberEvent>, MemberError> {
    let Refund {
        refund_id,
        transaction_id,
        amount_minor,
        program,
        at,
    } = command;
    enrolled(member)?;
    check_id("refund_id", &refund_id)?;
    check_id("transaction_id", &transaction_id)?;
    check_amount("amount_minor", amount_minor)?;
    if let Some(existing) = member.refunds.get(&refund_id) {
        return if existing.transaction_id == transaction_id && existing.amount_minor == amount_minor {
            Ok(Vec::new())
        } else {
            Err(MemberError::RefundIdReused(refund_id))
        };
    }
    let purchase = member
        .purchases
        .get(&transaction_id)
        .ok_or_else(|| MemberError::PurchaseNotFound(transaction_id.clone()))?;
    let remaining_minor = purchase.amount_minor - purchase.refunded_minor;
    if amount_minor > remaining_minor {
        return Err(MemberError::RefundExceedsPurchase { remaining_minor });
    }
    let refunded_total_minor = purchase.refunded_minor + amount_minor;
    let total_clawback = cumulative_clawback(
        purchase.points_earned,
        refunded_total_minor,
        purchase.amount_minor,
    )
    .ok_or(MemberError::Overflow {
        field: "amount_minor",
    })?;
    let points_clawed_back = total_clawback - purchase.clawed_back;
    let balance_after =
        member
            .points
            .balance
            .checked_sub(points_clawed_back)
            .ok_or(MemberError::Overflow {
                field: "amount_minor",
            })?;
    let window = program.config.qualification_window_days;
    let own_clawback = if in_window(purchase.occurred_at, at, window) {
        points_clawed_back
    } else {
        0
    };
    let qualifying_points = member.qualifying_points(at, window) - own_clawback;
    // Progress moves with refunds (spend is net); a refund never unlocks nor takes back.
    let config = &program.config;
    let change = Change::Refund {
        transaction_id: &transaction_id,
        refunded_total_minor,
    };
    let progressed = judge(member, &config.achievements, config.time_zone, at, change).progressed;
    let mut events = vec![MemberEvent::PurchaseRefunded {
        refund_id,
        transaction_id,
        location_id: purchase.location_id.clone(),
        purchase_occurred_at: purchase.occurred_at,
        purchase_amount_minor: purchase.amount_minor,
        purchase_points_earned: purchase.points_earned,
        amount_minor,
        refunded_total_minor,
        points_clawed_back,
        balance_after,
        qualifying_points,
        occurred_at: at,
    }];
    if !progressed.is_empty() {
        events.push(MemberEvent::AchievementProgressed {
            progress: progressed,
            occurred_at: at,
        });
    }
    Ok(events)
}
