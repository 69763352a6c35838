//! Reads of the projector's read models (schema `rm`, `schema/migrations/0004_read_models.sql`).
//!
//! Batch reads take the keys of many members at once and run one statement for all of them
//! (the DataLoaders in [`crate::loaders`] call these); keys are passed as two parallel arrays
//! and joined through `unnest`, so the statement text does not depend on how many there are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::Db;
use crate::error::QueryResult;
use crate::live::MemberKey;

/// A member of the directory.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub org_id: String,
    pub member_id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

impl MemberRow {
    pub fn key(&self) -> MemberKey {
        MemberKey {
            org_id: self.org_id.clone(),
            member_id: self.member_id,
        }
    }
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
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

#[derive(Debug, Clone, sqlx::FromRow)]
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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RfmRow {
    pub computed_at: DateTime<Utc>,
    pub recency_days: i32,
    pub frequency: i32,
    pub monetary_minor: i64,
    pub r: i16,
    pub f: i16,
    pub m: i16,
    pub segment: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StampCardRow {
    pub card_id: String,
    /// `None` when the card is no longer in the program.
    pub name: Option<String>,
    pub reward_id: Option<String>,
    pub stamps: i32,
    pub stamps_required: i32,
    pub cards_completed: i32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProgramRow {
    pub org_id: String,
    pub version: i64,
    pub currency: String,
    pub earn_rate: i64,
    pub expiry_days: Option<i32>,
    pub qualification_window_days: i32,
    pub downgrade_grace_days: i32,
    pub configured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct ProgramTierRow {
    pub name: String,
    pub threshold_points: i64,
    pub multiplier_bps: i32,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct RewardRow {
    pub reward_id: String,
    pub name: String,
    pub points_cost: i64,
    pub active: bool,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct StampCardDefRow {
    pub card_id: String,
    pub name: String,
    pub stamps_required: i32,
    pub reward_id: String,
    pub min_amount_minor: i64,
}

#[derive(sqlx::FromRow)]
struct ProgramWithParts {
    #[sqlx(flatten)]
    program: ProgramRow,
    tiers: sqlx::types::Json<Vec<ProgramTierRow>>,
    rewards: sqlx::types::Json<Vec<RewardRow>>,
    stamp_cards: sqlx::types::Json<Vec<StampCardDefRow>>,
}

/// An org's program with its ladder, catalogue and cards.
#[derive(Debug, Clone)]
pub struct FullProgram {
    pub program: ProgramRow,
    pub tiers: Vec<ProgramTierRow>,
    pub rewards: Vec<RewardRow>,
    pub stamp_cards: Vec<StampCardDefRow>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaderboardRow {
    pub period: String,
    pub period_key: String,
    pub rank: i64,
    pub member_id: Uuid,
    pub display_name: String,
    pub points: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransitionRow {
    pub org_id: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    pub from_segment: Option<String>,
    pub to_segment: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TierChangeRow {
    pub sequence: i64,
    pub change: String,
    pub from_tier: Option<String>,
    pub to_tier: String,
    pub qualifying_points: i64,
    pub at: DateTime<Utc>,
    pub downgrade_after: Option<DateTime<Utc>>,
}

/// A row of a member page, with its balance (the sort key of [`MemberSort::PointsDesc`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PageRow {
    #[sqlx(flatten)]
    pub member: MemberRow,
    pub points: i64,
}

/// Which members a member list holds.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub segment: Option<String>,
    pub tier: Option<String>,
    pub min_points: Option<i64>,
    pub max_points: Option<i64>,
}

/// The order of a member list; every order ends in `member_id`, so it is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberSort {
    /// Oldest enrolment first.
    EnrolledAt,
    /// Highest balance first.
    PointsDesc,
}

/// Where a member page starts: strictly after this (sort key, member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAfter {
    EnrolledAt(DateTime<Utc>, Uuid),
    Points(i64, Uuid),
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

/// Splits keys into the parallel arrays `unnest` takes.
fn key_arrays(keys: &[MemberKey]) -> (Vec<String>, Vec<Uuid>) {
    keys.iter().map(|key| (key.org_id.clone(), key.member_id)).unzip()
}

#[derive(sqlx::FromRow)]
struct Keyed<T> {
    org_id: String,
    member_id: Uuid,
    #[sqlx(flatten)]
    row: T,
}

fn keyed<T>(rows: Vec<Keyed<T>>) -> HashMap<MemberKey, T> {
    rows.into_iter()
        .map(|k| {
            let key = MemberKey {
                org_id: k.org_id,
                member_id: k.member_id,
            };
            (key, k.row)
        })
        .collect()
}

const MEMBER_COLUMNS: &str = "d.org_id, d.member_id, d.external_id, d.display_name, d.enrolled_at";

impl Db {
    /// A member by external id (unique per org on the command side).
    pub async fn member_by_external_id(
        &self,
        org_id: &str,
        external_id: &str,
    ) -> QueryResult<Option<MemberRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {MEMBER_COLUMNS} FROM rm.member_directory d \
             WHERE d.org_id = $1 AND d.external_id = $2 ORDER BY d.enrolled_at LIMIT 1"
        ))
        .bind(org_id)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Many members by key, in one statement.
    pub async fn members(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, MemberRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<MemberRow> = sqlx::query_as(&format!(
            "SELECT {MEMBER_COLUMNS} FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.member_directory d USING (org_id, member_id)"
        ))
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|row| (row.key(), row)).collect())
    }

    pub async fn balances(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, BalanceRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<BalanceRow>> = sqlx::query_as(
            "SELECT b.org_id, b.member_id, b.balance, b.lifetime_earned, b.redeemed, b.expired, \
                    b.clawed_back, b.adjusted, b.next_expiry_points, b.next_expiry_at \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.member_balances b USING (org_id, member_id)",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(keyed(rows))
    }

    pub async fn tiers(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, TierRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<TierRow>> = sqlx::query_as(
            "SELECT t.org_id, t.member_id, t.tier, t.multiplier_bps, t.qualifying_points, t.next_tier, \
                    t.points_to_next, t.points_to_keep, t.keep_by, t.in_grace \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.member_tier_progress t USING (org_id, member_id)",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(keyed(rows))
    }

    pub async fn rfm(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, RfmRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<RfmRow>> = sqlx::query_as(
            "SELECT s.org_id, s.member_id, s.computed_at, s.recency_days, s.frequency, s.monetary_minor, \
                    s.r, s.f, s.m, s.segment \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.rfm_scores s USING (org_id, member_id)",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(keyed(rows))
    }

    /// Every member's cards, in card order; members without any are absent.
    pub async fn stamp_cards(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<StampCardRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<StampCardRow>> = sqlx::query_as(
            "SELECT c.org_id, c.member_id, c.card_id, p.name, p.reward_id, c.stamps, c.stamps_required, \
                    c.cards_completed \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.stamp_cards c USING (org_id, member_id) \
             LEFT JOIN rm.program_stamp_cards p ON p.org_id = c.org_id AND p.card_id = c.card_id \
             ORDER BY c.org_id, c.member_id, c.card_id",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        let mut cards: HashMap<MemberKey, Vec<StampCardRow>> = HashMap::new();
        for row in rows {
            cards
                .entry(MemberKey {
                    org_id: row.org_id,
                    member_id: row.member_id,
                })
                .or_default()
                .push(row.row);
        }
        Ok(cards)
    }

    /// Ranks of members on the boards of the current week, month and all time (of `location_id`,
    /// or org-wide for `""`), one statement for all of them.
    pub async fn ranks(
        &self,
        keys: &[MemberKey],
        location_id: &str,
        periods: &PeriodKeys,
    ) -> QueryResult<HashMap<MemberKey, Vec<LeaderboardRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<LeaderboardRow>> = sqlx::query_as(
            // Not through the `rm.leaderboard` view: its rank() would rank every member of every
            // board before the join picks a few. A standard competition rank is 1 + the number
            // of members of the board with strictly more points, counted on the ranking index.
            "SELECT s.org_id, s.member_id, s.period, s.period_key, \
                    1 + (SELECT count(*) FROM rm.leaderboard_scores o \
                         WHERE o.org_id = s.org_id AND o.location_id = s.location_id \
                           AND o.period = s.period AND o.period_key = s.period_key \
                           AND o.points > s.points) AS rank, \
                    coalesce(d.display_name, rm.member_pseudonym(s.member_id)) AS display_name, s.points \
             FROM rm.leaderboard_scores s \
             JOIN unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) USING (org_id, member_id) \
             LEFT JOIN rm.member_directory d ON d.org_id = s.org_id AND d.member_id = s.member_id \
             WHERE s.location_id = $3 \
               AND ((s.period = 'week' AND s.period_key = $4) OR (s.period = 'month' AND s.period_key = $5) \
                    OR (s.period = 'all' AND s.period_key = 'all'))",
        )
        .bind(orgs)
        .bind(ids)
        .bind(location_id)
        .bind(&periods.week)
        .bind(&periods.month)
        .fetch_all(self.pool())
        .await?;
        let mut ranks: HashMap<MemberKey, Vec<LeaderboardRow>> = HashMap::new();
        for row in rows {
            ranks
                .entry(MemberKey {
                    org_id: row.org_id,
                    member_id: row.member_id,
                })
                .or_default()
                .push(row.row);
        }
        Ok(ranks)
    }

    /// Programs of many orgs (ladder, catalogue, cards): one statement however many orgs.
    pub async fn programs(&self, orgs: &[String]) -> QueryResult<HashMap<String, FullProgram>> {
        // One statement: a storefront query asks for the program on every request, and each
        // round trip costs both processes more than the few rows it carries.
        let rows: Vec<ProgramWithParts> = sqlx::query_as(
            "SELECT p.org_id, p.version, p.currency, p.earn_rate, p.expiry_days, \
                    p.qualification_window_days, p.downgrade_grace_days, p.configured_at, \
                    (SELECT coalesce(json_agg(json_build_object('name', t.name, \
                              'threshold_points', t.threshold_points, 'multiplier_bps', t.multiplier_bps) \
                              ORDER BY t.position), '[]') \
                     FROM rm.program_tiers t WHERE t.org_id = p.org_id) AS tiers, \
                    (SELECT coalesce(json_agg(json_build_object('reward_id', r.reward_id, 'name', r.name, \
                              'points_cost', r.points_cost, 'active', r.active) \
                              ORDER BY r.points_cost, r.reward_id), '[]') \
                     FROM rm.program_rewards r WHERE r.org_id = p.org_id) AS rewards, \
                    (SELECT coalesce(json_agg(json_build_object('card_id', c.card_id, 'name', c.name, \
                              'stamps_required', c.stamps_required, 'reward_id', c.reward_id, \
                              'min_amount_minor', c.min_amount_minor) ORDER BY c.card_id), '[]') \
                     FROM rm.program_stamp_cards c WHERE c.org_id = p.org_id) AS stamp_cards \
             FROM rm.programs p WHERE p.org_id = ANY($1)",
        )
        .bind(orgs)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let full = FullProgram {
                    program: row.program,
                    tiers: row.tiers.0,
                    rewards: row.rewards.0,
                    stamp_cards: row.stamp_cards.0,
                };
                (full.program.org_id.clone(), full)
            })
            .collect())
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

    /// Members per segment (segments without members are absent).
    pub async fn segment_counts(&self, org_id: &str) -> QueryResult<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT segment, count(*) FROM rm.rfm_scores WHERE org_id = $1 GROUP BY segment")
                .bind(org_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Members per (R, F) cell (empty cells are absent).
    pub async fn rfm_grid(&self, org_id: &str) -> QueryResult<HashMap<(i16, i16), i64>> {
        let rows: Vec<(i16, i16, i64)> =
            sqlx::query_as("SELECT r, f, count(*) FROM rm.rfm_scores WHERE org_id = $1 GROUP BY r, f")
                .bind(org_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(r, f, count)| ((r, f), count)).collect())
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

    /// Points the org owes its members.
    pub async fn liability(&self, org_id: &str) -> QueryResult<i64> {
        let points: Option<i64> = sqlx::query_scalar("SELECT points FROM rm.org_liability WHERE org_id = $1")
            .bind(org_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(points.unwrap_or(0))
    }

    /// One page of an org's members, `limit` rows strictly after `after` in `sort` order.
    ///
    /// The statement holds only the conditions that apply (no `$n IS NULL OR ...`), so that
    /// even a generic plan reads the order's index (migration 0005) from the cursor on.
    pub async fn member_page(
        &self,
        org_id: &str,
        filter: &MemberFilter,
        sort: MemberSort,
        after: Option<&MemberAfter>,
        limit: i64,
    ) -> QueryResult<Vec<PageRow>> {
        // The projector writes a balance row with every directory row, so the points order can
        // start from balances.
        let from = match sort {
            MemberSort::EnrolledAt => {
                "rm.member_directory d \
                 LEFT JOIN rm.member_balances b ON b.org_id = d.org_id AND b.member_id = d.member_id"
            }
            MemberSort::PointsDesc => {
                "rm.member_balances b \
                 JOIN rm.member_directory d ON d.org_id = b.org_id AND d.member_id = b.member_id"
            }
        };
        let mut sql = QueryBuilder::<Postgres>::new(format!(
            "SELECT {MEMBER_COLUMNS}, coalesce(b.balance, 0) AS points FROM {from}"
        ));
        if filter.tier.is_some() {
            sql.push(" JOIN rm.member_tiers t ON t.org_id = d.org_id AND t.member_id = d.member_id");
        }
        if filter.segment.is_some() {
            sql.push(" JOIN rm.rfm_scores s ON s.org_id = d.org_id AND s.member_id = d.member_id");
        }
        sql.push(" WHERE d.org_id = ").push_bind(org_id);
        if let Some(tier) = &filter.tier {
            sql.push(" AND t.tier = ").push_bind(tier);
        }
        if let Some(segment) = &filter.segment {
            sql.push(" AND s.segment = ").push_bind(segment);
        }
        if let Some(min) = filter.min_points {
            sql.push(" AND coalesce(b.balance, 0) >= ").push_bind(min);
        }
        if let Some(max) = filter.max_points {
            sql.push(" AND coalesce(b.balance, 0) <= ").push_bind(max);
        }
        match after {
            None => {}
            Some(MemberAfter::EnrolledAt(at, id)) => {
                sql.push(" AND (d.enrolled_at, d.member_id) > (")
                    .push_bind(*at)
                    .push(", ")
                    .push_bind(*id)
                    .push(")");
            }
            Some(MemberAfter::Points(points, id)) => {
                // Highest balance first is (-balance, member_id) ascending: one row comparison.
                sql.push(" AND (-b.balance, b.member_id) > (")
                    .push_bind(-points)
                    .push(", ")
                    .push_bind(*id)
                    .push(")");
            }
        }
        sql.push(match sort {
            MemberSort::EnrolledAt => " ORDER BY d.enrolled_at, d.member_id",
            MemberSort::PointsDesc => " ORDER BY -b.balance, b.member_id",
        });
        sql.push(" LIMIT ").push_bind(limit);
        Ok(sql.build_query_as().fetch_all(self.pool()).await?)
    }

    /// Segment changes of an org in `[since, until)`, oldest first, strictly after `after`,
    /// optionally only those into or out of `segment`.
    pub async fn transitions(
        &self,
        org_id: &str,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        segment: Option<&str>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> QueryResult<Vec<TransitionRow>> {
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT org_id, member_id, at, from_segment, to_segment FROM rm.rfm_segment_transitions \
             WHERE org_id = ",
        );
        sql.push_bind(org_id);
        if let Some(since) = since {
            sql.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = until {
            sql.push(" AND at < ").push_bind(until);
        }
        if let Some(segment) = segment {
            sql.push(" AND (from_segment = ")
                .push_bind(segment)
                .push(" OR to_segment = ")
                .push_bind(segment)
                .push(")");
        }
        if let Some((at, id)) = after {
            sql.push(" AND (at, member_id) > (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        sql.push(" ORDER BY at, member_id LIMIT ").push_bind(limit);
        Ok(sql.build_query_as().fetch_all(self.pool()).await?)
    }

    /// Segment changes of many members, oldest first.
    pub async fn member_transitions(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<TransitionRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<TransitionRow> = sqlx::query_as(
            "SELECT t.org_id, t.member_id, t.at, t.from_segment, t.to_segment \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.rfm_segment_transitions t USING (org_id, member_id) \
             ORDER BY t.org_id, t.member_id, t.at",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        let mut transitions: HashMap<MemberKey, Vec<TransitionRow>> = HashMap::new();
        for row in rows {
            transitions
                .entry(MemberKey {
                    org_id: row.org_id.clone(),
                    member_id: row.member_id,
                })
                .or_default()
                .push(row);
        }
        Ok(transitions)
    }

    /// Tier changes of many members, oldest first.
    pub async fn tier_history(
        &self,
        keys: &[MemberKey],
    ) -> QueryResult<HashMap<MemberKey, Vec<TierChangeRow>>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<TierChangeRow>> = sqlx::query_as(
            "SELECT h.org_id, h.member_id, h.sequence, h.change, h.from_tier, h.to_tier, h.qualifying_points, \
                    h.at, h.downgrade_after \
             FROM unnest($1::text[], $2::uuid[]) AS k(org_id, member_id) \
             JOIN rm.tier_history h USING (org_id, member_id) \
             ORDER BY h.org_id, h.member_id, h.sequence",
        )
        .bind(orgs)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        let mut history: HashMap<MemberKey, Vec<TierChangeRow>> = HashMap::new();
        for row in rows {
            history
                .entry(MemberKey {
                    org_id: row.org_id,
                    member_id: row.member_id,
                })
                .or_default()
                .push(row.row);
        }
        Ok(history)
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
