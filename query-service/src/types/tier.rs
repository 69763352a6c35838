//! Tiers: a member's standing and progress, its changes, and members per tier.

use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::db::{FullProgram, TierChangeRow, TierRow};

/// A member's tier and the way to the next one.
#[derive(SimpleObject)]
pub struct TierProgress {
    /// The tier held now.
    pub name: String,
    /// Its earn multiplier in basis points (10000 = 1.0×).
    pub multiplier_bps: i32,
    /// Points earned by purchases (net of clawbacks) in the qualification window ending now.
    pub qualifying_points: i64,
    /// The tier above, null at the top.
    pub next_tier: Option<String>,
    /// Qualifying points still needed for the next tier, null at the top.
    pub points_to_next: Option<i64>,
    /// Qualifying points missing to keep the current tier at the next re-evaluation (0 when
    /// it is safe).
    pub points_to_keep: Option<i64>,
    /// In a grace period: when the member is downgraded unless `pointsToKeep` is reached.
    pub keep_by: Option<DateTime<Utc>>,
    /// Whether the member is below the tier's threshold and in its grace period.
    pub in_grace: bool,
}

impl From<TierRow> for TierProgress {
    fn from(row: TierRow) -> Self {
        TierProgress {
            name: row.tier,
            multiplier_bps: row.multiplier_bps,
            qualifying_points: row.qualifying_points,
            next_tier: row.next_tier,
            points_to_next: row.points_to_next,
            points_to_keep: row.points_to_keep,
            keep_by: row.keep_by,
            in_grace: row.in_grace,
        }
    }
}

impl TierProgress {
    /// The entry tier of `program`, for a member with no tier row yet.
    pub(super) fn entry(program: &FullProgram) -> Option<Self> {
        let first = program.tiers.first()?;
        let next = program.tiers.get(1);
        Some(TierProgress {
            name: first.name.clone(),
            multiplier_bps: first.multiplier_bps,
            qualifying_points: 0,
            next_tier: next.map(|t| t.name.clone()),
            points_to_next: next.map(|t| t.threshold_points),
            points_to_keep: Some(0),
            keep_by: None,
            in_grace: false,
        })
    }
}

/// A change of a member's tier standing.
pub struct TierChange(pub TierChangeRow);

/// A change of a member's tier standing.
#[Object]
impl TierChange {
    /// `ENROLLED`, `UPGRADED`, `GRACE_STARTED`, `GRACE_CLEARED` or `DOWNGRADED`.
    async fn change(&self) -> String {
        self.0.change.to_uppercase()
    }
    async fn from_tier(&self) -> Option<&str> {
        self.0.from_tier.as_deref()
    }
    async fn to_tier(&self) -> &str {
        &self.0.to_tier
    }
    /// Qualifying points at the change.
    async fn qualifying_points(&self) -> i64 {
        self.0.qualifying_points
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// For a grace period: when the downgrade becomes due.
    async fn downgrade_after(&self) -> Option<DateTime<Utc>> {
        self.0.downgrade_after
    }
}

/// Members holding one tier.
#[derive(SimpleObject)]
pub struct TierCount {
    pub tier: String,
    pub count: i64,
}
