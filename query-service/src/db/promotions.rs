//! Promotions: statistics per promotion (`rm.promotion_statistics` with `rm.promotion_daily`),
//! and what a member's active promotions depend on besides the program: the member's uses
//! (`rm.promotion_uses`), last purchase (`rm.rfm_members`) and the org's budgets left.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use sqlx::types::Json;

use super::keys::{key_arrays, keyed, Keyed};
use super::Db;
use crate::error::QueryResult;

/// One promotion's statistics: awarded points after the cap, gross of later clawbacks.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PromotionStatsRow {
    pub promotion_id: String,
    /// `None` when the promotion is no longer in the program.
    pub name: Option<String>,
    pub uses: i64,
    pub points: i64,
    pub members: i64,
    pub budget_points: Option<i64>,
    pub budget_left: Option<i64>,
    pub daily: Json<Vec<PromotionDayRow>>,
}

/// One UTC day of a promotion.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromotionDayRow {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub uses: i64,
    pub points: i64,
}

/// A use of a promotion by a member.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UseRow {
    pub promotion_id: String,
    pub occurred_at: DateTime<Utc>,
}

/// What a member's past purchases say about promotions: enough to rebuild their
/// `EarnHistory` (first purchase, inactivity, per-member limits).
#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Deserialize)]
pub struct PromotionHistoryRow {
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub uses: Json<Vec<UseRow>>,
}

/// The last purchase and promotion uses of each member `$1`/`$2` name.
pub(super) const PROMOTION_HISTORIES: &str = "SELECT k.org_id, k.member_id, r.last_purchase_at, \
        (SELECT coalesce(json_agg(json_build_object('promotion_id', u.promotion_id, \
                  'occurred_at', u.occurred_at)), '[]') \
         FROM rm.promotion_uses u WHERE u.org_id = k.org_id AND u.member_id = k.member_id) AS uses \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 LEFT JOIN rm.rfm_members r USING (org_id, member_id)";

/// What is left of the budget of each budgeted promotion of the orgs in `$1`.
pub(super) const BUDGETS_LEFT: &str = "SELECT p.org_id, p.promotion_id, \
        greatest(p.budget_points - coalesce(s.budget_drawn, 0), 0) AS points_left \
 FROM rm.program_promotions p LEFT JOIN rm.promotion_stats s USING (org_id, promotion_id) \
 WHERE p.org_id = ANY($1::text[]) AND p.budget_points IS NOT NULL";

/// A budgeted promotion's budget left.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(super) struct BudgetRow {
    org_id: String,
    promotion_id: String,
    points_left: i64,
}

/// Budgets left per org, every org of `orgs` present (with none when it has no budget).
pub(super) fn budgets_by_org(
    orgs: &[String],
    rows: Vec<BudgetRow>,
) -> HashMap<String, BTreeMap<String, i64>> {
    let mut budgets: HashMap<String, BTreeMap<String, i64>> =
        orgs.iter().map(|org| (org.clone(), BTreeMap::new())).collect();
    for row in rows {
        budgets
            .entry(row.org_id)
            .or_default()
            .insert(row.promotion_id, row.points_left);
    }
    budgets
}

impl Db {
    /// Every promotion of the org's program, and every other one that was used, in the
    /// program's order (others last, by id), with its days oldest first.
    pub async fn promotion_stats(&self, org_id: &str) -> QueryResult<Vec<PromotionStatsRow>> {
        let rows = sqlx::query_as(
            // As the view `rm.promotion_statistics` reads, with the org filtered on both sides
            // of the join (so each side is read through its primary key).
            "SELECT promotion_id, p.name, coalesce(s.uses, 0) AS uses, coalesce(s.points, 0) AS points, \
                    coalesce(s.members, 0) AS members, p.budget_points, \
                    CASE WHEN p.budget_points IS NOT NULL \
                         THEN greatest(p.budget_points - coalesce(s.budget_drawn, 0), 0) END AS budget_left, \
                    (SELECT coalesce(json_agg(json_build_object('day', to_char(d.day, 'YYYY-MM-DD'), \
                              'uses', d.uses, 'points', d.points) ORDER BY d.day), '[]') \
                     FROM rm.promotion_daily d WHERE d.org_id = $1 \
                       AND d.promotion_id = coalesce(p.promotion_id, s.promotion_id)) AS daily \
             FROM (SELECT * FROM rm.program_promotions WHERE org_id = $1) p \
             FULL JOIN (SELECT * FROM rm.promotion_stats WHERE org_id = $1) s USING (promotion_id) \
             ORDER BY p.position NULLS LAST, promotion_id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Each member's last purchase and promotion uses; members who never purchased have no
    /// last purchase and no uses.
    pub async fn promotion_histories(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, PromotionHistoryRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<PromotionHistoryRow>> = sqlx::query_as(PROMOTION_HISTORIES)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(keyed(rows))
    }

    /// What is left of each budgeted promotion's budget, per org.
    pub async fn budgets_left(&self, orgs: &[String]) -> QueryResult<HashMap<String, BTreeMap<String, i64>>> {
        let rows: Vec<BudgetRow> = sqlx::query_as(BUDGETS_LEFT)
            .bind(orgs)
            .fetch_all(self.pool())
            .await?;
        Ok(budgets_by_org(orgs, rows))
    }
}
