//! Leaderboards (`rm.leaderboard_current` and `rm.leaderboard_closed`; the `rm.leaderboard`
//! view ranks their union for analysts).

use std::collections::HashMap;
use std::sync::LazyLock;

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
/// A member's score on a board is in its row of `leaderboard_current` when the board's period
/// is the member's latest, otherwise in `leaderboard_closed` (a purchase dated in a later
/// period came first). A standard competition rank is 1 + the number of members of the board
/// with strictly more points, counted in both tables on their ranking indexes (not through
/// the `rm.leaderboard` view: its rank() would rank every member of every board before the
/// join picks a few).
pub(super) const RANKS: &str = "WITH b AS ( \
   SELECT org_id, member_id, location_id, 'week'::text AS period, week_key AS period_key, week_points AS points \
   FROM rm.leaderboard_current JOIN rm.member_keys($1::text[], $2::uuid[]) USING (org_id, member_id) \
   WHERE location_id = ANY($3::text[]) AND week_key = $4 \
   UNION ALL SELECT org_id, member_id, location_id, 'month', month_key, month_points \
   FROM rm.leaderboard_current JOIN rm.member_keys($1::text[], $2::uuid[]) USING (org_id, member_id) \
   WHERE location_id = ANY($3::text[]) AND month_key = $5 \
   UNION ALL SELECT org_id, member_id, location_id, 'all', 'all', all_points \
   FROM rm.leaderboard_current JOIN rm.member_keys($1::text[], $2::uuid[]) USING (org_id, member_id) \
   WHERE location_id = ANY($3::text[]) \
   UNION ALL SELECT org_id, member_id, location_id, period, period_key, points \
   FROM rm.leaderboard_closed JOIN rm.member_keys($1::text[], $2::uuid[]) USING (org_id, member_id) \
   WHERE location_id = ANY($3::text[]) AND period = 'week' AND period_key = $4 \
   UNION ALL SELECT org_id, member_id, location_id, period, period_key, points \
   FROM rm.leaderboard_closed JOIN rm.member_keys($1::text[], $2::uuid[]) USING (org_id, member_id) \
   WHERE location_id = ANY($3::text[]) AND period = 'month' AND period_key = $5) \
 SELECT b.org_id, b.member_id, b.location_id, b.period, b.period_key, \
        1 + CASE b.period \
              WHEN 'week' THEN (SELECT count(*) FROM rm.leaderboard_current o \
                 WHERE o.org_id = b.org_id AND o.location_id = b.location_id \
                   AND o.week_key = b.period_key AND o.week_points > b.points) \
              WHEN 'month' THEN (SELECT count(*) FROM rm.leaderboard_current o \
                 WHERE o.org_id = b.org_id AND o.location_id = b.location_id \
                   AND o.month_key = b.period_key AND o.month_points > b.points) \
              ELSE (SELECT count(*) FROM rm.leaderboard_current o \
                 WHERE o.org_id = b.org_id AND o.location_id = b.location_id AND o.all_points > b.points) \
            END \
          + (SELECT count(*) FROM rm.leaderboard_closed o \
             WHERE o.org_id = b.org_id AND o.location_id = b.location_id \
               AND o.period = b.period AND o.period_key = b.period_key AND o.points > b.points) AS rank, \
        coalesce(d.display_name, rm.member_pseudonym(b.member_id)) AS display_name, b.points \
 FROM b LEFT JOIN rm.member_directory d ON d.org_id = b.org_id AND d.member_id = b.member_id";

/// The top `$5` of the board of org `$1`, location `$2`, period `$3` with key `$4`: the top
/// of the scores of `leaderboard_current` whose latest period it is and the top of those of
/// `leaderboard_closed`, each read in rank order from its index, merged. A standard competition
/// rank counted on this prefix of the order is the board's: every member with more points is in
/// it. `prefix` names the period's columns of `leaderboard_current`, `key` their condition.
fn top_of_board(prefix: &str, key: &str) -> String {
    format!(
        "SELECT t.period, t.period_key, rank() OVER (ORDER BY t.points DESC) AS rank, t.member_id, \
                coalesce(d.display_name, rm.member_pseudonym(t.member_id)) AS display_name, t.points \
         FROM ((SELECT $3::text AS period, $4::text AS period_key, member_id, {prefix}_points AS points, \
                       {prefix}_reached_at AS reached_at, {prefix}_reached_position AS reached_position \
                FROM rm.leaderboard_current WHERE org_id = $1 AND location_id = $2 {key} \
                ORDER BY {prefix}_points DESC, {prefix}_reached_at, {prefix}_reached_position, member_id \
                LIMIT $5) \
               UNION ALL \
               (SELECT period, period_key, member_id, points, reached_at, reached_position \
                FROM rm.leaderboard_closed \
                WHERE org_id = $1 AND location_id = $2 AND period = $3 AND period_key = $4 \
                ORDER BY points DESC, reached_at, reached_position, member_id LIMIT $5) \
               ORDER BY points DESC, reached_at, reached_position, member_id LIMIT $5) t \
         LEFT JOIN rm.member_directory d ON d.org_id = $1 AND d.member_id = t.member_id \
         ORDER BY rank, t.reached_at, t.reached_position, t.member_id"
    )
}

/// [`top_of_board`] of each period, built once; `None` for a period the boards do not have.
fn top_of_board_sql(period: &str) -> Option<&'static str> {
    static WEEK: LazyLock<String> = LazyLock::new(|| top_of_board("week", "AND week_key = $4"));
    static MONTH: LazyLock<String> = LazyLock::new(|| top_of_board("month", "AND month_key = $4"));
    static ALL: LazyLock<String> = LazyLock::new(|| top_of_board("all", ""));
    match period {
        "week" => Some(&WEEK),
        "month" => Some(&MONTH),
        "all" => Some(&ALL),
        _ => None,
    }
}

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
        let Some(sql) = top_of_board_sql(period) else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_as(sql)
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
