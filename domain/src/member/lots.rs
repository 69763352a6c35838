//! A member's expiry lots: points earned together and expiring together, taken by debits
//! soonest expiry first (SPEC §4).
//!
//! Lots are kept in the order debits take them. Points earned at the same instant and expiring
//! at the same instant are interchangeable, so they are one lot: the order is then total, and a
//! read model can key its rows by [`LotKey`] and read only the first lots of a long history
//! (what a debit reaches), knowing that the rest are untouched.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::MemberEvent;

/// Points earned together, expiring together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub earned_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub remaining: i64,
}

impl Lot {
    pub fn key(&self) -> LotKey {
        LotKey {
            expires_at: self.expires_at,
            earned_at: self.earned_at,
        }
    }
}

/// A lot's place in the order debits take lots: soonest expiry first, never-expiring last,
/// then earliest earned first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LotKey {
    pub expires_at: Option<DateTime<Utc>>,
    pub earned_at: DateTime<Utc>,
}

impl Ord for LotKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let order = |k: &LotKey| (k.expires_at.is_none(), k.expires_at, k.earned_at);
        order(self).cmp(&order(other))
    }
}

impl PartialOrd for LotKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The lots of a member, positive remaining only, in the order debits take them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Lot>", into = "Vec<Lot>")]
pub struct Lots(BTreeMap<LotKey, i64>);

impl Lots {
    /// Adds `points` (> 0) to the lot `key`.
    pub fn credit(&mut self, key: LotKey, points: i64) {
        if points > 0 {
            *self.0.entry(key).or_default() += points;
        }
    }

    /// Takes `points` from the lots, first lot first; returns what the lots could not cover.
    pub fn debit(&mut self, points: i64) -> i64 {
        let mut left = points;
        while left > 0 {
            let Some(mut first) = self.0.first_entry() else {
                break;
            };
            let take = (*first.get()).min(left);
            *first.get_mut() -= take;
            left -= take;
            if *first.get() == 0 {
                first.remove();
            }
        }
        left
    }

    /// Drops the lots that expire at or before `as_of`.
    pub fn expire(&mut self, as_of: DateTime<Utc>) {
        while let Some(first) = self.0.first_entry() {
            if first.key().expires_at.is_some_and(|at| at <= as_of) {
                first.remove();
            } else {
                break;
            }
        }
    }

    /// Points in lots that expire at or before `as_of`.
    pub fn due(&self, as_of: DateTime<Utc>) -> i64 {
        self.0
            .iter()
            .take_while(|(k, _)| k.expires_at.is_some_and(|at| at <= as_of))
            .map(|(_, points)| points)
            .sum()
    }

    /// `(points, at)` of the lots that expire next: the soonest expiry and the points of every
    /// lot that expires then, starting from `before`, that of lots not among these.
    pub fn next_expiry(&self, before: Option<(i64, DateTime<Utc>)>) -> Option<(i64, DateTime<Utc>)> {
        let mut expiring = self
            .0
            .iter()
            .filter_map(|(k, points)| Some((*points, k.expires_at?)));
        let Some((first, at)) = expiring.next() else {
            return before;
        };
        let here = first
            + expiring
                .take_while(|(_, next)| *next == at)
                .map(|(points, _)| points)
                .sum::<i64>();
        match before {
            Some((points, soonest)) if soonest < at => Some((points, soonest)),
            Some((points, soonest)) if soonest == at => Some((points + here, at)),
            _ => Some((here, at)),
        }
    }

    pub fn get(&self, key: &LotKey) -> Option<i64> {
        self.0.get(key).copied()
    }

    pub fn total(&self) -> i64 {
        self.0.values().sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<LotKey> {
        self.0.keys().next().copied()
    }

    /// The lots in the order debits take them.
    pub fn iter(&self) -> impl Iterator<Item = (LotKey, i64)> + '_ {
        self.0.iter().map(|(k, points)| (*k, *points))
    }

    /// The lots at or before `through` in the order debits take them.
    pub fn through(&self, through: LotKey) -> impl Iterator<Item = (LotKey, i64)> + '_ {
        self.0.range(..=through).map(|(k, points)| (*k, *points))
    }
}

/// The lots an event may change, as they were before it: what undoes it ([`Lots::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLots(Vec<(LotKey, Option<i64>)>);

impl Lots {
    /// Saves the lots `event` may change (the first ones it takes from, the one it credits),
    /// so that a caller folding a long history can undo one event without copying every lot.
    pub fn save_for(&self, event: &MemberEvent) -> SavedLots {
        let mut saved: Vec<(LotKey, Option<i64>)> = match takes_from_lots(event) {
            Some(Take::Points(points)) => {
                let mut before = 0;
                self.iter()
                    .take_while(|(_, p)| {
                        let reached = before >= points;
                        before += p;
                        !reached
                    })
                    .map(|(k, p)| (k, Some(p)))
                    .collect()
            }
            Some(Take::DueBy(as_of)) => self
                .iter()
                .take_while(|(k, _)| k.expires_at.is_some_and(|at| at <= as_of))
                .map(|(k, p)| (k, Some(p)))
                .collect(),
            None => Vec::new(),
        };
        if let Some(key) = credited_lot(event) {
            saved.push((key, self.get(&key)));
        }
        SavedLots(saved)
    }

    /// Puts back what [`Lots::save_for`] saved, after the event was applied.
    pub fn restore(&mut self, saved: SavedLots) {
        for (key, points) in saved.0 {
            match points {
                Some(points) => {
                    self.0.insert(key, points);
                }
                None => {
                    self.0.remove(&key);
                }
            }
        }
    }
}

/// The lot an event credits, if it earns points.
pub(super) fn credited_lot(event: &MemberEvent) -> Option<LotKey> {
    match event {
        MemberEvent::PurchaseRecorded {
            occurred_at,
            expires_at,
            ..
        }
        | MemberEvent::AchievementUnlocked {
            occurred_at,
            expires_at,
            ..
        } => Some((*occurred_at, *expires_at)),
        MemberEvent::PointsAdjusted {
            delta,
            occurred_at,
            expires_at,
            ..
        } if *delta > 0 => Some((*occurred_at, *expires_at)),
        _ => None,
    }
    .map(|(earned_at, expires_at)| LotKey {
        expires_at,
        earned_at,
    })
}

impl FromIterator<Lot> for Lots {
    fn from_iter<I: IntoIterator<Item = Lot>>(lots: I) -> Self {
        let mut all = Lots::default();
        for lot in lots {
            all.credit(lot.key(), lot.remaining);
        }
        all
    }
}

impl From<Vec<Lot>> for Lots {
    fn from(lots: Vec<Lot>) -> Self {
        lots.into_iter().collect()
    }
}

impl From<Lots> for Vec<Lot> {
    fn from(lots: Lots) -> Self {
        lots.0
            .into_iter()
            .map(|(k, remaining)| Lot {
                earned_at: k.earned_at,
                expires_at: k.expires_at,
                remaining,
            })
            .collect()
    }
}

/// What an event takes from the member's lots, in the order debits take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// At most these points, from the first lots on.
    Points(i64),
    /// Every lot that expires at or before this instant.
    DueBy(DateTime<Utc>),
}

impl Take {
    /// Whether the lots read in debit order through `through` (`None`: none), holding
    /// `points_through` points, hold everything this takes.
    pub fn within(self, points_through: i64, through: Option<LotKey>) -> bool {
        match self {
            Take::Points(points) => points_through >= points,
            // Every lot due by then comes before the first that is not.
            Take::DueBy(as_of) => through.is_some_and(|k| k.expires_at.is_none_or(|at| at > as_of)),
        }
    }
}

/// What `event` takes from the member's existing lots. Every other event at most adds points
/// to one lot, which it decides from the balance alone: it can be applied to some of the lots
/// without the others (the projector relies on this not to read a long history's lots for a
/// purchase, and to read only the first lots for a redemption).
pub fn takes_from_lots(event: &MemberEvent) -> Option<Take> {
    match event {
        MemberEvent::PurchaseRefunded {
            points_clawed_back, ..
        } => Some(Take::Points(*points_clawed_back)),
        MemberEvent::RewardRedeemed { points_cost, .. } => Some(Take::Points(*points_cost)),
        MemberEvent::PointsExpired { as_of, .. } => Some(Take::DueBy(*as_of)),
        MemberEvent::PointsAdjusted { delta, .. } if *delta < 0 => Some(Take::Points(-delta)),
        _ => None,
    }
    .filter(|take| *take != Take::Points(0))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, day, 12, 0, 0).unwrap()
    }

    fn key(earned: u32, expires: Option<u32>) -> LotKey {
        LotKey {
            earned_at: at(earned),
            expires_at: expires.map(at),
        }
    }

    #[test]
    fn debits_take_the_soonest_expiry_first_and_never_expiring_last() {
        let mut lots = Lots::default();
        lots.credit(key(1, None), 50);
        lots.credit(key(2, Some(20)), 30);
        lots.credit(key(3, Some(10)), 20);
        assert_eq!(lots.debit(40), 0);
        assert_eq!(
            lots.iter().collect::<Vec<_>>(),
            vec![(key(2, Some(20)), 10), (key(1, None), 50)]
        );
        assert_eq!(lots.debit(100), 40, "what the lots could not cover");
        assert!(lots.is_empty());
    }

    #[test]
    fn points_earned_and_expiring_together_are_one_lot() {
        let lots: Lots = vec![
            Lot {
                earned_at: at(2),
                expires_at: Some(at(9)),
                remaining: 5,
            },
            Lot {
                earned_at: at(2),
                expires_at: Some(at(9)),
                remaining: 20,
            },
        ]
        .into();
        assert_eq!(lots.len(), 1);
        assert_eq!(lots.get(&key(2, Some(9))), Some(25));
    }

    #[test]
    fn expiry_drops_what_is_due_and_next_expiry_sums_the_soonest_day() {
        let mut lots = Lots::default();
        lots.credit(key(1, Some(5)), 10);
        lots.credit(key(2, Some(6)), 7);
        lots.credit(key(3, Some(6)), 8);
        lots.credit(key(4, None), 100);
        assert_eq!(lots.due(at(6)), 25);
        assert_eq!(lots.next_expiry(None), Some((10, at(5))));
        lots.expire(at(5));
        assert_eq!(lots.next_expiry(None), Some((15, at(6))));
        assert_eq!(lots.next_expiry(Some((3, at(6)))), Some((18, at(6))));
        assert_eq!(lots.next_expiry(Some((3, at(4)))), Some((3, at(4))));
        lots.expire(at(30));
        assert_eq!(lots.next_expiry(None), None);
        assert_eq!(lots.total(), 100);
    }
}
