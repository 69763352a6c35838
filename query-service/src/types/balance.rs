//! A member's points, and what the org owes in total.

use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::db::BalanceRow;

/// A member's points.
pub struct Balance(pub BalanceRow);

/// A member's points.
#[Object]
impl Balance {
    /// Points available now (negative only while a refund's clawback is owed).
    async fn points(&self) -> i64 {
        self.0.balance
    }
    /// Points ever earned by purchases.
    async fn lifetime_earned(&self) -> i64 {
        self.0.lifetime_earned
    }
    /// Points spent on rewards.
    async fn redeemed(&self) -> i64 {
        self.0.redeemed
    }
    /// Points that expired.
    async fn expired(&self) -> i64 {
        self.0.expired
    }
    /// Points taken back by refunds.
    async fn clawed_back(&self) -> i64 {
        self.0.clawed_back
    }
    /// Net of manual adjustments.
    async fn adjusted(&self) -> i64 {
        self.0.adjusted
    }
    /// The points that expire next, and when; null if none do.
    async fn next_expiry(&self) -> Option<PointsExpiry> {
        Some(PointsExpiry {
            points: self.0.next_expiry_points?,
            date: self.0.next_expiry_at?,
        })
    }
}

/// Points expiring together.
#[derive(SimpleObject)]
pub struct PointsExpiry {
    /// How many points expire.
    pub points: i64,
    /// When they expire.
    pub date: DateTime<Utc>,
}

/// What the org owes its members.
#[derive(SimpleObject)]
pub struct Liability {
    /// Outstanding points: the sum of all member balances.
    pub points: i64,
}
