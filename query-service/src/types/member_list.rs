//! The arguments of a member list: its filter and its order.

use async_graphql::{Enum, InputObject};

/// Filters of a member list; all given conditions must hold.
#[derive(InputObject, Default)]
pub struct MemberFilter {
    /// Members in this RFM segment (one of the 11 names).
    pub segment: Option<String>,
    /// Members holding this tier.
    pub tier: Option<String>,
    /// Balance at least this.
    pub min_points: Option<i64>,
    /// Balance at most this.
    pub max_points: Option<i64>,
}

/// The order of a member list.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberOrder {
    /// Oldest enrolment first.
    #[default]
    EnrolledAt,
    /// Highest balance first.
    PointsDesc,
}
