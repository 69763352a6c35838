//! RFM: scores (`rm.rfm_scores`), their counts per segment and cell, and segment moves
//! (`rm.rfm_segment_transitions`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::keys::{grouped, key_arrays, keyed, Keyed};
use super::Db;
use crate::error::QueryResult;

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
pub struct TransitionRow {
    pub org_id: String,
    pub member_id: Uuid,
    pub at: DateTime<Utc>,
    pub from_segment: Option<String>,
    pub to_segment: String,
}

impl Db {
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
        // The rows keep their member: a transition is also listed org-wide, with its member.
        Ok(grouped(rows.into_iter().map(|row| {
            (MemberKey::new(row.org_id.clone(), row.member_id), row)
        })))
    }
}
