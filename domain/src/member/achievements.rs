//! A member's progress toward the program's achievements (SPEC §9): moved by every purchase and
//! refund, judged for unlocks on purchases only, each unlocked at most once and never taken
//! back.
//!
//! Readings where SPEC §9 is silent: a fully refunded purchase no longer counts as a purchase,
//! a visited location or a week of a streak (a returned basket is not a visit), and spend is
//! always net of refunds. Without `window_days` every purchase recorded so far counts; with it,
//! those whose `occurred_at` lies in `(at − window_days × 24 h, at]`. A streak is the run of
//! consecutive local ISO weeks with a purchase ending with the week of `at`, or with the week
//! before when `at`'s week has none yet (a refund must not show a live streak as broken).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::state::{window, Member};
use crate::calendar::{Period, TimeZone};
use crate::program::{Achievement, Criteria};

/// One achievement's progress as of the member's latest purchase or refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementProgress {
    pub achievement_id: String,
    pub progress: i64,
    pub target: i64,
}

/// Where a member stands on one achievement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AchievementState {
    pub progress: i64,
    pub target: i64,
    pub unlocked_at: Option<DateTime<Utc>>,
}

/// A purchase as the criteria see it.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    pub occurred_at: DateTime<Utc>,
    pub location_id: &'a str,
    /// Amount net of refunds.
    pub net_minor: i64,
}

impl Visit<'_> {
    fn counts(&self) -> bool {
        self.net_minor > 0
    }
}

/// What is being judged: a purchase about to be recorded, or a refund bringing a purchase's
/// refunded total to `refunded_total_minor`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    Purchase(Visit<'a>),
    Refund {
        transaction_id: &'a str,
        refunded_total_minor: i64,
    },
}

/// The member's purchases as visits, with `change` applied.
fn visits<'a>(member: &'a Member, change: Change<'a>) -> Vec<Visit<'a>> {
    let refund = match change {
        Change::Refund {
            transaction_id,
            refunded_total_minor,
        } => Some((transaction_id, refunded_total_minor)),
        Change::Purchase(_) => None,
    };
    let mut visits: Vec<Visit<'a>> = member
        .purchases
        .iter()
        .map(|(transaction_id, p)| {
            let refunded = match refund {
                Some((id, total)) if id == transaction_id => total,
                _ => p.refunded_minor,
            };
            Visit {
                occurred_at: p.occurred_at,
                location_id: &p.location_id,
                net_minor: p.amount_minor - refunded,
            }
        })
        .collect();
    if let Change::Purchase(visit) = change {
        visits.push(visit);
    }
    visits
}

/// The progress of `achievement` at `at` over `visits`, in the criterion's unit.
pub fn progress(
    achievement: &Achievement,
    time_zone: TimeZone,
    at: DateTime<Utc>,
    visits: &[Visit<'_>],
) -> i64 {
    let in_window = achievement.window_days.map(|days| window(at, days));
    let in_scope = |v: &&Visit<'_>| {
        in_window
            .as_ref()
            .is_none_or(|in_window| in_window(v.occurred_at))
    };
    let counted = visits.iter().filter(in_scope).filter(|v| v.counts());
    match achievement.criteria {
        Criteria::Purchases { .. } => counted.count() as i64,
        Criteria::Spend { .. } => visits
            .iter()
            .filter(in_scope)
            .fold(0i64, |sum, v| sum.saturating_add(v.net_minor)),
        Criteria::Locations { .. } => counted.map(|v| v.location_id).collect::<BTreeSet<_>>().len() as i64,
        Criteria::WeeklyStreak { .. } => {
            let weeks: BTreeSet<_> = counted
                .map(|v| time_zone.period_start(Period::Week, v.occurred_at))
                .collect();
            let mut week = time_zone.period_start(Period::Week, at);
            if !weeks.contains(&week) {
                week -= Duration::days(7);
            }
            let mut streak = 0;
            while weeks.contains(&week) {
                streak += 1;
                week -= Duration::days(7);
            }
            streak
        }
    }
}

/// What a purchase or refund does to the member's achievements.
#[derive(Debug, Default)]
pub(crate) struct Judgement<'p> {
    /// Every not-yet-unlocked achievement whose progress or target moved.
    pub progressed: Vec<AchievementProgress>,
    /// The achievements this purchase unlocks, in program order.
    pub unlocked: Vec<&'p Achievement>,
}

/// Judges `achievements` at `at` after `change`; only a purchase may unlock. Nothing is read of
/// the member's history when the program has no achievements.
pub(crate) fn judge<'p>(
    member: &Member,
    achievements: &'p [Achievement],
    time_zone: TimeZone,
    at: DateTime<Utc>,
    change: Change<'_>,
) -> Judgement<'p> {
    let mut judgement = Judgement::default();
    if achievements.is_empty() {
        return judgement;
    }
    let may_unlock = matches!(change, Change::Purchase(_));
    let visits = visits(member, change);
    let visits = visits.as_slice();
    for achievement in achievements {
        let state = member.achievements.get(&achievement.achievement_id);
        if state.is_some_and(|s| s.unlocked_at.is_some()) {
            continue;
        }
        let progress = progress(achievement, time_zone, at, visits);
        let target = achievement.criteria.target();
        if state.is_none_or(|s| s.progress != progress || s.target != target)
            && (progress != 0 || state.is_some())
        {
            judgement.progressed.push(AchievementProgress {
                achievement_id: achievement.achievement_id.clone(),
                progress,
                target,
            });
        }
        if may_unlock && progress >= target {
            judgement.unlocked.push(achievement);
        }
    }
    judgement
}
