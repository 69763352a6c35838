//! Leaderboards (`rm.leaderboard_scores`, ranked by the `rm.leaderboard` view).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use uuid::Uuid;

use super::keys::{grouped, key_arrays};
use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaderboardRow {
    pub period: String,
    pub period_key: String,
    pub rank: i64,
    pub member_id: Uuid,
    pub display_name: String,
    pub points: i64,
}

/// The current period keys, in the projector's format.
#[derive(Debug, Clone)]
pub struct PeriodKeys {
    pub week: String,
    pub month: String,
}

impl PeriodKeys {
    /// Keys of the periods containing `at` (UTC): ISO week `2025-W03`, month `2025-01`.
    pub fn at(at: DateTime<Utc>) -> Self {
        use chrono::Datelike as _;
        let week = at.iso_week();
        Self {
            week: format!("{}-W{:02}", week.year(), week.week()),
            month: at.format("%Y-%m").to_string(),
        }
    }
}

/// Ranks of the members `$1`/`$2` name on the boards of the locations in `$3` (`""`:
/// org-wide) of the current week (`$4`), month (`$5`) and all time.
///
/// Not through the `rm.leaderboard` view: its rank() would rank every member of every board
/// before the join picks a few. A standard competition rank is 1 + the number of members of the
/// board with strictly more points, counted on the ranking index.
pub(super) const RANKS: &str = "SELECT s.org_id, s.member_id, s.location_id, s.period, s.period_key, \
        1 + (SELECT count(*) FROM rm.leaderboard_scores o \
             WHERE o.org_id = s.org_id AND o.location_id = s.location_id \
               AND o.period = s.period AND o.period_key = s.period_key \
               AND o.points > s.points) AS rank, \
        coalesce(d.display_name, rm.member_pseudonym(s.member_id)) AS display_name, s.points \
 FROM rm.leaderboard_scores s \
 JOIN rm.member_keys($1::text[], $2::uuid[]) AS k USING (org_id, member_id) \
 LEFT JOIN rm.member_directory d ON d.org_id = s.org_id AND d.member_id = s.member_id \
 WHERE s.location_id = ANY($3::text[]) \
   AND ((s.period = 'week' AND s.period_key = $4) OR (s.period = 'month' AND s.period_key = $5) \
        OR (s.period = 'all' AND s.period_key = 'all'))";

/// A row of [`RANKS`]: a member's rank on one board.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(super) struct RankRow {
    org_id: String,
    member_id: Uuid,
    location_id: String,
    period: String,
    period_key: String,
    rank: i64,
    display_name: String,
    points: i64,
}

/// A member's ranks on the boards of one location (`""`: org-wide).
pub type RanksKey = (MemberKey, String);

/// Rows of [`RANKS`] by member and location.
pub(super) fn ranks_by_member(rows: Vec<RankRow>) -> HashMap<RanksKey, Vec<LeaderboardRow>> {
    grouped(rows.into_iter().map(|row| {
        let key = (MemberKey::new(row.org_id, row.member_id), row.location_id);
        let rank = LeaderboardRow {
            period: row.period,
            period_key: row.period_key,
            rank: row.rank,
            member_id: row.member_id,
            display_name: row.display_name,
            points: row.points,
        };
        (key, rank)
    }))
}

impl Db {
    /// Ranks of members on the boards of the current week, month and all time of each of
    /// `locations`, one statement for all of them; a member without points on a location's
    /// boards is absent for it.
    pub async fn ranks(
        &self,
        keys: &[MemberKey],
        locations: &[String],
        periods: &PeriodKeys,
    ) -> QueryResult<HashMap<RanksKey, Vec<LeaderboardRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<RankRow> = sqlx::query_as(RANKS)
            .bind(orgs)
            .bind(ids)
            .bind(locations)
            .bind(&periods.week)
            .bind(&periods.month)
            .fetch_all(self.pool())
            .await?;
        Ok(ranks_by_member(rows))
    }

    /// The top `limit` of a board of the period containing now.
    pub async fn leaderboard(
        &self,
        org_id: &str,
        location_id: &str,
        period: &str,
        period_key: &str,
        limit: i64,
    ) -> QueryResult<Vec<LeaderboardRow>> {
        Ok(sqlx::query_as(
            "SELECT period, period_key, rank, member_id, display_name, points FROM rm.leaderboard \
             WHERE org_id = $1 AND location_id = $2 AND period = $3 AND period_key = $4 \
             ORDER BY rank, reached_at, reached_position, member_id LIMIT $5",
        )
        .bind(org_id)
        .bind(location_id)
        .bind(period)
        .bind(period_key)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn period_keys_follow_the_projector_format() {
        // 2021-01-03 is a Sunday in ISO week 53 of 2020.
        let keys = PeriodKeys::at(Utc.with_ymd_and_hms(2021, 1, 3, 23, 59, 59).unwrap());
        assert_eq!(keys.week, "2020-W53");
        assert_eq!(keys.month, "2021-01");
        let keys = PeriodKeys::at(Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap());
        assert_eq!(keys.week, "2025-W03");
    }
}
