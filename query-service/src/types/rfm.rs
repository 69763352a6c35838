//! RFM: a member's scores, segment counts, the cells of the grid and moves between segments.
//! The grid itself is `domain::rfm`.

use async_graphql::{Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{loaders, Member};
use domain::ids::MemberKey;
use domain::rfm::Segment;

use crate::db::{RfmRow, TransitionRow};
use crate::error::{QueryError, QueryResult};
use crate::loaders::DirectoryOf;

/// Checks a segment name: one of the 11 of the grid ([`Segment`]).
pub fn check_segment(argument: &str, segment: &str) -> QueryResult<()> {
    if Segment::from_name(segment).is_some() {
        Ok(())
    } else {
        let names: Vec<&str> = Segment::ALL.iter().map(|segment| segment.name()).collect();
        Err(QueryError::bad_input(format!(
            "{argument}: unknown segment '{segment}'; expected one of: {}",
            names.join(", ")
        )))
    }
}

/// RFM metrics (live) and scores (of the last scoring) of a purchasing member.
pub struct Rfm(pub RfmRow);

/// RFM metrics and scores of a purchasing member: the metrics as of now, the scores as of the
/// org's last scoring (`computedAt`); a member who first purchased since gets `provisional`
/// scores, ranked against that scoring's members, until the next one.
#[Object]
impl Rfm {
    /// Days since the last purchase.
    async fn recency_days(&self) -> i32 {
        self.0.recency_days
    }
    /// Purchases in the last 365 days.
    async fn frequency(&self) -> i32 {
        self.0.frequency
    }
    /// Spend of those purchases minus their refunds, in minor units.
    async fn monetary_minor(&self) -> i64 {
        self.0.monetary_minor
    }
    /// Recency score, 1–5 (5: most recent).
    async fn r(&self) -> i32 {
        i32::from(self.0.r)
    }
    /// Frequency score, 1–5.
    async fn f(&self) -> i32 {
        i32::from(self.0.f)
    }
    /// Monetary score, 1–5 (shown, not used by the segment).
    async fn m(&self) -> i32 {
        i32::from(self.0.m)
    }
    /// The segment of the (R, F) cell.
    async fn segment(&self) -> &str {
        &self.0.segment
    }
    /// When the scores were computed (provisional ones: the scoring they were ranked against).
    async fn computed_at(&self) -> DateTime<Utc> {
        self.0.computed_at
    }
    /// Whether the scores are provisional: the member's first purchase came after the org's
    /// last scoring, and the next one will score it with everyone else.
    async fn provisional(&self) -> bool {
        self.0.provisional
    }
}

/// Members in one RFM segment.
#[derive(SimpleObject)]
pub struct SegmentCount {
    pub segment: String,
    pub count: i64,
}

/// Members in one cell of the R × F grid.
#[derive(SimpleObject)]
pub struct RfmCell {
    /// Recency score, 1–5.
    pub r: i32,
    /// Frequency score, 1–5.
    pub f: i32,
    /// The segment the cell belongs to.
    pub segment: String,
    pub count: i64,
}

/// A member's move from one RFM segment to another.
pub struct SegmentTransition(pub TransitionRow);

/// A member's move from one RFM segment to another.
#[Object]
impl SegmentTransition {
    async fn member_id(&self) -> ID {
        ID(self.0.member_id.to_string())
    }
    /// The member who moved.
    async fn member(&self, ctx: &Context<'_>) -> QueryResult<Option<Member>> {
        let key = MemberKey {
            org_id: self.0.org_id.clone(),
            member_id: self.0.member_id,
        };
        Ok(loaders(ctx)
            .load_one(DirectoryOf(key))
            .await?
            .map(|row| Member { row }))
    }
    /// The segment before; null for the member's first scoring.
    async fn from(&self) -> Option<&str> {
        self.0.from_segment.as_deref()
    }
    /// The segment after.
    async fn to(&self) -> &str {
        &self.0.to_segment
    }
    /// When the scoring that moved the member ran.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the API shows, in its order.
    fn segment_names() -> Vec<&'static str> {
        Segment::ALL.iter().map(|segment| segment.name()).collect()
    }

    fn segment_of(r: u8, f: u8) -> &'static str {
        domain::rfm::segment(r, f).name()
    }

    #[test]
    fn the_grid_is_a_complete_partition_into_11_segments() {
        let segments = segment_names();
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                let segment = segment_of(r, f);
                assert!(segments.contains(&segment), "{segment}");
                seen.insert(segment);
            }
        }
        assert_eq!(seen.len(), 11);
        assert_eq!(segment_of(5, 5), "Champions");
        assert_eq!(segment_of(1, 1), "Lost");
        assert_eq!(segment_of(2, 5), "Can't Lose Them");
        assert_eq!(segment_of(3, 3), "Need Attention");
    }
}
