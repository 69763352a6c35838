//! Recording a purchase: points as SPEC §3 and §9 define them (the tier multiplier of the
//! tier before the purchase, the promotions that apply, the earn cap), stamps, and a tier
//! upgrade when the purchase crosses a threshold. A quote runs the same checks and the same
//! earn decision, and records nothing.

use chrono::{DateTime, SubsecRound as _, Utc};

use super::checks::{add_days, check_amount, check_id, enrolled};
use super::items::check_items;
use crate::ids::is_slug;
use crate::member::achievements::{judge, Change, Visit};
use crate::member::commands::{Purchase, Receipt};
use crate::member::earn::{earn, Breakdown, EarnRules, Line, PurchaseFacts};
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::limits::MAX_CLOCK_SKEW;
use crate::member::state::{in_window, Member};
use crate::money::currency_digits;
use crate::program::ProgramSnapshot;

/// Every check a purchase must pass before anything is earned; the receipt's `occurred_at` as
/// recorded (to the microsecond).
fn check_purchase(member: &Member, purchase: &Purchase) -> Result<DateTime<Utc>, MemberError> {
    let Purchase {
        receipt,
        program,
        recorded_at,
        ..
    } = purchase;
    // Postgres keeps microseconds: a receipt time finer than that would come back from the
    // read models different from the event, and its refund would no longer match it.
    let occurred_at = receipt.occurred_at.trunc_subsecs(6);
    enrolled(member)?;
    check_id("transaction_id", &receipt.transaction_id)?;
    if !is_slug(&receipt.location_id) {
        return Err(MemberError::InvalidLocationId(receipt.location_id.clone()));
    }
    if !program.locations.contains(&receipt.location_id) {
        return Err(MemberError::UnknownLocation(receipt.location_id.clone()));
    }
    check_amount("amount_minor", receipt.amount_minor)?;
    if currency_digits(&receipt.currency).is_none() {
        return Err(MemberError::UnknownCurrency(receipt.currency.clone()));
    }
    if receipt.currency != program.config.currency {
        return Err(MemberError::CurrencyMismatch {
            expected: program.config.currency.clone(),
            got: receipt.currency.clone(),
        });
    }
    if occurred_at > *recorded_at + MAX_CLOCK_SKEW {
        return Err(MemberError::OccurredInFuture(occurred_at));
    }
    check_items(receipt.items.as_deref(), receipt.amount_minor)?;
    Ok(occurred_at)
}

/// The points of a checked purchase (SPEC §9 "Points of a purchase"), for the member's tier
/// before the purchase, their own history and the budgets the command carries.
fn decide_points(
    member: &Member,
    purchase: &Purchase,
    occurred_at: DateTime<Utc>,
) -> Result<Breakdown, MemberError> {
    let Purchase {
        receipt,
        program,
        budgets_left,
        ..
    } = purchase;
    let config = &program.config;
    let (_, multiplier_bps) = current_tier(member, program);
    let whole = [Line::whole_purchase(receipt.amount_minor)];
    let rules = EarnRules {
        earn_rate: config.earn_rate,
        digits: config.currency_digits(),
        time_zone: config.time_zone,
        promotions: &config.promotions,
        earn_cap: config.earn_cap,
    };
    let facts = PurchaseFacts {
        amount_minor: receipt.amount_minor,
        location_id: &receipt.location_id,
        occurred_at,
        lines: receipt.items.as_deref().unwrap_or(&whole),
        tier: &member.tier.name,
        tier_multiplier_bps: multiplier_bps,
    };
    earn(&rules, &facts, &member.earn_history, budgets_left).map_err(|overflow| MemberError::Overflow {
        field: overflow.field,
    })
}

/// The breakdown `purchase` would earn now, recording nothing: the checks and the decision of
/// [`record_purchase`], without its duplicate check (a quote is asked before the purchase).
pub(crate) fn quote(member: &Member, purchase: &Purchase) -> Result<Breakdown, MemberError> {
    let occurred_at = check_purchase(member, purchase)?;
    decide_points(member, purchase, occurred_at)
}

pub(super) fn record_purchase(member: &Member, command: Purchase) -> Result<Vec<MemberEvent>, MemberError> {
    let occurred_at = check_purchase(member, &command)?;
    if let Some(existing) = member.purchases.get(&command.receipt.transaction_id) {
        // The same receipt sent twice is the same purchase: never a second earn.
        let receipt = &command.receipt;
        let same = existing.amount_minor == receipt.amount_minor
            && existing.currency == receipt.currency
            && existing.location_id == receipt.location_id
            && existing.occurred_at == occurred_at
            && existing.items == receipt.items;
        return if same {
            Ok(Vec::new())
        } else {
            Err(MemberError::TransactionConflict(receipt.transaction_id.clone()))
        };
    }
    let breakdown = decide_points(member, &command, occurred_at)?;
    let Purchase {
        receipt:
            Receipt {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                items,
                ..
            },
        program,
        recorded_at,
        ..
    } = command;
    let config = &program.config;
    let (tier_index, multiplier_bps) = current_tier(member, &program);
    let overflow = MemberError::Overflow {
        field: "amount_minor",
    };
    let points = breakdown.total;
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
    // after it was printed, and a receipt older than the window no longer qualifies. A
    // purchase qualifies with its whole total (promotion points included, after the cap).
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
        location_id: location_id.clone(),
        amount_minor,
        currency,
        occurred_at,
        program_version: program.version,
        base_points: breakdown.base,
        tier: member.tier.name.clone(),
        multiplier_bps,
        points_earned: points,
        expires_at,
        balance_after,
        qualifying_points,
        items,
        breakdown,
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

    let visit = Visit {
        occurred_at,
        location_id: &location_id,
        net_minor: amount_minor,
    };
    let judgement = judge(
        member,
        &config.achievements,
        config.time_zone,
        occurred_at,
        Change::Purchase(visit),
    );
    if !judgement.progressed.is_empty() {
        events.push(MemberEvent::AchievementProgressed {
            progress: judgement.progressed,
            occurred_at,
        });
    }
    // Rewards are credited after the purchase's own points, in program order.
    let mut balance = balance_after;
    let mut lifetime = member.points.lifetime_earned.saturating_add(points);
    for achievement in judgement.unlocked {
        let overflow = MemberError::Overflow {
            field: "reward_points",
        };
        balance = balance
            .checked_add(achievement.reward_points)
            .ok_or(overflow.clone())?;
        lifetime = lifetime.checked_add(achievement.reward_points).ok_or(overflow)?;
        events.push(MemberEvent::AchievementUnlocked {
            achievement_id: achievement.achievement_id.clone(),
            name: achievement.name.clone(),
            badge: achievement.badge().to_owned(),
            reward_points: achievement.reward_points,
            transaction_id: transaction_id.clone(),
            expires_at,
            balance_after: balance,
            occurred_at,
            program_version: program.version,
        });
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
