//! Balances (`rm.member_balances`) and the org's liability (`rm.org_liability`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;

use super::keys::{key_arrays, keyed, Keyed};
use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Deserialize)]
pub struct BalanceRow {
    pub balance: i64,
    pub lifetime_earned: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
    pub next_expiry_points: Option<i64>,
    pub next_expiry_at: Option<DateTime<Utc>>,
}

/// Balances of the members `$1`/`$2` name.
pub(super) const BALANCES: &str =
    "SELECT b.org_id, b.member_id, b.balance, b.lifetime_earned, b.redeemed, b.expired, \
        b.clawed_back, b.adjusted, b.next_expiry_points, b.next_expiry_at \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.member_balances b USING (org_id, member_id)";

impl Db {
    pub async fn balances(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, BalanceRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<BalanceRow>> = sqlx::query_as(BALANCES)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(keyed(rows))
    }

    /// Points the org owes its members.
    pub async fn liability(&self, org_id: &str) -> QueryResult<i64> {
        let points: Option<i64> = sqlx::query_scalar("SELECT points FROM rm.org_liability WHERE org_id = $1")
            .bind(org_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(points.unwrap_or(0))
    }
}
