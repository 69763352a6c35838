//! Achievements (`rm.member_achievements`, `rm.achievement_unlocks_weekly`) and stored what-if
//! simulation reports (`simulations`).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::MemberKey;
use sqlx::types::Json;
use uuid::Uuid;

use super::keys::{grouped_keyed, key_arrays, Keyed};
use super::Db;
use crate::error::QueryResult;

/// A member's standing on one achievement, as of their latest purchase or refund.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct MemberAchievementRow {
    pub achievement_id: String,
    pub progress: i64,
    pub target: i64,
    pub updated_at: DateTime<Utc>,
    pub unlocked_at: Option<DateTime<Utc>>,
    pub badge: Option<String>,
    pub reward_points: Option<i64>,
}

/// One achievement's unlocks in one ISO week (Monday, UTC).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnlockWeekRow {
    pub achievement_id: String,
    pub week: NaiveDate,
    pub unlocks: i64,
    pub reward_points: i64,
}

/// How far an achievement's members got: with any progress, half way or more, 80 % or more
/// (not unlocked), unlocked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FunnelRow {
    pub achievement_id: String,
    pub started: i64,
    pub halfway: i64,
    pub close: i64,
    pub unlocked: i64,
}

/// A member not yet unlocked, with their progress.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NearUnlockRow {
    pub member_id: Uuid,
    pub progress: i64,
    pub target: i64,
    pub updated_at: DateTime<Utc>,
}

/// A stored simulation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SimulationRow {
    pub simulation_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub draft: Json<serde_json::Value>,
    pub report: Json<domain::simulation::Report>,
}

/// Achievement rows of the members `$1`/`$2` name, by achievement id.
pub(super) const MEMBER_ACHIEVEMENTS: &str =
    "SELECT a.org_id, a.member_id, a.achievement_id, a.progress, a.target, \
        a.updated_at, a.unlocked_at, a.badge, a.reward_points \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.member_achievements a USING (org_id, member_id) \
 ORDER BY a.org_id, a.member_id, a.achievement_id";

impl Db {
    /// Every member's achievement rows, by achievement id; members without any are absent.
    pub async fn member_achievements(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<MemberAchievementRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<MemberAchievementRow>> = sqlx::query_as(MEMBER_ACHIEVEMENTS)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(grouped_keyed(rows))
    }

    /// Unlocks per achievement per week, oldest week first.
    pub async fn achievement_unlocks(&self, org_id: &str) -> QueryResult<Vec<UnlockWeekRow>> {
        Ok(sqlx::query_as(
            "SELECT achievement_id, week, unlocks, reward_points FROM rm.achievement_unlocks_weekly \
             WHERE org_id = $1 ORDER BY achievement_id, week",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The funnel of every achievement some member progressed on.
    pub async fn achievement_funnels(&self, org_id: &str) -> QueryResult<Vec<FunnelRow>> {
        Ok(sqlx::query_as(
            "SELECT achievement_id, \
                    count(*) FILTER (WHERE progress > 0 OR unlocked_at IS NOT NULL) AS started, \
                    count(*) FILTER (WHERE unlocked_at IS NOT NULL OR progress * 2 >= target) AS halfway, \
                    count(*) FILTER (WHERE unlocked_at IS NULL AND progress * 5 >= target * 4) AS close, \
                    count(*) FILTER (WHERE unlocked_at IS NOT NULL) AS unlocked \
             FROM rm.member_achievements WHERE org_id = $1 GROUP BY achievement_id ORDER BY achievement_id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Members who have not unlocked `achievement_id` and reached at least `min_ratio` of its
    /// target, closest first.
    pub async fn near_unlock(
        &self,
        org_id: &str,
        achievement_id: &str,
        min_ratio: f64,
        limit: i64,
    ) -> QueryResult<Vec<NearUnlockRow>> {
        Ok(sqlx::query_as(
            "SELECT member_id, progress, target, updated_at FROM rm.member_achievements \
             WHERE org_id = $1 AND achievement_id = $2 AND unlocked_at IS NULL AND target > 0 \
               AND progress::float8 / target >= $3 \
             ORDER BY progress::float8 / target DESC, member_id LIMIT $4",
        )
        .bind(org_id)
        .bind(achievement_id)
        .bind(min_ratio)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The org's simulations, newest first.
    pub async fn simulations(&self, org_id: &str, limit: i64) -> QueryResult<Vec<SimulationRow>> {
        Ok(sqlx::query_as(
            "SELECT simulation_id, created_at, window_from, window_to, draft, report FROM simulations \
             WHERE org_id = $1 ORDER BY created_at DESC, simulation_id LIMIT $2",
        )
        .bind(org_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
