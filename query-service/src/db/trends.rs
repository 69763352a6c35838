//! Org-wide movements per UTC day, for the analysts' charts: points moved through the journal
//! (`rm.journal_entries`, read on its `(org_id, occurred_at)` index) and segment moves
//! (`rm.rfm_segment_transitions`, on `(org_id, at, member_id)`). Only the days asked for are
//! read, never an org's whole history.

use chrono::{DateTime, NaiveDate, Utc};

use super::Db;
use crate::error::QueryResult;

/// The liability now and the net points moved on each day since a time, from one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiabilityMoves {
    pub liability: i64,
    /// `(day, net points moved that day)`, oldest first; days without entries are absent.
    pub days: Vec<(NaiveDate, i64)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransitionCountRow {
    pub day: NaiveDate,
    pub from_segment: Option<String>,
    pub to_segment: String,
    pub count: i64,
}

impl Db {
    /// The org's liability now and its journal's net movement per UTC day (business time)
    /// from `since` on, in one statement so that both come from the same snapshot.
    pub async fn liability_moves(&self, org_id: &str, since: DateTime<Utc>) -> QueryResult<LiabilityMoves> {
        let (liability, days, deltas): (i64, Vec<NaiveDate>, Vec<i64>) = sqlx::query_as(
            "SELECT coalesce((SELECT points FROM rm.org_liability WHERE org_id = $1), 0), \
                    coalesce(array_agg(d.day ORDER BY d.day), '{}'), \
                    coalesce(array_agg(d.delta ORDER BY d.day), '{}') \
             FROM (SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, sum(points_delta)::bigint AS delta \
                   FROM rm.journal_entries WHERE org_id = $1 AND occurred_at >= $2 GROUP BY 1) d",
        )
        .bind(org_id)
        .bind(since)
        .fetch_one(self.pool())
        .await?;
        Ok(LiabilityMoves {
            liability,
            days: days.into_iter().zip(deltas).collect(),
        })
    }

    /// Segment moves per UTC day and (from, to) pair from `since` on, oldest day first.
    pub async fn transition_counts(
        &self,
        org_id: &str,
        since: DateTime<Utc>,
    ) -> QueryResult<Vec<TransitionCountRow>> {
        Ok(sqlx::query_as(
            "SELECT (at AT TIME ZONE 'UTC')::date AS day, from_segment, to_segment, count(*) AS count \
             FROM rm.rfm_segment_transitions WHERE org_id = $1 AND at >= $2 \
             GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS FIRST, 3",
        )
        .bind(org_id)
        .bind(since)
        .fetch_all(self.pool())
        .await?)
    }
}
