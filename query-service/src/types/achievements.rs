//! Achievements (SPEC §9, §11): a member's badges and progress, the program's achievements, and
//! what analysts read of them (unlocks per week, funnels, members close to unlocking).

use async_graphql::{Object, SimpleObject, ID};
use chrono::{DateTime, NaiveDate, Utc};
use domain::program::Achievement;

use crate::db::{FunnelRow, MemberAchievementRow, NearUnlockRow, UnlockWeekRow};

/// A badge a member unlocked.
#[derive(SimpleObject)]
pub struct Badge {
    pub achievement_id: ID,
    /// The badge's label.
    pub badge: String,
    pub unlocked_at: DateTime<Utc>,
    /// The points its unlock credited.
    pub reward_points: i64,
}

impl Badge {
    pub fn of(row: &MemberAchievementRow) -> Option<Badge> {
        Some(Badge {
            achievement_id: ID(row.achievement_id.clone()),
            badge: row.badge.clone()?,
            unlocked_at: row.unlocked_at?,
            reward_points: row.reward_points.unwrap_or(0),
        })
    }
}

/// Where a member stands on one achievement of the program: "7 of 10 purchases".
#[derive(SimpleObject)]
pub struct AchievementProgress {
    pub achievement_id: ID,
    pub name: String,
    pub badge: String,
    /// `purchases`, `spend`, `locations` or `weekly_streak`.
    pub criteria: String,
    /// In the criterion's unit (purchases, minor units, locations, weeks), as of the member's
    /// latest purchase or refund; frozen once unlocked.
    pub progress: i64,
    pub target: i64,
    /// Only purchases of the last `windowDays` count; null: all time.
    pub window_days: Option<i32>,
    pub reward_points: i64,
    pub unlocked_at: Option<DateTime<Utc>>,
}

impl AchievementProgress {
    /// The member's standing on `achievement` (nothing yet without a row).
    pub fn of(achievement: &Achievement, row: Option<&MemberAchievementRow>) -> Self {
        AchievementProgress {
            achievement_id: ID(achievement.achievement_id.clone()),
            name: achievement.name.clone(),
            badge: achievement.badge().to_owned(),
            criteria: achievement.criteria.kind().to_owned(),
            progress: row.map_or(0, |r| r.progress),
            target: achievement.criteria.target(),
            window_days: achievement
                .window_days
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
            reward_points: achievement.reward_points,
            unlocked_at: row.and_then(|r| r.unlocked_at),
        }
    }
}

/// One achievement of the program.
pub struct AchievementDefinition(pub Achievement);

/// One achievement of the program.
#[Object]
impl AchievementDefinition {
    async fn achievement_id(&self) -> ID {
        ID(self.0.achievement_id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn badge(&self) -> &str {
        self.0.badge()
    }
    /// `purchases`, `spend`, `locations` or `weekly_streak`.
    async fn criteria(&self) -> &'static str {
        self.0.criteria.kind()
    }
    /// What unlocks it, in the criterion's unit.
    async fn target(&self) -> i64 {
        self.0.criteria.target()
    }
    async fn window_days(&self) -> Option<i32> {
        self.0.window_days.map(|d| i32::try_from(d).unwrap_or(i32::MAX))
    }
    async fn reward_points(&self) -> i64 {
        self.0.reward_points
    }
}

/// One week of an achievement's unlocks.
#[derive(SimpleObject)]
pub struct UnlockWeek {
    /// The Monday (UTC) of the ISO week.
    pub week: NaiveDate,
    pub unlocks: i64,
    pub reward_points: i64,
}

/// How an achievement is doing: unlocks over time and how far its members got.
#[derive(SimpleObject)]
pub struct AchievementStats {
    pub achievement_id: ID,
    /// `None` when it is no longer in the program.
    pub name: Option<String>,
    pub target: Option<i64>,
    /// Members with any progress.
    pub started: i64,
    /// Members half way or more (unlocked included).
    pub halfway: i64,
    /// Members at 80 % or more who have not unlocked it yet.
    pub close: i64,
    pub unlocked: i64,
    pub unlocks_by_week: Vec<UnlockWeek>,
}

impl AchievementStats {
    pub fn of(
        achievement_id: &str,
        program: Option<&Achievement>,
        funnel: Option<&FunnelRow>,
        weeks: &[UnlockWeekRow],
    ) -> Self {
        AchievementStats {
            achievement_id: ID(achievement_id.to_owned()),
            name: program.map(|a| a.name.clone()),
            target: program.map(|a| a.criteria.target()),
            started: funnel.map_or(0, |f| f.started),
            halfway: funnel.map_or(0, |f| f.halfway),
            close: funnel.map_or(0, |f| f.close),
            unlocked: funnel.map_or(0, |f| f.unlocked),
            unlocks_by_week: weeks
                .iter()
                .filter(|w| w.achievement_id == achievement_id)
                .map(|w| UnlockWeek {
                    week: w.week,
                    unlocks: w.unlocks,
                    reward_points: w.reward_points,
                })
                .collect(),
        }
    }
}

/// A member close to unlocking an achievement.
#[derive(SimpleObject)]
pub struct NearUnlock {
    pub member_id: ID,
    pub progress: i64,
    pub target: i64,
    /// When their progress last moved.
    pub updated_at: DateTime<Utc>,
}

impl From<NearUnlockRow> for NearUnlock {
    fn from(row: NearUnlockRow) -> Self {
        NearUnlock {
            member_id: ID(row.member_id.to_string()),
            progress: row.progress,
            target: row.target,
            updated_at: row.updated_at,
        }
    }
}
