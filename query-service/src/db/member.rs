//! The member directory (`rm.member_directory`): single members, batches, and pages of an
//! org's members.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::keys::key_arrays;
use super::Db;
use crate::error::QueryResult;

/// A member of the directory.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
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

const MEMBER_COLUMNS: &str = "d.org_id, d.member_id, d.external_id, d.display_name, d.enrolled_at";

/// The directory rows of the members `$1`/`$2` name (built once: it is on every card's path).
pub(super) static MEMBERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {MEMBER_COLUMNS} FROM rm.member_keys($1::text[], $2::uuid[]) AS k \
         JOIN rm.member_directory d USING (org_id, member_id)"
    )
});

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

    /// The member a customer token's `sub` names (its external id, else its member id), from
    /// the command side's index of members, which is written with the enrolment itself: no
    /// projection lag, so a member enrolled a moment ago is already known.
    pub async fn member_of_subject(&self, org_id: &str, subject: &str) -> QueryResult<Option<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT member_id FROM command_members WHERE org_id = $1 AND (external_id = $2 OR member_id = $3) \
             ORDER BY external_id = $2 DESC NULLS LAST LIMIT 1",
        )
        .bind(org_id)
        .bind(subject)
        .bind(Uuid::parse_str(subject).ok())
        .fetch_optional(self.pool())
        .await?)
    }

    /// Many members by key, in one statement.
    pub async fn members(&self, keys: &[MemberKey]) -> QueryResult<HashMap<MemberKey, MemberRow>> {
        let (orgs, ids) = key_arrays(keys);
        let rows: Vec<MemberRow> = sqlx::query_as(MEMBERS.as_str())
            .bind(orgs)
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|row| (row.key(), row)).collect())
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
}
