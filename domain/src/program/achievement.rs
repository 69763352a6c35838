//! Achievements (badges and missions) as a marketer configures them (SPEC §9, §11): what a
//! member must do, optionally within a rolling window, to unlock a badge and its reward points
//! once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::promotion::{ConfigProblem, MAX_PROMOTION_POINTS};
use crate::member::limits::MAX_AMOUNT_MINOR;

/// Most achievements one program may hold.
pub const MAX_ACHIEVEMENTS: usize = 200;
/// Largest purchase or location count an achievement may ask for.
pub const MAX_ACHIEVEMENT_COUNT: u32 = 100_000;
/// Longest weekly streak (ten years).
pub const MAX_STREAK_WEEKS: u32 = 520;
/// Longest window (100 years).
pub const MAX_WINDOW_DAYS: u32 = 36_500;

/// One badge and what unlocks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Achievement {
    pub achievement_id: String,
    pub name: String,
    /// The badge's label; the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<String>,
    pub criteria: Criteria,
    /// Only purchases in the last `window_days` × 24 h before the judged moment count.
    #[serde(default)]
    pub window_days: Option<u32>,
    /// Points credited once, on unlock (not capped, not qualifying for tiers).
    #[serde(default)]
    pub reward_points: i64,
}

impl Achievement {
    /// The badge a member gets: its label, or the achievement's name.
    pub fn badge(&self) -> &str {
        self.badge.as_deref().unwrap_or(&self.name)
    }
}

/// What a member must do; progress and target are in the criterion's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Criteria {
    /// Purchases (not fully refunded).
    Purchases { count: u32 },
    /// Spend in minor units, net of refunds.
    Spend { amount_minor: i64 },
    /// Distinct locations with a purchase (not fully refunded).
    Locations { count: u32 },
    /// Consecutive local ISO weeks with a purchase, ending with the judged week.
    WeeklyStreak { weeks: u32 },
}

impl Criteria {
    /// The progress that unlocks the achievement.
    pub fn target(self) -> i64 {
        match self {
            Criteria::Purchases { count } | Criteria::Locations { count } => i64::from(count),
            Criteria::Spend { amount_minor } => amount_minor,
            Criteria::WeeklyStreak { weeks } => i64::from(weeks),
        }
    }

    /// The criterion's name in the program JSON.
    pub fn kind(self) -> &'static str {
        match self {
            Criteria::Purchases { .. } => "purchases",
            Criteria::Spend { .. } => "spend",
            Criteria::Locations { .. } => "locations",
            Criteria::WeeklyStreak { .. } => "weekly_streak",
        }
    }
}

impl Achievement {
    /// Checks one achievement at `achievements[index]`.
    pub fn validate(&self, index: usize) -> Result<(), ConfigProblem> {
        let field = |f: &str| format!("achievements[{index}].{f}");
        let id = &self.achievement_id;
        if id.trim().is_empty() || id.chars().count() > 128 || id.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(ConfigProblem::new(
                field("achievement_id"),
                "must be 1 to 128 characters, without '/' or control characters",
            ));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            return Err(ConfigProblem::new(field("name"), "must be 1 to 128 characters"));
        }
        if let Some(badge) = &self.badge {
            if badge.trim().is_empty() || badge.chars().count() > 64 {
                return Err(ConfigProblem::new(field("badge"), "must be 1 to 64 characters"));
            }
        }
        let kind = self.criteria.kind();
        let (unit, max) = match self.criteria {
            Criteria::Purchases { .. } => ("count", i64::from(MAX_ACHIEVEMENT_COUNT)),
            Criteria::Locations { .. } => ("count", i64::from(MAX_ACHIEVEMENT_COUNT)),
            Criteria::Spend { .. } => ("amount_minor", MAX_AMOUNT_MINOR),
            Criteria::WeeklyStreak { .. } => ("weeks", i64::from(MAX_STREAK_WEEKS)),
        };
        if !(1..=max).contains(&self.criteria.target()) {
            return Err(ConfigProblem::new(
                field(&format!("criteria.{kind}.{unit}")),
                format!("must be between 1 and {max}"),
            ));
        }
        if let Some(days) = self.window_days {
            if days == 0 || days > MAX_WINDOW_DAYS {
                return Err(ConfigProblem::new(
                    field("window_days"),
                    format!("must be between 1 and {MAX_WINDOW_DAYS}, or null for all time"),
                ));
            }
            if let Criteria::WeeklyStreak { weeks } = self.criteria {
                // A streak of n weeks spans at least (n − 1) × 7 + 1 days.
                if i64::from(days) < (i64::from(weeks) - 1) * 7 + 1 {
                    return Err(ConfigProblem::new(
                        field("window_days"),
                        format!("is too short for a streak of {weeks} weeks: it could never unlock"),
                    ));
                }
            }
        }
        if !(0..=MAX_PROMOTION_POINTS).contains(&self.reward_points) {
            return Err(ConfigProblem::new(
                field("reward_points"),
                format!("must be between 0 and {MAX_PROMOTION_POINTS}"),
            ));
        }
        Ok(())
    }
}

/// Checks the program's achievements (ids are unique across the list).
pub fn validate(achievements: &[Achievement]) -> Result<(), ConfigProblem> {
    if achievements.len() > MAX_ACHIEVEMENTS {
        return Err(ConfigProblem::new(
            "achievements",
            format!("at most {MAX_ACHIEVEMENTS} achievements"),
        ));
    }
    let mut ids = BTreeSet::new();
    for (i, achievement) in achievements.iter().enumerate() {
        achievement.validate(i)?;
        if !ids.insert(achievement.achievement_id.as_str()) {
            return Err(ConfigProblem::new(
                format!("achievements[{i}].achievement_id"),
                format!("'{}' is used by another achievement", achievement.achievement_id),
            ));
        }
    }
    Ok(())
}
