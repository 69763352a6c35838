//! A member's point counters: the balance and the five running totals that explain it. The
//! aggregate, the balance read model, the audit and both APIs show the same six numbers, and
//! every one of them moves by the rule of [`PointCounters::apply`].

use serde::{Deserialize, Serialize};

use crate::ledger::points_delta;
use crate::member::MemberEvent;

/// Balance = lifetime_earned + adjusted − redeemed − expired − clawed_back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PointCounters {
    pub balance: i64,
    /// Points earned by purchases (before any clawback) and achievement rewards.
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    /// Points taken back by refunds.
    pub clawed_back: i64,
    /// Net sum of admin adjustments (negative when debits outweigh credits).
    pub adjusted: i64,
}

/// One of the running totals (every points movement also moves the balance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    LifetimeEarned,
    Redeemed,
    Expired,
    ClawedBack,
    Adjusted,
}

impl Counter {
    /// The counter's field and column name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::LifetimeEarned => "lifetime_earned",
            Counter::Redeemed => "redeemed",
            Counter::Expired => "expired",
            Counter::ClawedBack => "clawed_back",
            Counter::Adjusted => "adjusted",
        }
    }
}

/// A counter that would leave the range of `i64`; names the counter (`"balance"` or a
/// [`Counter::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("arithmetic overflow in {0}")]
pub struct CounterOverflow(pub &'static str);

/// The running total `event` moves, and by how much; `None` when it moves no points.
pub fn movement(event: &MemberEvent) -> Option<(Counter, i64)> {
    match event {
        MemberEvent::PurchaseRecorded { points_earned, .. } => {
            Some((Counter::LifetimeEarned, *points_earned))
        }
        MemberEvent::PurchaseRefunded {
            points_clawed_back, ..
        } => Some((Counter::ClawedBack, *points_clawed_back)),
        MemberEvent::RewardRedeemed { points_cost, .. } => Some((Counter::Redeemed, *points_cost)),
        MemberEvent::PointsAdjusted { delta, .. } => Some((Counter::Adjusted, *delta)),
        MemberEvent::PointsExpired { points, .. } => Some((Counter::Expired, *points)),
        MemberEvent::AchievementUnlocked { reward_points, .. } => {
            Some((Counter::LifetimeEarned, *reward_points))
        }
        MemberEvent::AchievementProgressed { .. }
        | MemberEvent::MemberEnrolled { .. }
        | MemberEvent::StampCollected { .. }
        | MemberEvent::StampCardCompleted { .. }
        | MemberEvent::TierUpgraded { .. }
        | MemberEvent::TierGracePeriodStarted { .. }
        | MemberEvent::TierGracePeriodCleared { .. }
        | MemberEvent::TierDowngraded { .. } => None,
    }
}

impl PointCounters {
    pub fn get(&self, counter: Counter) -> i64 {
        match counter {
            Counter::LifetimeEarned => self.lifetime_earned,
            Counter::Redeemed => self.redeemed,
            Counter::Expired => self.expired,
            Counter::ClawedBack => self.clawed_back,
            Counter::Adjusted => self.adjusted,
        }
    }

    fn get_mut(&mut self, counter: Counter) -> &mut i64 {
        match counter {
            Counter::LifetimeEarned => &mut self.lifetime_earned,
            Counter::Redeemed => &mut self.redeemed,
            Counter::Expired => &mut self.expired,
            Counter::ClawedBack => &mut self.clawed_back,
            Counter::Adjusted => &mut self.adjusted,
        }
    }

    /// The counters after `event`, or the counter that would overflow (then `self` is kept).
    pub fn after(&self, event: &MemberEvent) -> Result<PointCounters, CounterOverflow> {
        let Some((counter, amount)) = movement(event) else {
            return Ok(*self);
        };
        let mut next = *self;
        next.balance = next
            .balance
            .checked_add(points_delta(event))
            .ok_or(CounterOverflow("balance"))?;
        let total = next.get_mut(counter);
        *total = total.checked_add(amount).ok_or(CounterOverflow(counter.name()))?;
        Ok(next)
    }

    /// Moves the counters by `event`. The deciders refuse any command whose events would
    /// overflow a counter, so an overflow here means a corrupt history: the counters saturate
    /// rather than wrap.
    pub fn apply(&mut self, event: &MemberEvent) {
        if let Some((counter, amount)) = movement(event) {
            self.balance = self.balance.saturating_add(points_delta(event));
            let total = self.get_mut(counter);
            *total = total.saturating_add(amount);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn adjusted(delta: i64) -> MemberEvent {
        MemberEvent::PointsAdjusted {
            adjustment_id: "a".into(),
            delta,
            reason: "r".into(),
            expires_at: None,
            balance_after: 0,
            occurred_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn an_adjustment_moves_the_balance_and_the_adjusted_total() {
        let mut counters = PointCounters::default();
        counters.apply(&adjusted(50));
        counters.apply(&adjusted(-20));
        assert_eq!(counters.balance, 30);
        assert_eq!(counters.adjusted, 30);
        assert_eq!(counters.after(&adjusted(5)).unwrap().balance, 35);
    }

    #[test]
    fn overflow_names_the_counter() {
        let counters = PointCounters {
            balance: 0,
            adjusted: i64::MAX,
            ..Default::default()
        };
        assert_eq!(counters.after(&adjusted(1)), Err(CounterOverflow("adjusted")));
        let counters = PointCounters {
            balance: i64::MAX,
            ..Default::default()
        };
        assert_eq!(counters.after(&adjusted(1)), Err(CounterOverflow("balance")));
    }
}
