//! Leaderboards: periods, a member's ranks and the lines of a board.

use async_graphql::{Enum, SimpleObject, ID};

use crate::db::LeaderboardRow;

/// A leaderboard period (UTC).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The current ISO week (Monday to Sunday).
    Week,
    /// The current calendar month.
    Month,
    /// Since the program started.
    AllTime,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Week, Period::Month, Period::AllTime];

    /// The projector's name of the period.
    pub fn as_db(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
            Period::AllTime => "all",
        }
    }

    pub fn from_db(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|period| period.as_db() == name)
    }
}

/// A member's place on one board.
#[derive(SimpleObject)]
pub struct LeaderboardRank {
    pub period: Period,
    /// The period's key: `2025-W03`, `2025-01` or `all`.
    pub period_key: String,
    /// The board's location; null for the org-wide board.
    pub location_id: Option<ID>,
    /// Standard competition rank (1, 2, 2, 4).
    pub rank: i64,
    /// Points earned in the period (clawbacks subtract, redemptions do not).
    pub points: i64,
}

/// A line of a leaderboard.
#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    /// Standard competition rank (1, 2, 2, 4); equal points are listed in the order they were
    /// reached.
    pub rank: i64,
    pub member_id: ID,
    /// The member's chosen display name, or a stable pseudonym; never contact details.
    pub display_name: String,
    /// Points earned in the period.
    pub points: i64,
}

impl From<LeaderboardRow> for LeaderboardEntry {
    fn from(row: LeaderboardRow) -> Self {
        LeaderboardEntry {
            rank: row.rank,
            member_id: ID(row.member_id.to_string()),
            display_name: row.display_name,
            points: row.points,
        }
    }
}
