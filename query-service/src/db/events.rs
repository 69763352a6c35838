//! Reads of the event store (`events`, append-only): a member's history and the latest state
//! carried by its events.

use chrono::{DateTime, Utc};
use domain::ids::MemberKey;
use domain::MemberEvent;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use super::Db;
use crate::error::QueryResult;

/// Event types that move points (their `points_delta` is non-zero in general).
pub const POINTS_EVENTS: &[&str] = &[
    "PurchaseRecorded",
    "PurchaseRefunded",
    "RewardRedeemed",
    "PointsAdjusted",
    "PointsExpired",
    "AchievementUnlocked",
];
/// Event types that state the member's tier afterwards (`PurchaseRecorded` names the tier the
/// purchase earned at, which is the current one unless a `TierUpgraded` follows it).
pub const TIER_EVENTS: &[&str] = &[
    "MemberEnrolled",
    "PurchaseRecorded",
    "TierUpgraded",
    "TierDowngraded",
];
/// Event types that carry the member's qualifying points.
pub const QUALIFYING_EVENTS: &[&str] = &[
    "PurchaseRecorded",
    "PurchaseRefunded",
    "TierUpgraded",
    "TierDowngraded",
    "TierGracePeriodStarted",
    "TierGracePeriodCleared",
];

/// One member event as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub sequence: i64,
    pub event_type: String,
    pub committed_at: DateTime<Utc>,
    pub event: MemberEvent,
}

#[derive(sqlx::FromRow)]
struct RawEventRow {
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Json<serde_json::Value>,
    committed_at: DateTime<Utc>,
}

impl TryFrom<RawEventRow> for EventRow {
    type Error = anyhow::Error;

    fn try_from(row: RawEventRow) -> anyhow::Result<Self> {
        let event = domain::codec::decode_member(&row.event_type, &row.event_version, row.payload.0)
            .map_err(|error| {
                anyhow::anyhow!(
                    "member event {} (v{}) at sequence {} does not decode: {error}",
                    row.event_type,
                    row.event_version,
                    row.sequence
                )
            })?;
        Ok(EventRow {
            sequence: row.sequence,
            event_type: row.event_type,
            committed_at: row.committed_at,
            event,
        })
    }
}

fn decode(rows: Vec<RawEventRow>) -> QueryResult<Vec<EventRow>> {
    rows.into_iter()
        .map(|row| EventRow::try_from(row).map_err(Into::into))
        .collect()
}

impl Db {
    /// A member's events, newest first, strictly before `before_sequence`; only those that move
    /// points when `points_only`.
    pub async fn history(
        &self,
        key: &MemberKey,
        before_sequence: Option<i64>,
        points_only: bool,
        limit: i64,
    ) -> QueryResult<Vec<EventRow>> {
        // Only the conditions that apply, so the primary key is read backwards from the cursor.
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT sequence, event_type, event_version, payload, committed_at FROM events \
             WHERE aggregate_type = 'member' AND aggregate_id = ",
        );
        sql.push_bind(key.aggregate_id());
        if let Some(before) = before_sequence {
            sql.push(" AND sequence < ").push_bind(before);
        }
        if points_only {
            sql.push(" AND event_type = ANY(")
                .push_bind(POINTS_EVENTS)
                .push(")");
        }
        sql.push(" ORDER BY sequence DESC LIMIT ").push_bind(limit);
        let rows: Vec<RawEventRow> = sql.build_query_as().fetch_all(self.pool()).await?;
        decode(rows)
    }

    /// The member's latest event, and its latest event of each kind that carries state (balance,
    /// tier, qualifying points), in ascending sequence order: folding them gives the member's
    /// current state as the log has it. Empty when the member has no events.
    pub async fn latest_state_events(&self, key: &MemberKey) -> QueryResult<Vec<EventRow>> {
        let rows: Vec<RawEventRow> = sqlx::query_as(
            "SELECT DISTINCT ON (sequence) sequence, event_type, event_version, payload, committed_at FROM ( \
               (SELECT * FROM events WHERE aggregate_type = 'member' AND aggregate_id = $1 \
                ORDER BY sequence DESC LIMIT 1) \
               UNION ALL \
               (SELECT * FROM events WHERE aggregate_type = 'member' AND aggregate_id = $1 \
                  AND event_type = ANY($2) ORDER BY sequence DESC LIMIT 1) \
               UNION ALL \
               (SELECT * FROM events WHERE aggregate_type = 'member' AND aggregate_id = $1 \
                  AND event_type = ANY($3) ORDER BY sequence DESC LIMIT 1) \
               UNION ALL \
               (SELECT * FROM events WHERE aggregate_type = 'member' AND aggregate_id = $1 \
                  AND event_type = ANY($4) ORDER BY sequence DESC LIMIT 1) \
             ) latest ORDER BY sequence",
        )
        .bind(key.aggregate_id())
        .bind(POINTS_EVENTS)
        .bind(TIER_EVENTS)
        .bind(QUALIFYING_EVENTS)
        .fetch_all(self.pool())
        .await?;
        decode(rows)
    }
}
