//! Recording a purchase: points at the member's tier multiplier, stamps, and a tier upgrade
//! when the purchase crosses a threshold.

use chrono::SubsecRound as _;

use super::checks::{add_days, check_amount, check_id, enrolled};
use crate::ids::is_slug;
use crate::member::commands::{Purchase, Receipt};
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::limits::MAX_CLOCK_SKEW;
use crate::member::state::{in_window, Member};
use crate::money::{apply_multiplier, base_points, currency_digits};
use crate::program::ProgramSnapshot;

pub(super) fn record_purchase(member: &Member, command: Purchase) -> Result<Vec<MemberEvent>, MemberError> {
    let Purchase {
        receipt:
            Receipt {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                occurred_at,
            },
        program,
        recorded_at,
    } = command;
    // Postgres keeps microseconds: a receipt time finer than that would come back from the
    // read models different from the event, and its refund would no longer match it.
    let occurred_at = occurred_at.trunc_subsecs(6);
    enrolled(member)?;
    check_id("transaction_id", &transaction_id)?;
    if !is_slug(&location_id) {
        return Err(MemberError::InvalidLocationId(location_id));
    }
    if !program.locations.contains(&location_id) {
        return Err(MemberError::UnknownLocation(location_id));
    }
    check_amount("amount_minor", amount_minor)?;
    let digits = currency_digits(&currency).ok_or_else(|| MemberError::UnknownCurrency(currency.clone()))?;
    let config = &program.config;
    if currency != config.currency {
        return Err(MemberError::CurrencyMismatch {
            expected: config.currency.clone(),
            got: currency,
        });
    }
    if occurred_at > recorded_at + MAX_CLOCK_SKEW {
        return Err(MemberError::OccurredInFuture(occurred_at));
    }
    if let Some(existing) = member.purchases.get(&transaction_id) {
        // The same receipt sent twice is the same purchase: never a second earn.
        let same = existing.amount_minor == amount_minor
            && existing.currency == currency
            && existing.location_id == location_id
            && existing.occurred_at == occurred_at;
        return if same {
            Ok(Vec::new())
        } else {
            Err(MemberError::TransactionConflict(transaction_id))
        };
    }

    let (tier_index, multiplier_bps) = current_tier(member, &program);
    let overflow = MemberError::Overflow {
        field: "amount_minor",
    };
    let base = base_points(amount_minor, config.earn_rate, digits).ok_or(overflow.clone())?;
    let points = apply_multiplier(base, multiplier_bps).ok_or(overflow.clone())?;
    let balance_after = member
        .points
        .balance
        .checked_add(points)
        .ok_or(overflow.clone())?;
    member
        .points
        .lifetime_earned
        .checked_add(points)
        .ok_or(overflow)?;
    let expires_at = add_days(occurred_at, config.expiry_days, "occurred_at")?;
    // Qualification is judged now, when the purchase is recorded, not at the receipt's time:
    // a receipt that an offline terminal sends late must still see the purchases recorded
    // after it was printed, and a receipt older than the window no longer qualifies.
    let as_of = recorded_at.max(occurred_at);
    let window = config.qualification_window_days;
    let own_points = if in_window(occurred_at, as_of, window) {
        points
    } else {
        0
    };
    let qualifying_points = member
        .qualifying_points(as_of, window)
        .checked_add(own_points)
        .ok_or(MemberError::Overflow {
            field: "amount_minor",
        })?;
    let day = occurred_at.date_naive();

    let mut events = vec![MemberEvent::PurchaseRecorded {
        transaction_id: transaction_id.clone(),
        location_id,
        amount_minor,
        currency,
        occurred_at,
        program_version: program.version,
        base_points: base,
        tier: member.tier.name.clone(),
        multiplier_bps,
        points_earned: points,
        expires_at,
        balance_after,
        qualifying_points,
    }];

    for card in &config.stamp_cards {
        let progress = member.stamp_cards.get(&card.card_id);
        if amount_minor < card.min_amount_minor || progress.is_some_and(|p| p.stamped_days.contains(&day)) {
            continue;
        }
        let stamps = progress.map_or(0, |p| p.stamps) + 1;
        events.push(MemberEvent::StampCollected {
            card_id: card.card_id.clone(),
            transaction_id: transaction_id.clone(),
            day,
            stamps,
            stamps_required: card.stamps_required,
            occurred_at,
        });
        if stamps >= card.stamps_required {
            events.push(MemberEvent::StampCardCompleted {
                card_id: card.card_id.clone(),
                reward_id: card.reward_id.clone(),
                transaction_id: transaction_id.clone(),
                cards_completed: progress.map_or(0, |p| p.completed) + 1,
                occurred_at,
            });
        }
    }

    // The purchase that crosses a threshold earned at the old multiplier (above); the
    // upgrade applies from the next purchase.
    let target = config.tier_for(qualifying_points);
    let upgrade = match tier_index {
        Some(current) => target > current,
        // A tier the program no longer has (renamed or removed): a purchase may move the
        // member to a ladder tier at least as rewarding, never down.
        None => config.tiers[target].multiplier_bps >= multiplier_bps,
    };
    if upgrade {
        events.push(MemberEvent::TierUpgraded {
            from: member.tier.name.clone(),
            to: config.tiers[target].name.clone(),
            multiplier_bps: config.tiers[target].multiplier_bps,
            qualifying_points,
            occurred_at,
            program_version: program.version,
        });
    } else if let (Some(current), Some(_)) = (tier_index, &member.tier.grace) {
        if qualifying_points >= config.tiers[current].threshold_points {
            events.push(MemberEvent::TierGracePeriodCleared {
                tier: member.tier.name.clone(),
                qualifying_points,
                as_of: occurred_at,
            });
        }
    }

    Ok(events)
}

/// The member's tier on the program's ladder (`None` if the ladder no longer has it) and the
/// multiplier a purchase earns at.
fn current_tier(member: &Member, program: &ProgramSnapshot) -> (Option<usize>, u32) {
    let index = program.config.tier_index(&member.tier.name);
    let multiplier = index
        .map(|i| program.config.tiers[i].multiplier_bps)
        .unwrap_or(member.tier.multiplier_bps);
    (index, multiplier)
}
