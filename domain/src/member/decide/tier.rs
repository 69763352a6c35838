//! The tier re-evaluation (system job): an upgrade when the qualifying points reach a higher
//! tier, a grace period when they fall below the tier's threshold, and a downgrade of one tier
//! once the grace period is over.

use chrono::{DateTime, Duration, Utc};

use super::checks::enrolled;
use crate::member::commands::TierReview;
use crate::member::errors::MemberError;
use crate::member::events::MemberEvent;
use crate::member::state::Member;

pub(super) fn reevaluate_tier(member: &Member, command: TierReview) -> Result<Vec<MemberEvent>, MemberError> {
    let TierReview { as_of, program } = command;
    enrolled(member)?;
    if member.tier.last_reevaluation.is_some_and(|last| as_of <= last) {
        return Ok(Vec::new());
    }
    let config = &program.config;
    let qualifying_points = member.qualifying_points(as_of, config.qualification_window_days);
    let target = config.tier_for(qualifying_points);
    let grace_end = |from: DateTime<Utc>| {
        from.checked_add_signed(Duration::days(i64::from(config.downgrade_grace_days)))
            .ok_or(MemberError::Overflow { field: "as_of" })
    };
    let mut events = Vec::new();
    let Some(current) = config.tier_index(&member.tier.name) else {
        // The member's tier is no longer on the ladder (renamed or removed): there is no
        // rung to step down from, so the re-evaluation places them where their qualifying
        // points put them.
        let to = &config.tiers[target];
        let event = if to.multiplier_bps >= member.tier.multiplier_bps {
            MemberEvent::TierUpgraded {
                from: member.tier.name.clone(),
                to: to.name.clone(),
                multiplier_bps: to.multiplier_bps,
                qualifying_points,
                occurred_at: as_of,
                program_version: program.version,
            }
        } else {
            MemberEvent::TierDowngraded {
                from: member.tier.name.clone(),
                to: to.name.clone(),
                multiplier_bps: to.multiplier_bps,
                qualifying_points,
                as_of,
                program_version: program.version,
            }
        };
        return Ok(vec![event]);
    };
    if target > current {
        events.push(MemberEvent::TierUpgraded {
            from: member.tier.name.clone(),
            to: config.tiers[target].name.clone(),
            multiplier_bps: config.tiers[target].multiplier_bps,
            qualifying_points,
            occurred_at: as_of,
            program_version: program.version,
        });
    } else if target == current {
        if member.tier.grace.is_some() {
            events.push(MemberEvent::TierGracePeriodCleared {
                tier: member.tier.name.clone(),
                qualifying_points,
                as_of,
            });
        }
    } else {
        // With a grace period of 0 days the first re-evaluation below threshold is already
        // past its end.
        let due = match &member.tier.grace {
            None => grace_end(as_of)? <= as_of,
            Some(grace) => as_of >= grace.downgrade_after,
        };
        if due {
            // One tier at a time; a further step needs another full grace period.
            let lower = current - 1;
            events.push(MemberEvent::TierDowngraded {
                from: member.tier.name.clone(),
                to: config.tiers[lower].name.clone(),
                multiplier_bps: config.tiers[lower].multiplier_bps,
                qualifying_points,
                as_of,
                program_version: program.version,
            });
            if target < lower {
                events.push(MemberEvent::TierGracePeriodStarted {
                    tier: config.tiers[lower].name.clone(),
                    threshold_points: config.tiers[lower].threshold_points,
                    qualifying_points,
                    as_of,
                    downgrade_after: grace_end(as_of)?,
                });
            }
        } else if member.tier.grace.is_none() {
            events.push(MemberEvent::TierGracePeriodStarted {
                tier: member.tier.name.clone(),
                threshold_points: config.tiers[current].threshold_points,
                qualifying_points,
                as_of,
                downgrade_after: grace_end(as_of)?,
            });
        }
    }
    Ok(events)
}
