//! Tiers: progress (`rm.member_tier_progress`), history (`rm.tier_history`) and members per
//! tier (`rm.member_tiers`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;

use super::keys::{grouped_keyed, key_arrays, keyed, Keyed};
use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TierRow {
    pub tier: String,
    pub multiplier_bps: i32,
    pub qualifying_points: i64,
    pub next_tier: Option<String>,
    pub points_to_next: Option<i64>,
    pub points_to_keep: Option<i64>,
    pub keep_by: Option<DateTime<Utc>>,
    pub in_grace: bool,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TierChangeRow {
    pub sequence: i64,
    pub change: String,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub qualifying_points: i64,
    pub at: DateTime<Utc>,
    pub downgrade_after: Option<DateTime<Utc>>,
}

/// Tier progress of the members `$1`/`$2` name.
pub(super) const TIERS: &str =
    "SELECT t.org_id, t.member_id, t.tier, t.multiplier_bps, t.qualifying_points, t.next_tier, \
        t.points_to_next, t.points_to_keep, t.keep_by, t.in_grace \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.member_tier_progress t USING (org_id, member_id)";

/// Tier changes of the members `$1`/`$2` name, oldest first.
pub(super) const TIER_HISTORY: &str =
    "SELECT h.org_id, h.member_id, h.sequence, h.change, h.from_tier, h.to_tier, \
        h.qualifying_points, h.at, h.downgrade_after \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.tier_history h USING (org_id, member_id) \
 ORDER BY h.org_id, h.member_id, h.sequence";

impl Db {
    pub async fn tiers(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, TierRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<TierRow>> = sqlx::query_as(TIERS)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(keyed(rows))
    }

    /// Tier changes of many members, oldest first.
    pub async fn tier_history(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<TierChangeRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<TierChangeRow>> = sqlx::query_as(TIER_HISTORY)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(grouped_keyed(rows))
    }

    /// Members per tier: the program's ladder in order (empty tiers included), then any tier
    /// members still hold that the current ladder no longer has.
    pub async fn tier_distribution(&self, org_id: &str) -> QueryResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT coalesce(p.name, t.tier) AS tier, coalesce(t.count, 0) AS count \
             FROM (SELECT name, position FROM rm.program_tiers WHERE org_id = $1) p \
             FULL JOIN (SELECT tier, count(*) AS count FROM rm.member_tiers WHERE org_id = $1 GROUP BY tier) t \
               ON t.tier = p.name \
             ORDER BY p.position NULLS LAST, tier",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?)
    }
}
