//! RFM: a member's metrics and scores, counts per segment and cell (`rm.rfm_scores`), and
//! segment moves (`rm.rfm_segment_transitions`).
//!
//! A member's metrics are live: recency, frequency and monetary as of now, from the raw data
//! the projector keeps per event (`rm.rfm_members`, and `rm.purchases` only for a member whose
//! first purchase is older than the 365-day window). The scores come from the org's last
//! scoring; a member who made a first purchase since gets provisional scores, ranked against
//! the members of that scoring (their recency moved on to now), until the next one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::keys::{grouped, key_arrays, keyed, Keyed};
use super::Db;
use crate::error::QueryResult;

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct RfmRow {
    /// The scoring the scores come from (for provisional scores: the one ranked against).
    pub computed_at: DateTime<Utc>,
    /// Scores of a member the last scoring did not include yet.
    pub provisional: bool,
    pub recency_days: i32,
    pub frequency: i32,
    pub monetary_minor: i64,
    pub r: i16,
    pub f: i16,
    pub m: i16,
    pub segment: String,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TransitionRow {
    pub org_id: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    pub from_segment: Option<String>,
    pub to_segment: String,
}

/// See the module documentation. Scores are `1 + floor(5 × W / N)` as in the projector's
/// scoring, W and N counted over the members of the last scoring plus this one.
pub(super) const MEMBER_RFM: &str = "
WITH raw AS (
    SELECT m.org_id, m.member_id,
           greatest(0, floor(extract(epoch FROM (now() - m.last_purchase_at)) / 86400))::int AS recency_days,
           CASE WHEN w.whole THEN m.purchases::int ELSE old.frequency END AS frequency,
           CASE WHEN w.whole THEN m.amount_minor - m.refunded_minor ELSE old.monetary_minor END AS monetary_minor
    FROM rm.member_keys($1::text[], $2::uuid[]) AS k
    JOIN rm.rfm_members m USING (org_id, member_id)
    -- Every purchase of a member whose first one is inside the window counts: no need to read them.
    CROSS JOIN LATERAL (SELECT m.first_purchase_at > now() - interval '365 days'
                               AND m.last_purchase_at <= now() AS whole) w
    LEFT JOIN LATERAL (
        SELECT count(*)::int AS frequency, coalesce(sum(p.amount_minor - p.refunded_minor), 0)::bigint AS monetary_minor
        FROM rm.purchases p
        WHERE NOT w.whole AND p.org_id = m.org_id AND p.member_id = m.member_id
          AND p.occurred_at > now() - interval '365 days' AND p.occurred_at <= now()
    ) old ON true
)
SELECT raw.org_id, raw.member_id, raw.recency_days, raw.frequency, raw.monetary_minor,
       coalesce(s.computed_at, p.computed_at) AS computed_at,
       s.member_id IS NULL AS provisional,
       coalesce(s.r, 1 + 5 * p.worse_r / (p.n + 1))::smallint AS r,
       coalesce(s.f, 1 + 5 * p.worse_f / (p.n + 1))::smallint AS f,
       coalesce(s.m, 1 + 5 * p.worse_m / (p.n + 1))::smallint AS m,
       coalesce(s.segment, rm.rfm_segment((1 + 5 * p.worse_r / (p.n + 1))::int, (1 + 5 * p.worse_f / (p.n + 1))::int))
           AS segment
FROM raw
LEFT JOIN rm.rfm_scores s USING (org_id, member_id)
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE o.recency_days + floor(extract(epoch FROM (now() - o.computed_at)) / 86400)
                                  > raw.recency_days) AS worse_r,
           count(*) FILTER (WHERE o.frequency < raw.frequency) AS worse_f,
           count(*) FILTER (WHERE o.monetary_minor < raw.monetary_minor) AS worse_m,
           max(o.computed_at) AS computed_at
    FROM rm.rfm_scores o
    WHERE s.member_id IS NULL AND o.org_id = raw.org_id
) p ON true
WHERE s.member_id IS NOT NULL OR p.n > 0";

/// Segment changes of the members `$1`/`$2` name, oldest first.
pub(super) const MEMBER_TRANSITIONS: &str =
    "SELECT t.org_id, t.member_id, t.at, t.from_segment, t.to_segment \
 FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
 JOIN rm.rfm_segment_transitions t USING (org_id, member_id) \
 ORDER BY t.org_id, t.member_id, t.at";

/// The rows keep their member: a transition is also listed org-wide, with its member.
pub(super) fn transitions_by_member(rows: Vec<TransitionRow>) -> HashMap<MemberKey, Vec<TransitionRow>> {
    grouped(
        rows.into_iter()
            .map(|row| (MemberKey::new(row.org_id.clone(), row.member_id), row)),
    )
}

impl Db {
    /// Live metrics and the scores of each member with purchases, once its org has scores.
    pub async fn rfm(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, RfmRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<Keyed<RfmRow>> = sqlx::query_as(MEMBER_RFM)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(keyed(rows))
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
        let rows: Vec<TransitionRow> = sqlx::query_as(MEMBER_TRANSITIONS)
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(transitions_by_member(rows))
    }
}
